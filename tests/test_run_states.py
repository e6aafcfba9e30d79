"""Run states a person can act on: members down are named in a Completed run, past
`max_failed_share` the run is Failed, each failed member is a red task run with its one-line
cause, no traceback for an expected condition, and only transient errors are retried."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select, text

from circhub.connections.errors import is_permanent, is_transient
from circhub.connections.runtime import open_runtime
from circhub.domain.schema import sync_runs
from circhub.flows import tasks as flow_tasks
from circhub.flows.push import push_writebacks
from circhub.flows.sync import sync_consortium
from tests.helpers import consortium_settings, flow_run_record, koha_consortium

DOWN = "mysql+pymysql://root@127.0.0.1:1/not_there"  # nothing listens on port 1: 2003
REFUSED = "mysql+pymysql://circhub_nobody:wrong@127.0.0.1:3306/x"  # 1045/1698 access denied


def _played(tmp_path, n: int = 4):
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(n)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/central.db")
    world.play(days=3, actions_per_day=15)
    return world, config, members


def _swap(config, old: str, new: str) -> None:
    config.write_text(config.read_text().replace(f'"{old}"', f'"{new}"'))
    open_runtime.cache_clear()


def _read_back(flow_run_id):
    record = flow_run_record(flow_run_id)
    return record.logs, record.tasks


def _artifact_rows(key: str) -> list[dict] | None:
    import json

    from prefect.artifacts import Artifact

    found = Artifact.get(key)
    if found is None:
        return None
    return json.loads(found.data) if isinstance(found.data, str) else found.data


@pytest.mark.usefixtures("prefect_server")
def test_one_unreachable_member_among_four_completes_the_run_naming_it_without_a_traceback(
        tmp_path):
    world, config, members = _played(tmp_path)
    down = list(world.desks)[2]
    _swap(config, members[2], DOWN)

    state = sync_consortium(config=str(config), return_state=True)

    assert state.is_completed(), state.message
    assert state.message.startswith("3 of 4 members synced; 1 failed: ")
    assert f"{down}: member {down}: cannot read its koha database" in state.message
    logs, tasks = _read_back(state.state_details.flow_run_id)
    assert not [log.message for log in logs if "Traceback" in log.message]
    red = tasks[f"extract-{down}"]
    assert red.state.is_failed() and f"member {down}" in red.state.message
    assert red.run_count == 2  # connection refused (2003) is transient: retried once
    assert all(tasks[f"extract-{c}"].state.is_completed() for c in world.desks if c != down)
    rows = {r["member"]: r for r in _artifact_rows("sync-summary")}
    assert rows[down]["status"] == "failed" and "cannot read" in rows[down]["error"]
    assert rows[down]["name"] and "readers read" in rows[down]


@pytest.mark.usefixtures("prefect_server")
def test_in_a_large_consortium_members_share_task_runs_and_a_failed_one_is_still_red_by_name(
        tmp_path, monkeypatch):
    """Past MOST_GROUPS members, a task run takes a group of them (one Prefect bookkeeping and
    one slot acquisition per group); the member that fails inside its group is retried once by
    the group (its error may pass) and then gets its own red task run with its cause."""
    monkeypatch.setattr(flow_tasks, "MOST_GROUPS", 2)  # four members: two groups of two
    world, config, members = _played(tmp_path)
    codes = list(world.desks)
    down = codes[3]
    _swap(config, members[3], DOWN)

    state = sync_consortium(config=str(config), return_state=True)

    assert state.is_completed(), state.message
    assert state.message.startswith("3 of 4 members synced; 1 failed: ")
    logs, tasks = _read_back(state.state_details.flow_run_id)
    assert tasks[f"extract-{codes[0]}-and-1-more"].state.is_completed()
    assert tasks[f"extract-{codes[2]}-and-1-more"].state.is_completed()  # its other member
    red = tasks[f"extract-{down}"]
    assert red.state.is_failed() and f"member {down}: cannot read" in red.state.message
    assert any(f"member {down}: extract failed, trying once more" in log.message
               for log in logs)  # connection refused (2003) is transient: retried once
    assert not [log.message for log in logs if "Traceback" in log.message]
    rows = {r["member"]: r for r in _artifact_rows("sync-summary")}
    assert rows[down]["status"] == "failed"
    assert all(rows[c]["status"] == "ok" for c in codes[:3])


def test_member_groups_keep_every_member_once_in_order_and_one_a_group_while_few():
    codes = [f"M{i:03d}" for i in range(251)]
    groups = flow_tasks.member_groups(codes)
    assert len(groups) <= flow_tasks.MOST_GROUPS and max(map(len, groups)) == 8
    assert [c for g in groups for c in g] == codes
    assert flow_tasks.member_groups(codes[:4]) == [[c] for c in codes[:4]]


@pytest.mark.usefixtures("prefect_server")
def test_more_members_down_than_the_configured_share_fails_the_run_by_name(tmp_path):
    world, config, members = _played(tmp_path)
    codes = list(world.desks)
    _swap(config, members[0], DOWN)
    _swap(config, members[1], DOWN)

    state = sync_consortium(config=str(config), return_state=True)

    assert state.is_failed()
    assert "2 of 4 members failed, more than max_failed_share (0.25) allows" in state.message
    assert f"{codes[0]}: member {codes[0]}" in state.message and codes[1] in state.message
    logs, _ = _read_back(state.state_details.flow_run_id)
    assert not [log.message for log in logs if "Traceback" in log.message]

    consortium_settings(config, max_failed_share=0.5)  # half the consortium may be down
    assert sync_consortium(config=str(config), return_state=True).is_completed()


@pytest.mark.usefixtures("prefect_server")
def test_a_refused_login_fails_at_once_with_its_cause_and_is_not_retried(tmp_path):
    world, config, members = _played(tmp_path, n=3)
    refused = list(world.desks)[0]
    _swap(config, members[0], REFUSED)

    state = sync_consortium(config=str(config), return_state=True)

    _, tasks = _read_back(state.state_details.flow_run_id)
    assert tasks[f"extract-{refused}"].run_count == 1
    assert f"{refused}: member {refused}" in state.message and "Access denied" in state.message
    rt = open_runtime(str(config))
    with rt.store.connect() as conn:
        error = conn.execute(select(sync_runs.c.error).where(
            sync_runs.c.member == refused)).scalar_one()
    assert "Access denied" in error


@pytest.mark.usefixtures("prefect_server")
def test_sync_summary_still_holds_the_sync_table_after_a_push_and_an_idle_push_adds_nothing(
        tmp_path):
    from prefect.artifacts import Artifact

    world, config, _ = _played(tmp_path, n=3)
    sync_consortium(config=str(config))
    before = Artifact.get("push-summary")

    push_writebacks(config=str(config))  # the sync pushed everything: nothing to do

    rows = _artifact_rows("sync-summary")
    assert sorted(r["member"] for r in rows) == sorted(world.desks)
    assert "loans merged" in rows[0] and "write-backs owed" in rows[0]
    after = Artifact.get("push-summary")
    assert (before and before.id) == (after and after.id)  # no artifact for an idle push


def test_driver_error_codes_decide_what_is_transient(pg_db):
    """Real errors from the real drivers: MariaDB 1045 and 1054, PostgreSQL 42703 and a
    missing database are not transient; a refused connection is."""
    from sqlalchemy.exc import DBAPIError

    def raised(url: str, sql: str = "SELECT 1") -> DBAPIError:
        try:
            with create_engine(url).connect() as conn:
                conn.execute(text(sql))
        except DBAPIError as exc:
            return exc
        raise AssertionError(f"{sql} on {url} did not fail")

    mariadb = "mysql+pymysql://root@127.0.0.1:3306/mysql"
    refused_login = raised(REFUSED)
    unknown_column = raised(mariadb, "SELECT no_such_column FROM user")
    unreachable = raised(DOWN)
    pg_column = raised(pg_db(), "SELECT no_such_column")
    pg_unreachable = raised("postgresql+psycopg://postgres@127.0.0.1:1/x")
    pg_no_database = raised("postgresql+psycopg://postgres@127.0.0.1:5432/circhub_nothing_x")

    assert [is_transient(e) for e in (refused_login, unknown_column, pg_column,
                                      pg_no_database)] == [False] * 4
    assert [is_permanent(e) for e in (refused_login, unknown_column, pg_column,
                                      pg_no_database)] == [True] * 4
    assert is_transient(unreachable) and is_transient(pg_unreachable)
