"""`circhub status`: one line per member, exit 1 when something needs a person."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from typer.testing import CliRunner

from circhub.cli import app
from circhub.connections.runtime import open_runtime
from circhub.domain.schema import outbox, sync_runs
from circhub.tasks.reporting.status import Staleness, member_statuses, needs_attention
from tests.helpers import koha_consortium, sync_cycle


def _synced(tmp_path, pg_db):
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(3)]
    world, config = koha_consortium(tmp_path, members, pg_db(), bad_readers=2)
    world.play(days=3, actions_per_day=15)
    return world, config, sync_cycle(config)


def _status(config, *args):
    return CliRunner().invoke(app, ["status", "-c", str(config), *args],
                              env={"COLUMNS": "200"})


def test_status_lists_every_member_and_exits_zero_when_all_are_fresh(tmp_path, pg_db):
    world, config, rt = _synced(tmp_path, pg_db)

    result = _status(config)

    assert result.exit_code == 0, result.output
    for code in world.desks:
        assert code in result.output
    assert "all 3 members fresh" in result.output
    rows = member_statuses(rt.store, rt.consortium)
    assert sum(r.quarantined for r in rows) == 2  # the two readers with mistyped ID numbers
    assert all(r.last_status == "ok" and r.lag < timedelta(minutes=5) for r in rows)


def test_a_member_behind_and_dead_letters_need_a_person_and_exit_one(tmp_path, pg_db):
    world, config, rt = _synced(tmp_path, pg_db)
    late, owed = list(world.desks)[:2]
    with rt.store.begin() as conn:  # the state the store is in after hours of failed runs
        conn.execute(update(sync_runs).where(sync_runs.c.member == late).values(
            finished_at=datetime.now() - timedelta(hours=2)))
        first = conn.execute(select(outbox.c.id).order_by(outbox.c.id).limit(1)).scalar()
        conn.execute(update(outbox).where(outbox.c.id == first).values(
            status="dead", target=owed, last_error="OperationalError: gone"))

    result = _status(config)

    assert result.exit_code == 1
    assert f"{late}: not synced for 12" in result.output
    assert f"{owed}: 1 write-back(s) dead-lettered" in result.output
    flagged = needs_attention(member_statuses(rt.store, rt.consortium), Staleness())
    assert {s.code for s in flagged} == {late, owed}
    assert _status(config, "--interval", "3600").exit_code == 1  # dead letters still count


def test_a_member_that_never_synced_is_stale_unless_sync_is_switched_off(tmp_path, pg_db):
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(2)]
    world, config = koha_consortium(tmp_path, members, pg_db())
    config.write_text(config.read_text().replace('profile = "koha"', 'profile = "koha"\n'
                                                 "sync = false", 1))
    rt = open_runtime(str(config))

    rows = member_statuses(rt.store, rt.consortium)

    assert [r.problems(Staleness()) for r in rows] == [[], ["never synced"]]
    assert _status(config).exit_code == 1
