"""`make mutants`: mutation testing (cosmic-ray) of the modules that carry the guarantees.

Each module listed in scripts/mutants.toml is mutated one change at a time, and each mutant
runs the tests that guard that module and reach the changed line (`pytest -x`, a timeout per
mutant). A mutant the tests
pass with has survived: either it is equivalent, or a guarantee lacks a test. The report,
mutants/report.md, gives the kill rate per module and in total and lists every survivor.

Cosmic-ray rewrites the module's file in place while a mutant runs, so everything happens in
a copy of the working tree (mutants/work/<module>, gitignored; one per module, so modules may
run at once with `--jobs`), never in the tree being edited. The copy imports as `circhub` by
itself: its own circhub/ folder gets links to its domain/, tasks/, ... (the mapping
pyproject.toml gives setuptools), and Python finds that folder first, before the editable
install's finder, since the tests run with the copy as the current directory. (A test that
starts a circhub subprocess from another directory would import the tree, not the copy: none
of the guarding tests listed does.)

A module may list `functions`: only mutants inside those are run (the others are marked
out of scope and counted nowhere), to spend a short run on the code carrying the guarantee.

Each mutant runs only the guarding tests that execute the line it changed
(scripts/mutant_tests.py): the unmutated run, under coverage with one context per test (the
processes a test starts included), gives which test reaches which line, in a plan kept beside
the session. A test that never runs a line cannot tell it changed.

A module's session (mutants/sessions/*.sqlite) is named by a hash of the module and its
tests: a run cut short resumes where it stopped; a changed module or test starts afresh.

    python scripts/mutants.py                      # every module
    python scripts/mutants.py tasks/sync/merge.py  # the modules named (path or name)
    python scripts/mutants.py --jobs 2             # two modules at a time
    python scripts/mutants.py --report             # the report from the sessions so far
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from math import inf
from pathlib import Path

from mutant_tests import PYTEST_OPTIONS  # scripts/ is on the path: this file runs from there

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "mutants"
WORK = OUT / "work"  # one copy per module
SESSIONS = OUT / "sessions"
CONFIG = ROOT / "scripts" / "mutants.toml"
BIN = Path(sys.executable).parent


def settings() -> dict:
    return tomllib.loads(CONFIG.read_text())


# -- the copy ------------------------------------------------------------------------------------
def make_work_copy(work: Path) -> None:
    """The tracked and untracked (not ignored) files of the tree, copied afresh."""
    shutil.rmtree(work, ignore_errors=True)
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if name.startswith("mutants/") or not source.is_file():
            continue
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-dir"]
    for package, folder in package_dirs.items():
        if package == "circhub":
            continue
        link = work / "circhub" / package.split(".", 1)[1]
        link.symlink_to(Path("..") / folder, target_is_directory=True)
    _check_imports_from_copy(work)


def _check_imports_from_copy(work: Path) -> None:
    probe = ("import circhub.tasks.sync.merge as m, circhub.domain.identity as i;"
             "print(m.__file__); print(i.__file__)")
    files = subprocess.run([sys.executable, "-c", probe], cwd=work, check=True,
                           capture_output=True, text=True).stdout.split()
    stray = [f for f in files if not f.startswith(str(work))]
    if stray:
        sys.exit(f"the copy does not import itself: {stray}")


# -- one module ----------------------------------------------------------------------------------
SELECTOR = ROOT / "scripts" / "mutant_tests.py"


def mutant_command(module: dict, session: Path) -> str:
    """What cosmic-ray runs for each mutant: the tests of the plan that reach its line."""
    return shlex.join([str(BIN / "python"), str(SELECTOR), str(plan_of(session)),
                       module["path"]])


def plan_of(session: Path) -> Path:
    return session.with_suffix(".plan.json")


def session_of(module: dict) -> Path:
    digest = hashlib.sha256()
    for name in [module["path"], *(t.split("::")[0] for t in module["tests"]),
                 SELECTOR.relative_to(ROOT)]:
        digest.update((ROOT / name).read_bytes())
    digest.update(repr(module["tests"]).encode())
    digest.update(repr(module.get("functions")).encode())
    return SESSIONS / f"{slug_of(module)}-{digest.hexdigest()[:10]}.sqlite"


def latest_session(module: dict) -> Path:
    """The module's session for its current code and tests, or else the last one run (the
    report says what was measured, even if a test was added since)."""
    exact = session_of(module)
    if exact.exists():
        return exact
    runs = sorted(SESSIONS.glob(f"{slug_of(module)}-??????????.sqlite"),
                  key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else exact


def slug_of(module: dict) -> str:
    """A name for the module's copy and sessions; one file mutated in two scopes gets two."""
    slug = module["path"].replace("/", "_").removesuffix(".py")
    if not module.get("functions"):
        return slug
    return slug + "-" + hashlib.sha256(",".join(module["functions"]).encode()).hexdigest()[:6]


