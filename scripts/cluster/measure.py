"""Measure the cluster's cost per consortium cycle, for docs/scaling.md.

    .venv/bin/python scripts/cluster/measure.py [--members 12] [--runs 4] [--workers 2]

Brings a cluster up (root), runs the consortium sync deployment `--runs` times back to back,
and prints, per run: wall time, CPU seconds of the Prefect server (its whole process session),
of the workers (including their finished flow-run processes), growth of the Prefect server's
PostgreSQL database and of the central store, and the task runs and events it made. Then it
tears the cluster down.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("circhub_cluster", HERE / "cluster.py")
cl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cl)

TICK = os.sysconf("SC_CLK_TCK")


def session_cpu(sid: int) -> float:
    """CPU seconds of every live process in a session, with their reaped children."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields[3] is the session id (field 6 of stat)
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def db_size(name: str) -> int:
    from sqlalchemy import create_engine, text

    eng = create_engine(cl.PG_ADMIN)
    with eng.connect() as conn:
        size = conn.execute(text("SELECT pg_database_size(:n)"), {"n": name}).scalar()
    eng.dispose()
    return size


def count(db: str, table: str) -> int:
    from sqlalchemy import create_engine, text

    eng = create_engine(cl.PG_ADMIN.rsplit("/", 1)[0] + f"/{db}")
    with eng.connect() as conn:
        n = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
    eng.dispose()
    return n


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--members", type=int, default=12)
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--home", default="/tmp/circhub-cluster-measure")
    a = p.parse_args()
    c = cl.up(Path(a.home), a.workers, a.members)
    try:
        from prefect.deployments import run_deployment
        from prefect.settings import PREFECT_API_URL, temporary_settings

        server_db, store_db = c.databases
        sessions = {"server": c.pids["server"],
                    **{f"worker{i}": c.pids[f"worker{i}"] for i in range(a.workers)}}
        rows = []
        with temporary_settings(updates={PREFECT_API_URL: c.api_url}):
            for n in range(a.runs):
                cpu0 = {k: session_cpu(s) for k, s in sessions.items()}
                size0 = db_size(server_db), db_size(store_db)
                tr0, ev0 = count(server_db, "task_run"), count(server_db, "events")
                t0 = time.monotonic()
                run = run_deployment(cl.SYNC, timeout=600)
                wall = time.monotonic() - t0
                cpu = {k: round(session_cpu(s) - cpu0[k], 1) for k, s in sessions.items()}
                rows.append({
                    "run": n, "state": run.state.type.value, "wall_s": round(wall, 1),
                    "server_cpu_s": cpu["server"],
                    "workers_cpu_s": round(sum(v for k, v in cpu.items() if k != "server"), 1),
                    "prefect_db_growth_kb": (db_size(server_db) - size0[0]) // 1024,
                    "store_growth_kb": (db_size(store_db) - size0[1]) // 1024,
                    "task_runs": count(server_db, "task_run") - tr0,
                    "events": count(server_db, "events") - ev0})
                print(json.dumps(rows[-1]), flush=True)
        print(json.dumps({"members": a.members, "workers": a.workers,
                          "prefect_db_kb": db_size(server_db) // 1024,
                          "store_kb": db_size(store_db) // 1024}))
    finally:
        c.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
