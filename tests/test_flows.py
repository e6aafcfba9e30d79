"""The Prefect flows on a real Prefect server: summary artifact, a member that cannot be reached."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from circhub.domain.schema import loans, sync_runs, watermarks
from circhub.flows.sync import sync_consortium, sync_library
from tests.helpers import add_koha_items, consortium_settings, koha_consortium

pytestmark = pytest.mark.usefixtures("prefect_server")
DOWN = "mysql+pymysql://root@127.0.0.1:1/not_there"  # nothing listens on port 1


def _artifact_rows(key: str = "sync-summary") -> list[dict]:
    import json

    from prefect.artifacts import Artifact

    artifact = Artifact.get(key)
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


def _played(tmp_path):
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(3)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/central.db")
    world.play(days=3, actions_per_day=15)
    return world, config, members


def test_consortium_sync_ends_with_a_table_artifact_of_every_member(tmp_path):
    world, config, _ = _played(tmp_path)

    result = sync_consortium(config=str(config))

    rows = _artifact_rows()
    assert sorted(r["member"] for r in rows) == sorted(world.desks)
    assert all(r["status"] == "ok" for r in rows)
    assert sum(r["events"] for r in rows) > 0
    assert result.keys() == set(world.desks)
    checks = _artifact_rows("validation-summary")
    assert {r["entity"] for r in checks} == {"readers", "items", "loans"}
    assert all(r["checked"] > 0 for r in checks)


def test_a_member_with_more_changes_than_a_sync_reads_shows_as_catching_up(tmp_path):
    world, config, _ = _played(tmp_path)
    consortium_settings(config, max_delta_rows=10, lookback_seconds=0)
    for code, desk in world.desks.items():  # 30 changes, a second apart
        add_koha_items(desk, code, [world.clock + timedelta(seconds=i) for i in range(30)],
                       first=900)

    sync_consortium(config=str(config))

    rows = _artifact_rows()
    assert all(r["status"] == "ok" and "items" in r["catching up"] for r in rows)
    for _ in range(10):  # the next runs go on with the rest
        if not any(r["catching up"] for r in sync_consortium(config=str(config)).values()):
            break
    assert not any(r["catching up"] for r in _artifact_rows())


def test_an_unreachable_member_fails_by_name_while_the_others_sync_and_it_catches_up_later(
        tmp_path):
    world, config, members = _played(tmp_path)
    down_code = list(world.desks)[1]
    good_text = config.read_text()
    config.write_text(good_text.replace(members[1], DOWN))

    state = sync_consortium(config=str(config), return_state=True)

    assert state.is_failed()
    assert down_code in state.message and "cannot read" in state.message
    from circhub.connections.runtime import open_runtime

    rt = open_runtime(str(config))
    with rt.store.connect() as conn:
        marked = set(conn.execute(select(watermarks.c.member).distinct()).scalars())
        failed = conn.execute(select(sync_runs.c.error).where(
            sync_runs.c.member == down_code)).scalar_one()
    assert marked == set(world.desks) - {down_code}
    assert f"member {down_code}" in failed and "127.0.0.1" in failed

    config.write_text(good_text)  # the member is back
    open_runtime.cache_clear()
    sync_library(member=down_code, config=str(config))

    rt = open_runtime(str(config))
    with rt.store.connect() as conn:
        marked = set(conn.execute(select(watermarks.c.member).distinct()).scalars())
        its_loans = conn.execute(select(func.count()).select_from(loans)
                                 .where(loans.c.member == down_code)).scalar()
    assert down_code in marked
    assert its_loans > 0


def test_a_batch_failing_wholesale_fails_the_run_by_name_up_to_the_configured_share(tmp_path):
    """12 items of nobody's beside a member's own: at the default share (half) its batch is
    refused, the run fails naming it, and the other members sync; with `max_bad_share` at 0.8
    the same rows are quarantined and the run completes."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from circhub.connections.runtime import open_runtime
    from circhub.domain.schema import member_items, quarantine

    world, config, _ = _played(tmp_path)
    bad_code, good_code = list(world.desks)[:2]
    add_koha_items(world.desks[bad_code], "ZZ999", [world.clock] * 12)

    state = sync_consortium(config=str(config), return_state=True)

    assert state.is_failed()
    assert f"{bad_code}: member {bad_code}: 12 of" in state.message
    assert "fail validation" in state.message and "barcode_matches_owner=12" in state.message
    with get_client(sync_client=True) as client:  # its own red task run, with the cause
        red = [t for t in client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
            if t.name == f"validate-{bad_code}"]
    assert len(red) == 1 and red[0].state.is_failed() and "12 of" in red[0].state.message
    rt = open_runtime(str(config))
    with rt.store.connect() as conn:
        marked = set(conn.execute(select(watermarks.c.member).distinct()).scalars())
    assert good_code in marked and bad_code not in marked

    consortium_settings(config, max_bad_share=0.8)
    assert sync_consortium(config=str(config), return_state=True).is_completed()
    rt = open_runtime(str(config))
    with rt.store.connect() as conn:
        held = conn.execute(select(func.count()).select_from(quarantine).where(
            quarantine.c.member == bad_code, quarantine.c.entity == "items")).scalar()
        merged = conn.execute(select(func.count()).select_from(member_items).where(
            member_items.c.member == bad_code)).scalar()
    assert held == 12 and merged > 0


def test_a_run_that_never_finishes_is_not_started_past_its_last_attempt(tmp_path):
    """Each attempt fails (the central store is down); the run's fourth start, a retry here as
    it would be a reschedule after a crash in the cluster, is refused by name."""
    from prefect.client.orchestration import get_client

    from circhub.flows.attempts import MAX_ATTEMPTS

    members = [f"sqlite:///{tmp_path}/m0.db"]
    _, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/central.db")
    config.write_text(config.read_text().replace(
        f"sqlite:///{tmp_path}/central.db", "postgresql+psycopg://postgres@127.0.0.1:1/down"))
    retried = sync_consortium.with_options(retries=MAX_ATTEMPTS, retry_delay_seconds=0)

    state = retried(config=str(config), return_state=True)

    assert state.is_failed()
    assert f"attempt {MAX_ATTEMPTS + 1}" in state.message
    assert "not started again" in state.message
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.run_count == MAX_ATTEMPTS + 1
