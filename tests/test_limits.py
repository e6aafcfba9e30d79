"""Prefect concurrency limits that circhub creates itself: strict, per member, per source pool."""

from __future__ import annotations

import threading

import pytest
from prefect import get_client

from circhub.connections.config import parse_config
from circhub.flows import slots
from circhub.flows.slots import SOURCE_LIMIT, ensure_limits, member_limit, source_slots
from tests.helpers import koha_consortium

pytestmark = pytest.mark.usefixtures("prefect_server")


def _consortium(codes: list[str], max_connections: int):
    return parse_config({
        "consortium": {"name": "limits test", "max_source_connections": max_connections},
        "members": [{"code": c, "name": c, "profile": "koha", "connection": "sqlite://"}
                    for c in codes]})


def _limits() -> dict[str, int]:
    with get_client(sync_client=True) as client:
        return {lim.name: lim.limit for lim in client.read_global_concurrency_limits(limit=200)}


class Holder(threading.Thread):
    """Holds a member's slots in another thread, as another flow run would."""

    def __init__(self, code: str):
        super().__init__(daemon=True)
        self.code, self.held, self.release = code, threading.Event(), threading.Event()

    def run(self) -> None:
        with source_slots(self.code, wait_seconds=10):
            self.held.set()
            self.release.wait(30)

    def __enter__(self):
        self.start()
        assert self.held.wait(15), f"could not take {self.code}'s slots"
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.join(10)


def test_ensure_limits_creates_one_per_member_and_the_source_pool_then_corrects_a_changed_size():
    created = ensure_limits(_consortium(["LA001", "LA002"], 3))

    assert set(created) == {SOURCE_LIMIT, member_limit("LA001"), member_limit("LA002")}
    limits = _limits()
    assert limits[SOURCE_LIMIT] == 3 and limits[member_limit("LA001")] == 1
    assert ensure_limits(_consortium(["LA001", "LA002"], 3)) == []  # nothing to do: one read
    assert ensure_limits(_consortium(["LA001", "LA002"], 5)) == [SOURCE_LIMIT]
    assert _limits()[SOURCE_LIMIT] == 5


def test_a_member_without_a_limit_is_an_error_not_a_silent_pass():
    ensure_limits(_consortium(["LB001"], 2))

    with pytest.raises(Exception, match="LB999|not found|exist"), source_slots("LB999", 2):
        pass  # pragma: no cover - never entered


def test_a_member_held_by_another_run_times_out_by_name_while_other_members_proceed():
    ensure_limits(_consortium(["LC001", "LC002"], 4))

    with Holder("LC001"):
        # It gives up after its own wait, saying which member and how long; no clock asserted.
        with pytest.raises(TimeoutError, match=r"member LC001: .* for 2 s \(another run holds"), \
                source_slots("LC001", wait_seconds=2):
            pass  # pragma: no cover - never entered
        with source_slots("LC002", wait_seconds=5):
            pass  # another member is not held up


def test_the_source_pool_bounds_connections_across_members():
    ensure_limits(_consortium(["LD001", "LD002", "LD003"], 2))

    with Holder("LD001"), Holder("LD002"), pytest.raises(TimeoutError), \
            source_slots("LD003", wait_seconds=2):
        pass  # pragma: no cover - never entered


def test_consortium_sync_fails_only_the_member_another_run_holds(tmp_path, monkeypatch):
    from circhub.flows.sync import sync_consortium

    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(3)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/central.db")
    world.play(days=2, actions_per_day=10)
    busy = list(world.desks)[0]
    # Long enough for the free members' first acquisitions on a busy 2-core machine.
    monkeypatch.setattr(slots, "SLOT_WAIT_SECONDS", 6)
    from circhub.connections.runtime import open_runtime

    ensure_limits(open_runtime(str(config)).consortium)

    with Holder(busy):  # e.g. a manual sync-library run of that member still working
        state = sync_consortium(config=str(config), return_state=True)

    # One of three is more than the default max_failed_share (0.25): the run is Failed.
    assert state.is_failed() and "2 of 3 members synced" in state.message
    assert f"1 failed: {busy}: " in state.message
    from sqlalchemy import select

    from circhub.domain.schema import sync_runs

    with open_runtime(str(config)).store.connect() as conn:
        runs = dict(conn.execute(select(sync_runs.c.member, sync_runs.c.status)).all())
    assert runs[busy] == "failed"
    assert all(runs[c] == "ok" for c in world.desks if c != busy)
