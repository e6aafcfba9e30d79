"""Small builders the tests share: a simulated consortium written to a config file, Koha items
with the timestamps a test chooses, and one sync cycle run through the plain stage functions
(no Prefect), as a benchmark would; and which backfill reader processes are running."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from circhub.connections.runtime import Runtime, open_runtime, upgrade_store
from circhub.simulator import koha
from circhub.simulator.world import World, config_toml, koha_world, member_specs
from circhub.tasks.sync.cycle import run_cycle


def koha_consortium(tmp_path: Path, member_urls: list[str], central_url: str, *, seed: int = 11,
                    readers: int = 6, items: int = 6, bad_readers: int = 0,
                    demo: bool = True, upgrade: bool = True,
                    kind: str = "koha") -> tuple[World, Path]:
    """Koha members at the given URLs, seeded, and their config; the central store made
    (`circhub db upgrade`) unless `upgrade` is false. `kind`: the Koha generation every member
    runs (profile `koha` or `koha_2311`)."""
    start = datetime.now().replace(microsecond=0) - timedelta(days=20)
    world = koha_world({str(i): u for i, u in enumerate(member_urls)}, seed, start, kind)
    world.seed(readers, items, bad_readers=bad_readers)
    urls = {code: url for code, url in zip(world.desks, member_urls, strict=True)}
    config = tmp_path / "consortium.toml"
    config.write_text(config_toml(member_specs(len(member_urls)), urls, central_url,
                                  "test consortium", demo=demo,
                                  profiles={code: kind for code in urls}))
    if upgrade:
        upgrade_store(config)
    return world, config


def consortium_settings(config: Path, **settings: int | float) -> Path:
    """`[consortium]` settings added to a config file, read afresh by the next open_runtime."""
    lines = "".join(f"{name} = {value!r}\n" for name, value in settings.items())
    config.write_text(config.read_text().replace("[consortium]\n", "[consortium]\n" + lines, 1))
    open_runtime.cache_clear()
    return config


def add_koha_items(desk, code: str, stamps: list[datetime], first: int = 1,
                   itype: str = "BK") -> None:
    """One item of `code`, on its own shelf, per timestamp; barcodes numbered from `first`."""
    with desk.engine.begin() as conn:
        for i, at in enumerate(stamps):  # each with its catalogue record, as Koha requires
            koha.catalogue(conn, [f"{code}{first + i:07d}"], code, at, itype=itype,
                           timestamp=at)


def sync_cycle(config: Path) -> Runtime:
    """One cycle of every member, as the consortium flow composes it (`run_cycle`, without
    Prefect): extract, validate together, merge, push. A member's failure fails the test."""
    rt = open_runtime(str(config))
    outcomes = run_cycle(rt, [m.code for m in rt.consortium.members])
    failed = {code: o.error() for code, o in outcomes.items() if not o.ok}
    assert not failed, f"members failed: {failed}"
    return rt


def reader_processes() -> list[int]:
    """Pids of backfill reader processes (`circhub.tasks.loads.read_process`) running now."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"circhub.tasks.loads.read_process" in cmdline:
            found.append(int(pid))
    return found


def readers_gone_within(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while reader_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not reader_processes()


@dataclass
class FlowRunRecord:
    """What the Prefect server kept of one flow run: its logs, artifacts, the run itself and
    its task runs (by name), as a person reads them in the UI."""

    logs: list
    artifacts: list
    run: object
    tasks: dict


def flow_run_record(flow_run_id) -> FlowRunRecord:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
        run = client.read_flow_run(flow_run_id)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[flow_run_id])))
    return FlowRunRecord(logs, artifacts, run, {t.name: t for t in tasks})
