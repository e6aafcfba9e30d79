"""Backfill: windows over the cursor, resumable after SIGKILL, idempotent when run twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from circhub.connections.holds import holding
from circhub.connections.runtime import open_runtime, upgrade_store
from circhub.domain.schema import backfills, items, member_items
from circhub.simulator.koha import KohaDesk
from circhub.simulator.world import config_toml, member_specs
from circhub.tasks.loads.backfill import backfill_member, windows
from tests.helpers import readers_gone_within

N_ITEMS = 6000
SINCE = "2026-01-01T00:00:00"


def _member_with_items(url: str) -> str:
    """One Koha member whose items were last changed one minute apart over ~4 days."""
    code = member_specs(1)[0][0]
    desk = KohaDesk(create_engine(url), code)
    desk.create_schema({code: "Sichuan Provincial Library"})
    desk.add_items([f"{code}{n:07d}" for n in range(1, N_ITEMS + 1)], datetime(2026, 1, 1))
    with desk.engine.begin() as conn:
        conn.execute(text("UPDATE items SET timestamp = "
                          "TIMESTAMPADD(MINUTE, itemnumber, '2026-01-01 00:00:00')"))
    return code


def _config(tmp_path: Path, name: str, member_url: str, central_url: str) -> Path:
    specs = member_specs(1)
    path = tmp_path / f"{name}.toml"
    path.write_text(config_toml(specs, {specs[0][0]: member_url}, central_url, name, demo=True))
    upgrade_store(path)
    return path


def _central_rows(config: Path):
    rt = open_runtime(str(config))
    with rt.store.connect() as conn:
        mirror = conn.execute(select(member_items.c.local_id, member_items.c.barcode,
                                     member_items.c.holding_member, member_items.c.row_hash)
                              .order_by(member_items.c.local_id)).all()
        catalog = conn.execute(select(items.c.barcode, items.c.owner, items.c.holder,
                                      items.c.status).order_by(items.c.barcode)).all()
    return mirror, catalog


def test_windows_cover_the_range_without_gap_or_overlap():
    start, end = datetime(2026, 1, 1), datetime(2026, 1, 2, 5)
    got = windows(start, end, timedelta(hours=6))
    assert got[0][0] == start and got[-1][1] == end and len(got) == 5
    assert all(a[1] == b[0] for a, b in zip(got, got[1:], strict=False))
    with pytest.raises(ValueError):
        windows(start, end, timedelta(0))


def test_a_backfill_run_twice_changes_nothing_the_second_time(tmp_path, mariadb_db, pg_db):
    member_url = mariadb_db()
    code = _member_with_items(member_url)
    config = _config(tmp_path, "twice", member_url, pg_db())
    rt = open_runtime(str(config))
    member = rt.consortium.member(code)
    until = datetime(2026, 1, 6)

    with holding(code):  # as the backfill flow runs it, here without Prefect
        first = backfill_member(rt, member, "items", datetime(2026, 1, 1), until,
                                timedelta(hours=12))
        before = _central_rows(config)
        rt2_report = backfill_member(rt, member, "items", datetime(2026, 1, 1), until,
                                     timedelta(days=2))

    assert first.merged == N_ITEMS and len(before[0]) == N_ITEMS
    assert rt2_report.merged == 0
    assert _central_rows(config) == before


def test_a_backfill_killed_midway_and_restarted_ends_with_the_rows_of_an_undisturbed_one(
        tmp_path, mariadb_db, pg_db, prefect_server):
    from prefect.settings import PREFECT_API_URL

    member_url = mariadb_db()
    code = _member_with_items(member_url)
    killed = _config(tmp_path, "killed", member_url, pg_db())
    calm = _config(tmp_path, "calm", member_url, pg_db())
    args = [sys.executable, "-m", "circhub", "backfill", code, "items", "--since", SINCE,
            "--until", "2026-01-06T00:00:00", "--window-hours", "2"]
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "ERROR"}

    proc = subprocess.Popen([*args, "-c", str(killed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _wait_for_some_windows(killed, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _status(killed) == "running"  # it really was stopped half-way
    assert readers_gone_within(10)  # its reader process did not outlive it
    _repossess(code)

    for config in (killed, calm):
        done = subprocess.run([*args, "-c", str(config)], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]

    assert _status(killed) == "done"
    assert _central_rows(killed) == _central_rows(calm)
    assert len(_central_rows(calm)[0]) == N_ITEMS


def _repossess(code: str) -> None:
    """What the Prefect server's repossessor does once the killed run's lease ends (within
    LEASE_SECONDS; tests/test_deployments.py shows it on a real server): its member slot and
    source connection come back. The test harness' server runs no repossessor."""
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    from circhub.flows.slots import SOURCE_LIMIT, member_limit

    with get_client(sync_client=True) as client:
        for name in (member_limit(code), SOURCE_LIMIT):  # nothing else holds them here
            client.update_global_concurrency_limit(
                name, GlobalConcurrencyLimitUpdate(active_slots=0))


def _status(config: Path) -> str:
    open_runtime.cache_clear()
    rt = open_runtime(str(config))
    with rt.store.connect() as conn:
        return conn.execute(select(backfills.c.status)).scalar_one()


def _wait_for_some_windows(config: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the backfill finished before it could be killed"
        try:
            rt = open_runtime(str(config))
            with rt.store.connect() as conn:
                done = conn.execute(select(func.count()).select_from(member_items)).scalar()
            if done >= N_ITEMS // 4:
                return
        except Exception:  # noqa: BLE001 - the store may not exist yet
            open_runtime.cache_clear()
        time.sleep(0.2)
    raise AssertionError("the backfill never got going")
