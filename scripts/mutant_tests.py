"""The test command of one mutant: the guarding tests that run the line it changed.

scripts/mutants.py writes this command into cosmic-ray's config. Cosmic-ray applies a mutant to
the module in the copy of the tree, then runs the command there; the command compares the module
with the unmutated text kept in the plan, and runs, with `pytest -x`, only the tests that the
unmutated run (under coverage, one context per test, subprocesses included) saw executing one
of the changed lines. A test that never runs a line cannot see it changed, so a mutant's
verdict is the one the whole list would give, in a fraction of the time (mutmut selects the
same way). A line outside any function body (a signature, a default, a module constant) runs
at import, before any test: every guarding test is run for it. Tests that run three times
longer than they did unmutated (and a minute more) are stopped: the mutant hangs them, which
counts as killed, as cosmic-ray's own timeout does.

    python scripts/mutant_tests.py PLAN.json MODULE_PATH   # exit 0: the mutant survived
"""

from __future__ import annotations

import difflib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

# pytest as every run of `make mutants` calls it: quiet, no cache written into the copy, and
# none of the project's own `addopts`.
PYTEST_OPTIONS = ["-q", "-p", "no:cacheprovider", "-o", "addopts="]


def changed_lines(original: list[str], mutated: list[str]) -> set[int]:
    """Line numbers (1-based, in the unmutated module) that the mutant rewrote."""
    lines: set[int] = set()
    matcher = difflib.SequenceMatcher(a=original, b=mutated, autojunk=False)
    for tag, i1, i2, _j1, _j2 in matcher.get_opcodes():
        if tag != "equal":
            lines.update(range(i1 + 1, max(i2, i1 + 1) + 1))
    return lines


def tests_for(plan: dict, lines: set[int]) -> list[str]:
    """The guarding tests that ran any of `lines`, in the plan's order (the quickest first);
    all of them for a line that runs outside a test (at import, or in a process no test
    started)."""
    everything = plan["tests"]
    if not lines <= set(plan["body_lines"]):
        return everything
    reached: set[str] = set()
    for covered in {n for line in lines for n in statement_of(plan, line)}:
        by = plan["reached_by"].get(str(covered), [])
        if "" in by:
            return everything
        reached.update(by)
    return [t for t in everything if t in reached]


def statement_of(plan: dict, line: int) -> range:
    """The lines of the statement (or compound statement's header) holding `line`: coverage
    may file a statement spanning lines under any one of them."""
    holding = [(end - start, start, end) for start, end in plan["spans"] if start <= line <= end]
    if not holding:
        return range(line, line + 1)
    _, start, end = min(holding)
    return range(start, end + 1)


def main(plan_path: str, module_path: str) -> int:
    plan = json.loads(Path(plan_path).read_text())
    mutated = Path(module_path).read_text().splitlines()
    lines = changed_lines(plan["source"].splitlines(), mutated)
    chosen = tests_for(plan, lines)
    if not chosen:
        print(f"no guarding test runs line(s) {sorted(lines)}: the mutant survives", flush=True)
        return 0
    print(f"line(s) {sorted(lines)}: {len(chosen)} of {len(plan['tests'])} tests", flush=True)
    return run_tests(chosen, time_limit(plan, chosen))


def time_limit(plan: dict, chosen: list[str]) -> float:
    """Three times what the chosen tests took unmutated (under coverage), and a minute more:
    past that, the mutant has made them hang (a loop that no longer ends)."""
    return 3 * sum(plan["seconds"].get(t, 60.0) for t in chosen) + 60


def run_tests(chosen: list[str], limit: float) -> int:
    # Plugins are loaded by name, not discovered: discovering them costs seconds per mutant,
    # and none but Hypothesis's is used by these tests.
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    tests = subprocess.Popen([sys.executable, "-m", "pytest", *PYTEST_OPTIONS, "-x", "-p",
                              "hypothesispytest", *chosen],
                             env=env, start_new_session=True)
    try:
        return tests.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(tests.pid, signal.SIGKILL)  # with the processes the tests started
        tests.wait()
        print(f"the tests ran past {limit:.0f} s: the mutant hangs them (killed)", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
