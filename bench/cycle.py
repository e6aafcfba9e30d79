"""One steady-state cycle over many simulated members: through the Prefect flow, and the same
amount of work through the plain stage functions, so Prefect's share can be read off.

Run as a module (`python -m bench.cycle CENTRAL_URL MEMBERS`) it prints its result as JSON:
the benchmark runs it in a child process whose environment points at the Prefect server to
measure against (`bench.prefect_server`)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from circhub.connections.runtime import upgrade_store
from circhub.simulator.world import config_toml, member_specs, sqlite_world

CHANGES_PER_MEMBER = 20


def _plain_cycle(config: Path) -> float:
    from circhub.connections.runtime import open_runtime
    from circhub.tasks.sync.cycle import run_cycle

    rt = open_runtime(str(config))
    t0 = time.perf_counter()
    run_cycle(rt, [m.code for m in rt.consortium.members])  # the flow's composition, plainly
    return time.perf_counter() - t0


def _flow_cycle(config: Path) -> float:
    from circhub.flows.sync import sync_consortium

    t0 = time.perf_counter()
    state = sync_consortium(config=str(config), return_state=True)
    seconds = time.perf_counter() - t0
    if not state.is_completed():
        raise RuntimeError(f"the benchmark cycle failed: {state.message}")
    return seconds


def _warm_prefect(config: Path) -> None:
    """Reach the Prefect server and create circhub's concurrency limits before timing anything:
    in steady state they exist (`circhub serve` creates them, and every flow run checks them
    with one read); creating 252 of them is a first run's cost, not a cycle's."""
    from prefect import flow

    from circhub.connections.runtime import open_runtime
    from circhub.flows.slots import ensure_limits

    @flow(name="bench-warm-up")
    def warm() -> None:
        ensure_limits(open_runtime(str(config)).consortium)

    warm()


def steady_state_cycle(n_members: int, central_url: str) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="circhub-cycle-"))
    start = datetime.now().replace(microsecond=0) - timedelta(days=150)
    world, urls = sqlite_world(folder / "members", n_members, 1, start)
    world.seed(10, 30)
    config = folder / "consortium.toml"
    config.write_text(config_toml(member_specs(n_members), urls, central_url, "bench cycle",
                                  demo=True))
    upgrade_store(config)
    world.play(1, 5 * n_members)
    _plain_cycle(config)  # the initial load is a backfill's job, not part of a cycle
    _warm_prefect(config)
    world.play(1, CHANGES_PER_MEMBER * n_members)
    flow_seconds = _flow_cycle(config)
    world.play(1, CHANGES_PER_MEMBER * n_members)
    plain_seconds = _plain_cycle(config)
    return {"members": n_members, "changes_per_member": CHANGES_PER_MEMBER,
            "flow_seconds": flow_seconds, "plain_seconds": plain_seconds}


if __name__ == "__main__":
    print(json.dumps(steady_state_cycle(int(sys.argv[2]), sys.argv[1])))
