"""Reconcile finds what cursor polling cannot: hard deletes and rows that slipped past."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select, update

from circhub.connections.holds import holding
from circhub.connections.runtime import open_runtime
from circhub.domain.schema import drift, member_items, reader_accounts
from circhub.simulator import koha
from circhub.tasks.loads.reconcile import reconcile_member
from circhub.tasks.sync.extract import read_marks
from tests.helpers import koha_consortium, sync_cycle


def _reconcile(rt, member, **kw):
    """As the reconcile flow runs it: under the member's hold (here without Prefect)."""
    with holding(member.code):
        return reconcile_member(rt, member, **kw)


def test_a_hard_delete_and_a_row_behind_the_watermark_are_found_and_repaired(
        tmp_path, mariadb_db, pg_db):
    world, config = koha_consortium(tmp_path, [mariadb_db(), mariadb_db()], pg_db(), items=30)
    rt = sync_cycle(config)
    code, other = list(world.desks)
    desk = world.desks[code]
    with desk.engine.begin() as conn:
        conn.execute(delete(koha.items).where(koha.items.c.barcode == f"{code}0000007"))
        # written with an old timestamp, far behind the watermark and the lookback
        koha.catalogue(conn, [f"{code}0000999"], code, world.clock,
                       timestamp=world.clock.replace(year=2020))
    with world.desks[other].engine.begin() as conn:  # the other member deletes another key
        conn.execute(delete(koha.items).where(koha.items.c.barcode == f"{other}0000008"))
    member = rt.consortium.member(code)

    found = {d.entity: d for d in _reconcile(rt, member)}
    _reconcile(rt, rt.consortium.member(other))

    assert len(found["items"].missing) == 1 and len(found["items"].extra) == 1
    assert found["readers"].clean and found["loans"].clean
    with rt.store.connect() as conn:
        barcodes = {m: set(conn.execute(select(member_items.c.barcode).where(
            member_items.c.member == m)).scalars()) for m in (code, other)}
        kinds = sorted(conn.execute(select(drift.c.kind)).scalars())
    assert f"{code}0000999" in barcodes[code] and f"{code}0000007" not in barcodes[code]
    # Each repair deleted its own member's one row, not the same key elsewhere nor a later one.
    assert (len(barcodes[code]), len(barcodes[other])) == (30, 29)
    assert f"{code}0000008" in barcodes[code] and f"{other}0000007" in barcodes[other]
    assert kinds == ["extra", "extra", "missing"]
    assert all(d.clean for d in _reconcile(rt, member))  # nothing left to find


def test_a_member_never_synced_shows_no_drift_yet(tmp_path):
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(2)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/c.db")
    rt = open_runtime(str(config))
    for member in rt.consortium.members:  # no watermark: nothing a poll should have brought
        assert all(d.clean for d in _reconcile(rt, member, fix=False))


def test_a_row_one_lookback_before_the_watermark_is_left_to_the_next_poll(tmp_path):
    """The next poll reads from one lookback before the watermark, that instant included: a
    row the hub lacks there is not drift."""
    world, config = koha_consortium(tmp_path, [f"sqlite:///{tmp_path}/m.db"],
                                    f"sqlite:///{tmp_path}/c.db")
    rt = sync_cycle(config)
    code = rt.consortium.members[0].code
    mark = read_marks(rt.store, code)["items"].cursor
    since = mark - timedelta(seconds=rt.consortium.lookback_seconds)
    with world.desks[code].engine.begin() as conn:
        koha.catalogue(conn, [f"{code}0000900"], code, world.clock, timestamp=since)
        koha.catalogue(conn, [f"{code}0000901"], code, world.clock,
                       timestamp=since - timedelta(seconds=1))

    found = {d.entity: d for d in _reconcile(rt, rt.consortium.member(code), fix=False)}

    assert found["items"].missing == [_item_number(world, code, f"{code}0000901")]


def test_only_the_members_own_quarantine_of_that_entity_excuses_a_row_the_hub_lacks(tmp_path):
    """A quarantined row is held back on purpose, so it is no drift; but the same key held at
    another member, or held for another entity, excuses nothing."""
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(2)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/c.db")
    a, b = list(world.desks)
    long_ago = world.clock.replace(year=2020)  # behind any watermark and its lookback
    k1, k2 = _keys_both_entities_have(world, a, b)[:2]
    for code, bad_item, bad_reader in ((a, k1, k2), (b, k2, k1)):
        with world.desks[code].engine.begin() as conn:
            items_, readers_ = koha.items.c, koha.borrowers.c
            conn.execute(update(koha.items).where(items_.itemnumber.in_([k1, k2])).values(
                timestamp=long_ago))
            conn.execute(update(koha.items).where(items_.itemnumber == bad_item).values(
                barcode=f"XX{bad_item:07d}"))  # nobody's prefix: quarantined
            conn.execute(update(koha.borrowers).where(readers_.borrowernumber.in_([k1, k2]))
                         .values(updated_on=long_ago))
            card = conn.execute(select(readers_.cardnumber).where(
                readers_.borrowernumber == bad_reader)).scalar_one()
            conn.execute(update(koha.borrowers).where(readers_.borrowernumber == bad_reader)
                         .values(cardnumber=card[:-1] + ("0" if card[-1] != "0" else "1")))
    rt = sync_cycle(config)
    with rt.store.begin() as conn:  # the hub loses the rows held elsewhere under their keys
        for code, item, reader in ((a, k2, k1), (b, k1, k2)):
            conn.execute(delete(member_items).where(member_items.c.member == code,
                                                    member_items.c.local_id == str(item)))
            conn.execute(delete(reader_accounts).where(reader_accounts.c.member == code,
                                                       reader_accounts.c.local_id == str(reader)))

    for code, missing_item, missing_reader in ((a, k2, k1), (b, k1, k2)):
        found = {d.entity: d for d in _reconcile(rt, rt.consortium.member(code), fix=False)}
        assert found["items"].missing == [str(missing_item)], code
        assert found["readers"].missing == [str(missing_reader)], code


def _keys_both_entities_have(world, *codes: str) -> list[int]:
    """Numbers that are an item's and a reader's key at every member named."""
    common = None
    for code in codes:
        with world.desks[code].engine.connect() as conn:
            items_ = set(conn.execute(select(koha.items.c.itemnumber)).scalars())
            readers_ = {p.accounts[code] for p in world.people if code in p.accounts}
        common = (items_ & readers_) if common is None else common & items_ & readers_
    return sorted(common)


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

    # And back: of the two changes one made the content hash larger, the other smaller, so
    # a comparison that sees only one direction misses one of them.
    with world.desks[code].engine.begin() as conn:
        conn.execute(update(koha.items).where(koha.items.c.barcode == barcode).values(
            itype="BK", timestamp=last_week))
    found = {d.entity: d for d in _reconcile(rt, member)}
    assert found["items"].changed == [_item_number(world, code, barcode)]


def _item_number(world, code: str, barcode: str) -> str:
    with world.desks[code].engine.connect() as conn:
        return str(conn.execute(select(koha.items.c.itemnumber).where(
            koha.items.c.barcode == barcode)).scalar_one())
