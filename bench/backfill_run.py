"""One items backfill through circhub's stages; run as a module it prints JSON with its own
peak memory (the memory benchmark runs it in a fresh process)."""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bench.sources import ROWS_PER_SECOND_OF_CURSOR, START
from circhub.simulator.world import config_toml, member_specs


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM), in MB.

    Not ru_maxrss: on Linux it survives exec and starts at the peak of the process that
    spawned this one, so under `python -m bench` (which has already held a million raw rows
    and run the cycle) it reported the parent's ~1.3 GB, not the backfill's. VmHWM belongs to
    this process's own address space, which exec replaced.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    # No /proc (macOS): fall back to ru_maxrss, in bytes there and kilobytes on Linux.
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def run_backfill(member_url: str, central_url: str, n: int) -> dict:
    from circhub.connections.holds import holding
    from circhub.connections.runtime import open_runtime, upgrade_store
    from circhub.tasks.loads.backfill import backfill_member

    specs = member_specs(1)
    folder = Path(tempfile.mkdtemp(prefix="circhub-bench-"))
    config = folder / "bench.toml"
    toml = config_toml(specs, {specs[0][0]: member_url}, central_url, "bench", demo=True)
    # BENCH_BULK_READER=arrow measures the Arrow reader (the config's default is the driver)
    reader = os.environ.get("BENCH_BULK_READER")
    config.write_text(toml.replace("[consortium]\n", f'[consortium]\nbulk_reader = "{reader}"\n', 1)
                      if reader else toml)
    upgrade_store(config)
    rt = open_runtime(str(config))
    end = START + timedelta(seconds=n // ROWS_PER_SECOND_OF_CURSOR + 1)
    start_seconds = _start_great_expectations()
    t0 = time.perf_counter()
    with holding(specs[0][0]):  # its slot, without Prefect: the backfill's own speed
        report = backfill_member(rt, rt.consortium.member(specs[0][0]), "items", START, end,
                                 timedelta(hours=1))
    seconds = time.perf_counter() - t0
    return {"rows": report.rows, "merged": report.merged, "seconds": seconds,
            "rows_s": report.rows / seconds, "start_seconds": start_seconds,
            "reader_peak_mb": report.reader_peak_mb}


def _start_great_expectations() -> float:
    """Import Great Expectations and build the items suite, as the first validation of a
    process does: a one-off ~3 s that a long backfill does not pay per row, so it is timed
    on its own and left out of the rows per second."""
    t0 = time.perf_counter()
    from circhub.tasks.sync.validate import prepare_validator

    prepare_validator("items")
    return time.perf_counter() - t0


if __name__ == "__main__":
    result = run_backfill(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    result["backfill_peak_mb"] = peak_rss_mb()
    # Both processes' own peaks, added: an upper bound of what the backfill held at once.
    result["peak_mb"] = result["backfill_peak_mb"] + result["reader_peak_mb"]
    print(json.dumps(result))
