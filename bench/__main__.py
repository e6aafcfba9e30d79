"""`make bench`: circhub measured against this machine's own limits, in the same run.

1. Backfill throughput of items (Koha on MariaDB, and Koha-shaped on PostgreSQL, into a
   PostgreSQL central store) beside two raw limits on the same rows (read out -> COPY in ->
   INSERT ... ON CONFLICT): the Arrow chain (connectorx -> Arrow's CSV -> one COPY), the
   fastest plain path here, and the driver chain (pymysql rows or COPY TO STDOUT -> COPY
   row by row), the limit of earlier runs, kept so their ratios compare; as ratios of the
   medians of BENCH_RUNS (3) runs of each; and
   beside the peer, dlt (bench/peer_dlt.py, in .venv-peer) with its pyarrow and connectorx
   backends merging the same rows on itemnumber: circhub's median over the best backend's.
2. One steady-state cycle over 251 simulated members with ~20 changes each: wall time through
   the Prefect flow, and the same work through the plain stage functions.
3. Peak memory of a 5-million-item backfill (a subprocess: its own VmHWM plus its reader
   process's).
Prints a table and writes bench/results.json. Sizes: BENCH_ITEMS, BENCH_MEMORY_ITEMS,
BENCH_MEMBERS; BENCH_PARTS (default "throughput,cycle,memory") picks the parts to run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import sources
from bench.servers import fresh_mariadb, fresh_postgres

console = Console()
HERE = Path(__file__).parent
OUT = HERE / "results.json"
PEER_PYTHON = HERE.parent / ".venv-peer" / "bin" / "python"  # made by `make peer`
PEER_BACKENDS = ("pyarrow", "connectorx")


def throughput(kind: str, n: int, runs: int) -> dict:
    """The raw chain and circhub's backfill on the same rows, `runs` times each, taken in
    turn (so a slower minute of the machine falls on both); the medians are compared."""
    from bench.backfill_run import run_backfill

    member = fresh_mariadb("src") if kind == "mariadb" else fresh_postgres("pgsrc")
    make = sources.koha_items if kind == "mariadb" else sources.koha_items_on_postgres
    t0 = time.perf_counter()
    make(member, "SC001", n)
    console.print(f"  {kind}: {n:,} items generated in {time.perf_counter() - t0:.0f} s")
    raws, arrows, ours, peers = [], [], [], {backend: [] for backend in PEER_BACKENDS}
    for _ in range(runs):
        arrows.append(sources.arrow_limit(member, fresh_postgres("central"), kind))
        raws.append(sources.raw_limit(member, fresh_postgres("central"), kind))
        ours.append(run_backfill(member, fresh_postgres("central"), n))
        for backend in PEER_BACKENDS:
            peers[backend].append(peer_run(member, fresh_postgres("central"), backend, n))
    raw = _median(raws, "chain_rows_s")
    arrow = _median(arrows, "chain_rows_s")
    mine = _median(ours, "rows_s")
    dlt = {backend: _peer_summary(kind, backend, done) for backend, done in peers.items()}
    best = _best_peer(dlt)
    return {"source": kind, "rows": n, "runs": runs, "raw": raw, "raw_runs": raws,
            "circhub_rows_s": mine["rows_s"], "circhub_seconds": mine["seconds"],
            "circhub_runs": ours, "ratio": mine["rows_s"] / raw["chain_rows_s"],
            "arrow_raw": arrow, "arrow_raw_runs": arrows,
            "arrow_ratio": mine["rows_s"] / arrow["chain_rows_s"],
            "dlt": dlt, "dlt_best": best,
            "vs_peer": mine["rows_s"] / best["rows_s"] if best else None}


def _median(results: list[dict], key: str) -> dict:
    return sorted(results, key=lambda r: r[key])[len(results) // 2]


def peer_run(member: str, central: str, backend: str, n: int) -> dict:
    """One dlt load of the member's items into `central` (bench/peer_dlt.py, in its own
    venv); a run that could not be made or failed comes back as {"error": why}."""
    if not PEER_PYTHON.exists():
        return {"error": f"no {PEER_PYTHON.parent.parent.name} (run `make peer`)"}
    # Run from bench/, dlt's "script directory", so it does not warn about a .dlt folder.
    out = subprocess.run([str(PEER_PYTHON), "peer_dlt.py", member, central, backend, str(n),
                          "--columns", ",".join(sources.COLUMNS)],
                         cwd=HERE, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": f"exit {out.returncode}: {out.stderr.strip()[-1500:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peer_summary(kind: str, backend: str, runs: list[dict]) -> dict:
    """The median of a backend's runs; if any run failed, no median (a median of the runs
    that happened to pass would flatter it), and the failure is said at once."""
    failed = [r["error"] for r in runs if "error" in r]
    if failed:
        console.print(f"[bold red]  {kind}: dlt {backend} failed in {len(failed)} of "
                      f"{len(runs)} runs:[/] {failed[0]}")
        return {"error": failed[0], "runs": runs}
    return {"median": _median(runs, "rows_s"), "runs": runs}


def _best_peer(dlt: dict) -> dict | None:
    measured = {b: s["median"]["rows_s"] for b, s in dlt.items() if "median" in s}
    if not measured:
        return None
    backend = max(measured, key=measured.get)
    return {"backend": backend, "rows_s": measured[backend]}


def memory(n: int) -> dict:
    member, central = fresh_mariadb("mem"), fresh_postgres("memcentral")
    sources.koha_items(member, "SC001", n)
    out = subprocess.run([sys.executable, "-m", "bench.backfill_run", member, central, str(n)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cycle(members: int) -> dict:
    """In a child process, against a PostgreSQL-backed Prefect server (bench.prefect_server)."""
    from bench.prefect_server import postgres_backed_server

    central = fresh_postgres("cyclecentral")
    with postgres_backed_server() as env:
        out = subprocess.run([sys.executable, "-m", "bench.cycle", central, str(members)],
                             capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"the cycle benchmark failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["prefect_server"] = "prefect server start, on PostgreSQL"
    return result


def main() -> None:
    n = int(os.environ.get("BENCH_ITEMS", 1_000_000))
    n_mem = int(os.environ.get("BENCH_MEMORY_ITEMS", 5_000_000))
    n_members = int(os.environ.get("BENCH_MEMBERS", 251))
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(),
               "platform": platform.platform(), "when": time.strftime("%Y-%m-%d %H:%M")}
    console.print(f"[bold]circhub bench[/] on {machine['cpus']} cores, {machine['platform']}")
    parts = os.environ.get("BENCH_PARTS", "throughput,cycle,memory").split(",")
    results: dict = {"machine": machine}
    if "throughput" in parts:
        runs = int(os.environ.get("BENCH_RUNS", 3))
        results["throughput"] = [throughput("mariadb", n, runs), throughput("postgres", n, runs)]
    if "cycle" in parts:
        results["cycle"] = cycle(n_members)
    if "memory" in parts:
        results["memory"] = memory(n_mem)
    OUT.write_text(json.dumps(results, indent=2, default=str))
    show(results)
    if failures := peer_failures(results):  # the other figures are kept, but not as a pass
        console.print("[bold red]the peer (dlt) did not run as it should:[/]")
        for failure in failures:
            console.print(f"  {failure}")
        sys.exit(1)


def show(r: dict) -> None:
    t = Table("measure", "circhub", "limit on this machine", "ratio", "target")
    for tp in r.get("throughput", []):
        t.add_row(f"backfill items from {tp['source']} ({tp['rows']:,})",
                  f"{tp['circhub_rows_s']:,.0f} rows/s",
                  "Arrow chain " + _chain(tp["arrow_raw"]), f"{tp['arrow_ratio']:.0%}",
                  ">= 70%")
        t.add_row("  the same, against the driver chain", "", "driver chain "
                  + _chain(tp["raw"]), f"{tp['ratio']:.0%}", "earlier runs' limit")
        _peer_row(t, tp)
    if "cycle" in r:
        _cycle_row(t, r["cycle"])
    if "memory" in r:
        m = r["memory"]
        t.add_row(f"backfill {m['rows']:,} items, peak memory",
                  f"{m['peak_mb']:,.0f} MB (backfill {m['backfill_peak_mb']:,.0f} + reader "
                  f"{m['reader_peak_mb']:,.0f})", f"{m['rows_s']:,.0f} rows/s", "",
                  "<= 1024 MB")
    console.print(t)
    console.print(f"written to {OUT}")


def _chain(raw: dict) -> str:
    return (f"{raw['chain_rows_s']:,.0f} rows/s (read {raw['read_rows_s']:,.0f}, COPY in "
            f"{raw['copy_in_rows_s']:,.0f}, upsert {raw['upsert_rows_s']:,.0f})")


def _peer_row(t: Table, tp: dict) -> None:
    best = tp["dlt_best"]
    others = {b: s for b, s in tp["dlt"].items() if best is None or b != best["backend"]}
    each = ", ".join(f"{b} {s['median']['rows_s']:,.0f}" if "median" in s else f"{b} FAILED"
                     for b, s in others.items())
    if best is None:
        t.add_row(f"  peer on the same rows ({tp['source']})", "",
                  f"[bold red]dlt: no run measured[/] ({each})", "", "")
        return
    t.add_row(f"  peer on the same rows ({tp['source']})",
              f"{tp['circhub_rows_s']:,.0f} rows/s",
              f"dlt best ({best['backend']}): {best['rows_s']:,.0f} rows/s ({each})",
              f"circhub ÷ dlt = {tp['vs_peer']:.2f}×", "")


def peer_failures(r: dict) -> list[str]:
    return [f"{tp['source']}: dlt {b}: {s['error'].splitlines()[-1]}"
            for tp in r.get("throughput", []) for b, s in tp["dlt"].items() if "error" in s]


def _cycle_row(t: Table, c: dict) -> None:
    t.add_row(f"cycle, {c['members']} members x ~{c['changes_per_member']} changes",
              f"{c['flow_seconds']:.1f} s (Prefect flow)",
              f"{c['plain_seconds']:.1f} s (same stages, no Prefect)",
              f"overhead {c['flow_seconds'] - c['plain_seconds']:.1f} s", "<= 60 s")


if __name__ == "__main__":
    main()