def excluded_operators(keep: list[str]) -> list[str]:
    """cosmic-ray filters by exclusion: every operator that none of `keep` matches."""
    names = subprocess.run([str(BIN / "cosmic-ray"), "operators"], check=True,
                           capture_output=True, text=True).stdout.split()
    kept = re.compile("|".join(f"(?:{k})" for k in keep))
    return [re.escape(n) + "$" for n in names if not kept.match(n)]


def run_module(module: dict, conf: dict) -> None:
    work = WORK / slug_of(module)
    make_work_copy(work)
    session = session_of(module)
    config = session.with_suffix(".toml")
    if not session.exists():
        seconds = baseline(module, work, session)
        timeout = module.get("timeout", conf["default_timeout"])
        print(f"[mutants] {module['path']}: tests take {seconds:.0f} s unmutated; "
              f"timeout {timeout} s a mutant", flush=True)
        write_config(config, module, session, timeout,
                     excluded_operators(conf["keep_operators"]))
        cosmic("init", config, session, work)
        subprocess.run([str(BIN / "cr-filter-operators"), str(session), str(config)],
                       cwd=work, check=True, capture_output=True)
        if module.get("functions"):
            out_of_scope(session, work / module["path"], module["functions"])
    set_aside_annotations(session, work / module["path"])
    print(f"[mutants] {module['path']}: {count(session)}", flush=True)
    cosmic("exec", config, session, work)
    print(f"[mutants] {module['path']}: done, {count(session)}", flush=True)


def out_of_scope(session: Path, source: Path, functions: list[str]) -> None:
    """Mark the mutants outside the functions named as skipped ("out of scope")."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = [(node.lineno, node.end_lineno) for node in ast.walk(ast.parse(source.read_text()))
             if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
             and node.name in functions]
    with use_db(str(session), WorkDB.Mode.open) as db:
        outside = [item.job_id for item in db.pending_work_items
                   if not any(lo <= item.mutations[0].start_pos[0] <= hi for lo, hi in spans)]
        db.set_multiple_results(outside, WorkResult(output=OUT_OF_SCOPE,
                                                    worker_outcome=WorkerOutcome.SKIPPED))


OUT_OF_SCOPE = "out of scope"
IN_ANNOTATION = "in a type annotation"


def annotation_spans(source: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the type annotations are, in a module that never evaluates them (`from
    __future__ import annotations`, PEP 563: each stays a string no code reads); none in a
    module that does."""
    tree = ast.parse(source.read_text())
    postponed = any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
                    and any(a.name == "annotations" for a in node.names) for node in tree.body)
    if not postponed:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            found.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            found.append(node.returns)
    return [((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)) for n in found]


