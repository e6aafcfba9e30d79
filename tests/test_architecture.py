"""The shape of the code, checked: import contracts, and one way through a sync cycle.

A stage of the sync cycle called from anywhere but the composition (`tasks/sync/cycle.py`)
would be a second wiring of the cycle, which is what these tests exist to stop.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("circhub", "domain", "connections", "tasks", "flows", "expectations",
            "deployments", "simulator", "bench", "chaos")
COMPOSITION = ROOT / "tasks" / "sync" / "cycle.py"
# The sync stages' entry points, and the module that defines each: only the composition may
# call them (a load such as a backfill has its own, separate path through validate and merge).
STAGES = {"extract_member": "tasks/sync/extract.py", "validate_members": "tasks/sync/validate.py",
          "hash_good_rows": "tasks/sync/merge.py", "push_member": "tasks/writeback/push.py"}
# Who may hold a member without taking its Prefect slots (`connections.holds.holding`): the
# slot wrapper itself, the plain runner (one member at a time in one process) and the
# backfill benchmark, which times the stage alone. Anywhere else it would be a way into a
# member's database around its limits.
HOLDERS = {"connections/holds.py", "flows/slots.py", "tasks/sync/cycle.py",
           "bench/backfill_run.py"}


def _calls(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            fn = node.func
            names.add(fn.id if isinstance(fn, ast.Name) else getattr(fn, "attr", ""))
    return names


def _sources():
    for package in PACKAGES:
        yield from (ROOT / package).rglob("*.py")


def test_the_import_contracts_hold():
    done = subprocess.run([str(ROOT / "scripts" / "lint-imports")], capture_output=True,
                          text=True, cwd=ROOT, env={"BIN": str(Path(_venv_bin())),
                                                    "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _venv_bin() -> str:
    import sys

    return str(Path(sys.executable).parent)


def test_the_sync_stages_are_called_only_by_the_one_composition():
    offenders = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        if path == COMPOSITION:
            continue
        for stage, home in STAGES.items():
            if rel != home and stage in _calls(path):
                offenders.append(f"{rel} calls {stage}")
    assert offenders == []


def test_the_flows_the_cli_and_the_benchmark_run_the_composition():
    for rel in ("flows/sync.py", "flows/push.py", "bench/cycle.py"):
        assert _calls(ROOT / rel) & {"run_cycle", "run_push"}, rel
    cli = ast.parse((ROOT / "circhub" / "cli" / "app.py").read_text())
    used = {n.id for n in ast.walk(cli) if isinstance(n, ast.Name)}
    assert {"sync_consortium", "push_writebacks"} <= used  # `circhub sync` / `push` run the flows


def _names(path: Path) -> set[str]:
    """Every name a module uses: called, passed, imported."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.add(node.name)
    return names


def test_only_the_slot_wrapper_and_the_plain_runner_hold_a_member_without_its_slots():
    offenders = [path.relative_to(ROOT).as_posix() for path in _sources()
                 if path.relative_to(ROOT).as_posix() not in HOLDERS
                 and "holding" in _names(path)]
    assert offenders == []
