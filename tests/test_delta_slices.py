"""A delta larger than `max_delta_rows` is read a slice per sync: no more rows than that while
the lookback holds fewer, never a cursor value split, and every row there once the syncs
catch up."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from circhub.connections.engines import member_engine
from circhub.connections.holds import holding
from circhub.connections.runtime import open_runtime
from circhub.domain.schema import member_items, watermarks
from circhub.simulator import koha
from circhub.tasks.sync.cycle import sync_member
from circhub.tasks.sync.extract import entity_query, read_entity
from tests.helpers import add_koha_items, consortium_settings, koha_consortium

LIMIT = 40


def _member(tmp_path, mariadb_db, pg_db, lookback: int = 5):
    world, config = koha_consortium(tmp_path, [mariadb_db()], pg_db(), items=0, readers=2)
    consortium_settings(config, max_delta_rows=LIMIT, lookback_seconds=lookback)
    with world.desks[list(world.desks)[0]].engine.begin() as conn:
        conn.execute(delete(koha.items))  # the seed's blank item: the test sets every cursor
    open_runtime.cache_clear()
    rt = open_runtime(str(config))
    return world, rt, rt.consortium.member(list(world.desks)[0])


def _add_items(desk, code: str, start: datetime, n: int) -> None:
    """n items, two to a second: slices must keep both rows of a second together."""
    add_koha_items(desk, code, [start + timedelta(seconds=i // 2) for i in range(n)])


def _central_items(rt, code) -> dict[str, datetime]:
    with rt.store.connect() as conn:
        return dict(conn.execute(select(member_items.c.local_id, member_items.c.source_updated_at)
                                 .where(member_items.c.member == code)).all())


def _items_mark(rt, code) -> datetime:
    with rt.store.connect() as conn:
        return conn.execute(select(watermarks.c.cursor_value).where(
            watermarks.c.member == code, watermarks.c.entity == "items")).scalar_one()


def test_a_large_delta_is_read_in_slices_that_catch_up(tmp_path, mariadb_db, pg_db):
    world, rt, member = _member(tmp_path, mariadb_db, pg_db)
    _add_items(world.desks[member.code], member.code, world.clock - timedelta(days=2), 150)

    first = sync_member(rt, member)
    assert first.extract.catching_up == ("items",)
    got = _central_items(rt, member.code)
    assert 0 < len(got) < LIMIT  # the last (maybe cut) second is left for the next slice
    assert len(got) % 2 == 0  # two rows a second: no second was split
    assert _items_mark(rt, member.code) == max(got.values())

    syncs = 1
    while (result := sync_member(rt, member)).extract.catching_up:
        syncs += 1
        assert result.extract.counts()["items"] <= LIMIT  # the lookback's 10 rows included
        assert syncs < 10, "the slices do not catch up"
    with holding(member.code):
        fresh = read_entity(member_engine(member), entity_query(member, "items", None),
                            "items")
    assert set(_central_items(rt, member.code)) == set(fresh["local_id"].astype(str))
    assert len(fresh) == 150
    assert syncs >= 150 // LIMIT


def test_slices_get_past_a_lookback_holding_more_rows_than_the_limit(
        tmp_path, mariadb_db, pg_db):
    """300 s of lookback at two rows a second re-reads up to 600 rows: the slice grows until
    it gets past the watermark, and the syncs still catch up."""
    world, rt, member = _member(tmp_path, mariadb_db, pg_db, lookback=300)
    _add_items(world.desks[member.code], member.code, world.clock - timedelta(days=2), 150)
    partial = 0
    while sync_member(rt, member).extract.catching_up:
        partial += 1
        assert partial < 10, "the slices do not catch up"
    assert partial >= 1
    assert len(_central_items(rt, member.code)) == 150


def test_more_rows_in_one_second_than_the_limit_are_read_whole(tmp_path, mariadb_db, pg_db):
    """A bulk update gives every row one timestamp: a slice could never get past it."""
    world, rt, member = _member(tmp_path, mariadb_db, pg_db)
    desk = world.desks[member.code]
    _add_items(desk, member.code, world.clock - timedelta(days=2), 30)
    sync_member(rt, member)
    bulk_at = world.clock - timedelta(days=1)
    with desk.engine.begin() as conn:
        conn.execute(update(koha.items).values(itype="REF", timestamp=bulk_at))
    more = LIMIT + 20  # new rows in the same second: 30 + 60 rows share one cursor value
    add_koha_items(desk, member.code, [bulk_at] * more, first=9_000_000, itype="REF")

    result = sync_member(rt, member)

    assert result.extract.catching_up == ()
    assert result.extract.counts()["items"] == 30 + more
    assert set(_central_items(rt, member.code).values()) == {bulk_at}
    assert _items_mark(rt, member.code) == bulk_at


def test_a_slice_keeps_every_whole_cursor_value_before_the_cut(tmp_path, mariadb_db, pg_db):
    """One row a second: a slice of LIMIT rows leaves only its last second (the one that may
    be cut) to the next sync, not more (found by `make mutants`: a cut one row earlier left a
    whole second behind and went unnoticed)."""
    world, rt, member = _member(tmp_path, mariadb_db, pg_db)
    start = world.clock - timedelta(days=2)
    add_koha_items(world.desks[member.code], member.code,
                   [start + timedelta(seconds=i) for i in range(LIMIT + 5)])

    first = sync_member(rt, member)

    assert first.extract.catching_up == ("items",)
    assert len(_central_items(rt, member.code)) == LIMIT - 1
    assert _items_mark(rt, member.code) == start + timedelta(seconds=LIMIT - 2)