def set_aside_annotations(session: Path, source: Path) -> None:
    """Mark the mutants inside type annotations as skipped, run or not: `str | None` made
    `str & None` in a string no code reads changes nothing a test could see (mutmut leaves
    annotations alone for the same reason). The report counts them apart."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = annotation_spans(source)
    with use_db(str(session), WorkDB.Mode.open) as db:
        left_out = {job for job, result in db.results  # other operators, other functions
                    if result.worker_outcome == WorkerOutcome.SKIPPED
                    and result.output != IN_ANNOTATION}
        inside = [item.job_id for item in db.work_items if item.job_id not in left_out
                  and any(lo <= item.mutations[0].start_pos < hi for lo, hi in spans)]
        db.set_multiple_results(inside, WorkResult(output=IN_ANNOTATION,
                                                   worker_outcome=WorkerOutcome.SKIPPED))


# -- the plan: which test reaches which line ------------------------------------------------------
# Started by pytest's own process after its start, so that coverage's .pth file measures the
# processes a test starts (they inherit COVERAGE_PROCESS_START), not pytest's, which pytest-cov
# measures with one context per test phase.
_PYTEST_STARTING_CHILD_COVERAGE = ("import os, sys, pytest; "
                                   "os.environ['COVERAGE_PROCESS_START'] = sys.argv[1]; "
                                   "sys.exit(pytest.main(sys.argv[2:]))")


def baseline(module: dict, work: Path, session: Path) -> float:
    """Run the guarding tests unmutated under coverage and write the module's plan. Seconds."""
    rc, data = session.with_suffix(".coveragerc"), session.with_suffix(".coverage")
    junit = session.with_suffix(".junit.xml")
    session.parent.mkdir(parents=True, exist_ok=True)
    for old in session.parent.glob(data.name + "*"):
        old.unlink()
    # A started process expands ${PYTEST_CURRENT_TEST} itself: its lines carry the test's id.
    rc.write_text(f"[run]\ninclude = {work / module['path']}\nparallel = true\n"
                  f"data_file = {data}\ncontext = ${{PYTEST_CURRENT_TEST}}\n")
    started = time.monotonic()
    done = subprocess.run(
        [str(BIN / "python"), "-c", _PYTEST_STARTING_CHILD_COVERAGE, str(rc),
         *PYTEST_OPTIONS, "-x", "--cov", f"--cov-config={rc}",
         "--cov-context=test", "--cov-report=", f"--junitxml={junit}", *module["tests"]],
        cwd=work, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{module['path']}: its tests fail unmutated:\n{done.stdout[-3000:]}")
    seconds = time.monotonic() - started
    source = (work / module["path"]).read_text()
    if not (lines := reached_by(data)):
        sys.exit(f"{module['path']}: coverage saw none of its lines run ({rc})")
    took = durations(junit)
    tests = collected(module["tests"], work)
    plan = {"source": source, "tests": sorted(tests, key=lambda t: took.get(t, inf)),
            "seconds": took,
            "body_lines": body_lines(source), "spans": statement_spans(source),
            "reached_by": lines}
    plan_of(session).write_text(json.dumps(plan, indent=1))
    return seconds


def collected(tests: list[str], work: Path) -> list[str]:
    """The test ids the list names, in pytest's order."""
    out = subprocess.run([str(BIN / "python"), "-m", "pytest", *PYTEST_OPTIONS, "--collect-only",
                          *tests],
                         cwd=work, check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "::" in line]


def durations(junit: Path) -> dict[str, float]:
    """Each test's seconds in the unmutated run, by test id. The plan lists the tests quickest
    first: with `-x`, the first test to fail kills the mutant, so a quick one first saves the
    slow ones' time."""
    import xml.etree.ElementTree as ET

    took = {}
    for case in ET.parse(junit).iter("testcase"):
        where = case.get("classname").split(".")
        module = [w for w in where if w[:1].islower()]  # a class's name starts upper case
        classes = where[len(module):]
        took["::".join(["/".join(module) + ".py", *classes, case.get("name")])] = \
            float(case.get("time"))
    return took


def body_lines(source: str) -> list[int]:
    """The lines inside function bodies: they run when called, so in a test's context."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines.update(range(node.body[0].lineno, node.end_lineno + 1))
    return sorted(lines)


def statement_spans(source: str) -> list[list[int]]:
    """First and last line of each statement (of a compound one, its header): coverage may
    record a statement that spans lines under its first line only, while a mutant may change
    any of them."""
    spans = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.stmt):
            continue
        inner = [n for field in ("body", "orelse", "finalbody", "handlers")
                 for n in getattr(node, field, None) or ()]
        end = min(n.lineno for n in inner) - 1 if inner else node.end_lineno
        spans.append([node.lineno, max(end, node.lineno)])
    return sorted(spans)


def reached_by(data: Path) -> dict[str, list[str]]:
    """Line -> the ids of the tests that ran it ("" for a line run outside any test).
    pytest-cov names a context `<id>|run` (or `|setup`, `|teardown`); a started process,
    `<id> (call)`."""
    from coverage import CoverageData

    measured = CoverageData(str(data))
    measured.read()
    found: dict[str, set[str]] = {}
    for path in measured.measured_files():
        for line, contexts in measured.contexts_by_lineno(path).items():
            ids = {re.sub(r" \((setup|call|teardown)\)$", "", c.split("|")[0]) for c in contexts}
            found.setdefault(str(line), set()).update(ids)
    return {line: sorted(ids) for line, ids in found.items()}


def write_config(path: Path, module: dict, session: Path, timeout: float,
                 exclude: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    quoted = ", ".join(f'"{e}"' for e in exclude)
    path.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{module["path"]}"\n'
        f"timeout = {float(timeout)}\n"
        "excluded-modules = []\n"
        f"test-command = {tomllib_str(mutant_command(module, session))}\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
        "[cosmic-ray.filters.operators-filter]\n"
        f"exclude-operators = [{quoted}]\n")


def tomllib_str(value: str) -> str:
    return "'" + value + "'" if "'" not in value else '"' + value.replace('"', '\\"') + '"'


def cosmic(command: str, config: Path, session: Path, work: Path) -> None:
    subprocess.run([str(BIN / "cosmic-ray"), command, str(config), str(session)], cwd=work,
                   check=True)


# -- the report ----------------------------------------------------------------------------------
def outcomes(session: Path) -> list[dict]:
    from cosmic_ray.work_db import WorkDB, use_db

    rows = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        done = dict(db.results)
        for item in db.work_items:
            result = done.get(item.job_id)
            (mutation,) = item.mutations
            rows.append({"operator": mutation.operator_name, "line": mutation.start_pos[0],
                         "state": _state(result), "diff": result.diff if result else None})
    return rows


def _state(result) -> str:
    if result is None:
        return "pending"
    if result.worker_outcome.value == "skipped":
        return "annotation" if result.output == IN_ANNOTATION else "filtered"
    if result.worker_outcome.value != "normal":
        return "error"
    return result.test_outcome.value  # killed | survived | incompetent


def count(session: Path) -> str:
    rows = [r for r in outcomes(session) if r["state"] not in SET_ASIDE]
    by = {s: sum(r["state"] == s for r in rows) for s in ("killed", "survived", "pending")}
    return f"{len(rows)} mutants: {by['killed']} killed, {by['survived']} survived, " \
           f"{by['pending']} to run"


SET_ASIDE = ("filtered", "annotation")  # not run, or run but changing nothing observable


def changed_lines(diff: str | None) -> tuple[str, str]:
    """The line a mutant removed and the one it put in, stripped (one line each: cosmic-ray
    mutates one operator at a time)."""
    lines = (diff or "").splitlines()
    was = [ln[1:].strip() for ln in lines if ln.startswith("-") and not ln.startswith("---")]
    now = [ln[1:].strip() for ln in lines if ln.startswith("+") and not ln.startswith("+++")]
    return " ".join(was), " ".join(now)


def equivalent_reason(module: dict, row: dict) -> str | None:
    """Why a surviving mutant is equivalent, if scripts/mutants.toml says so for its module:
    an entry matches the line the mutant removed (`was`) and the line it put in (`now`)."""
    was, now = changed_lines(row["diff"])
    for entry in module.get("equivalent", ()):
        if entry["was"] == was and entry["now"] == now:
            return entry["why"]
    return None


def _rate(killed: int, of: int) -> str:
    return f"{100 * killed / of:.1f} %" if of else "not run"


def report(conf: dict) -> str:
    """Per module and in total: the kill rate over every mutant run, and the mutation score
    with the mutants shown equivalent set aside (they change no behaviour, so no test can
    kill them: each is listed with the reason given in scripts/mutants.toml)."""
    lines = ["# Mutation testing (cosmic-ray)", "",
             f"Operators kept: `{'`, `'.join(conf['keep_operators'])}`.", "",
             "| module (functions mutated) | guarded by | mutants | run | killed | equivalent "
             "| survived | kill rate | score (equivalent set aside) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    totals = {"killed": 0, "run": 0, "equivalent": 0, "annotation": 0}
    survivors, equivalents = [], []
    for module in conf["module"]:
        session = latest_session(module)
        every = outcomes(session) if session.exists() else []
        rows = [r for r in every if r["state"] not in SET_ASIDE]
        totals["annotation"] += sum(r["state"] == "annotation" for r in every)
        killed = sum(r["state"] == "killed" for r in rows)
        lost = [r for r in rows if r["state"] == "survived"]
        same = [(r, why) for r in lost if (why := equivalent_reason(module, r))]
        run = killed + len(lost)
        totals["killed"] += killed
        totals["run"] += run
        totals["equivalent"] += len(same)
        tests = ", ".join(f"`{t}`" for t in module["tests"])
        scope = ", ".join(f"`{f}`" for f in module.get("functions", ())) or "whole module"
        lines.append(f"| `{module['path']}` ({scope}) | {tests} | {len(rows) or '-'} | {run} "
                     f"| {killed} | {len(same)} | {len(lost) - len(same)} "
                     f"| {_rate(killed, run)} | {_rate(killed, run - len(same))} |")
        shown = {id(r) for r, _ in same}
        survivors += [(module["path"], r) for r in lost if id(r) not in shown]
        equivalents += [(module["path"], r, why) for r, why in same]
    k, run, eq = totals["killed"], totals["run"], totals["equivalent"]
    lines += ["", f"**Total over the mutants run: {k} killed of {run} ({_rate(k, run)}); "
              f"{eq} equivalent; score with them set aside: {k} of {run - eq} "
              f"({_rate(k, run - eq)}).** Not counted: {totals['annotation']} mutants inside "
              "type annotations, which these modules never evaluate.", "",
              "## Survivors not shown equivalent", ""]
    lines += [f"- `{path}:{r['line']}` {r['operator']}: {_shown(r)}" for path, r in survivors] \
        or ["None."]
    lines += ["", "## Equivalent survivors (scripts/mutants.toml says why)", ""]
    lines += [f"- `{path}:{r['line']}` {r['operator']}: {_shown(r)}. {why}"
              for path, r, why in equivalents] or ["None."]
    return "\n".join(lines) + "\n"


def _shown(row: dict) -> str:
    was, now = changed_lines(row["diff"])
    return f"`{was}` -> `{now}`"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*",
                        help="modules to run, by path or name (default: all listed)")
    parser.add_argument("--report", action="store_true", help="only write the report")
    parser.add_argument("--jobs", type=int, default=1, help="modules run at once")
    args = parser.parse_args()
    conf = settings()
    OUT.mkdir(exist_ok=True)
    if not args.report:
        chosen = [m for m in conf["module"]
                  if not args.paths or m["path"] in args.paths or m["name"] in args.paths]

        def one(module: dict) -> None:
            run_module(module, conf)
            (OUT / "report.md").write_text(report(conf))

        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(one, chosen))
    (OUT / "report.md").write_text(report(conf))
    print(f"[mutants] report: {OUT / 'report.md'}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    main()
