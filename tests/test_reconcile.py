"""Reconcile finds what cursor polling cannot: hard deletes and rows that slipped past."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select, update

from circhub.connections.holds import holding
from circhub.domain.schema import drift, member_items
from circhub.simulator import koha
from circhub.tasks.loads.reconcile import reconcile_member
from tests.helpers import koha_consortium, sync_cycle


def _reconcile(rt, member, **kw):
    """As the reconcile flow runs it: under the member's hold (here without Prefect)."""
    with holding(member.code):
        return reconcile_member(rt, member, **kw)


def test_a_hard_delete_and_a_row_behind_the_watermark_are_found_and_repaired(
        tmp_path, mariadb_db, pg_db):
    world, config = koha_consortium(tmp_path, [mariadb_db(), mariadb_db()], pg_db(), items=30)
    rt = sync_cycle(config)
    code = list(world.desks)[0]
    desk = world.desks[code]
    with desk.engine.begin() as conn:
        conn.execute(delete(koha.items).where(koha.items.c.barcode == f"{code}0000007"))
        # written with an old timestamp, far behind the watermark and the lookback
        koha.catalogue(conn, [f"{code}0000999"], code, world.clock,
                       timestamp=world.clock.replace(year=2020))
    member = rt.consortium.member(code)

    found = {d.entity: d for d in _reconcile(rt, member)}

    assert len(found["items"].missing) == 1 and len(found["items"].extra) == 1
    assert found["readers"].clean and found["loans"].clean
    with rt.store.connect() as conn:
        barcodes = set(conn.execute(select(member_items.c.barcode).where(
            member_items.c.member == code)).scalars())
        kinds = sorted(conn.execute(select(drift.c.kind)).scalars())
    assert f"{code}0000999" in barcodes and f"{code}0000007" not in barcodes
    assert kinds == ["extra", "missing"]
    assert all(d.clean for d in _reconcile(rt, member))  # nothing left to find


def test_a_consortium_in_step_shows_no_drift(tmp_path):
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(2)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/c.db")
    world.play(days=2, actions_per_day=15)
    rt = sync_cycle(config)
    for member in rt.consortium.members:
        assert all(d.clean for d in _reconcile(rt, member, fix=False))
    with rt.store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(drift)).scalar() == 0


def test_a_key_set_swapped_for_one_of_equal_count_sum_and_squares_is_found(
        tmp_path, mariadb_db, pg_db):
    """{1, 5, 6} and {2, 3, 7}: same count, same sum, same sum of squares."""
    world, config = koha_consortium(tmp_path, [mariadb_db()], pg_db(), items=0)
    code = list(world.desks)[0]
    desk = world.desks[code]

    def items(conn, numbers, at):
        for n in numbers:
            koha.catalogue(conn, [f"{code}00009{n:02d}"], code, at, itemnumber=n, timestamp=at)

    with desk.engine.begin() as conn:
        conn.execute(delete(koha.items))
        items(conn, [2, 3, 7], world.clock)
    rt = sync_cycle(config)
    with desk.engine.begin() as conn:  # swapped behind the watermark: no sync sees it
        conn.execute(delete(koha.items))
        items(conn, [1, 5, 6], world.clock.replace(year=2020))

    found = {d.entity: d for d in _reconcile(rt, rt.consortium.member(code), fix=False)}

    assert found["items"].missing == ["1", "5", "6"]
    assert found["items"].extra == ["2", "3", "7"]


def test_a_row_changed_without_its_cursor_moving_is_found_by_its_content(
        tmp_path, mariadb_db, pg_db):
    """A foreign-key action or an edit outside the desk changes a row and leaves its
    timestamp: no poll sees it, its content hash does."""
    world, config = koha_consortium(tmp_path, [mariadb_db(), mariadb_db()], pg_db(), items=5)
    code, other = list(world.desks)
    barcode = f"{code}0000002"
    last_week = world.clock - timedelta(days=7)
    with world.desks[code].engine.begin() as conn:  # an item last changed a week ago
        conn.execute(update(koha.items).where(koha.items.c.barcode == barcode).values(
            timestamp=last_week))
    rt = sync_cycle(config)
    with world.desks[code].engine.begin() as conn:
        conn.execute(update(koha.items).where(koha.items.c.barcode == barcode).values(
            itype="REF", timestamp=last_week))  # the timestamp written back as it was
    member = rt.consortium.member(code)

    found = {d.entity: d for d in _reconcile(rt, member)}

    assert found["items"].changed == [_item_number(world, code, barcode)]
    assert not found["items"].missing and not found["items"].extra
    with rt.store.connect() as conn:
        assert conn.execute(select(drift.c.kind)).scalars().all() == ["changed"]
    assert all(d.clean for d in _reconcile(rt, member))  # merged again: in step


def _item_number(world, code: str, barcode: str) -> str:
    with world.desks[code].engine.connect() as conn:
        return str(conn.execute(select(koha.items.c.itemnumber).where(
            koha.items.c.barcode == barcode)).scalar_one())
