"""Write-backs into Evergreen as Evergreen ships it (simulator/evergreen_schema.py) and as its
own desk behaves (simulator/evergreen.py, from Circulate.pm): two Evergreen members on real
PostgreSQL, a PostgreSQL central store, syncs and pushes as plain stage calls.

What the owner's staff must see: its book away is checked out to the consortium stand-in at the
holder's org unit, its home (circ_lib) untouched unless the copy floats there, and nothing its
own desk did later undone by a stale command.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text

from circhub.connections.holds import holding
from circhub.connections.profile import load_profile
from circhub.connections.runtime import upgrade_store
from circhub.domain.schema import member_items, quarantine
from circhub.simulator.world import config_toml, member_specs, mixed_world
from circhub.tasks.loads.reconcile import reconcile_member
from circhub.tasks.writeback.push import apply_command
from tests.writeback import commands, dispose, ils, push, reader, sync

EVERGREEN = load_profile("evergreen")


@pytest.fixture
def evergreens(tmp_path, pg_db):
    urls = [pg_db(), pg_db()]
    start = datetime.now().replace(microsecond=0) - timedelta(days=20)
    world = mixed_world([("evergreen", url) for url in urls], seed=5, start=start)
    world.seed(readers_per_member=2, items_per_member=3)
    codes = list(world.desks)
    config = tmp_path / "consortium.toml"
    config.write_text(config_toml(member_specs(2), dict(zip(codes, urls, strict=True)), pg_db(),
                                  "evergreens", demo=True,
                                  profiles=dict.fromkeys(codes, "evergreen")))
    upgrade_store(config)  # `circhub db upgrade`
    yield world, config, codes
    dispose(world, config)


def copy_view(world, member: str, barcode: str, *, deleted: bool = False):
    """The owner's copy: its circ_lib and status, and its open circulation (patron, where)."""
    [row] = ils(world, member,
                "SELECT here.shortname AS circ_lib, acp.status, au.usrname AS patron, "
                "out_at.shortname AS out_at, circ.due_date FROM asset.copy acp "
                "JOIN actor.org_unit here ON here.id = acp.circ_lib "
                "LEFT JOIN action.circulation circ ON circ.target_copy = acp.id "
                "AND circ.checkin_time IS NULL "
                "LEFT JOIN actor.usr au ON au.id = circ.usr "
                "LEFT JOIN actor.org_unit out_at ON out_at.id = circ.circ_lib "
                "WHERE acp.barcode = :b AND acp.deleted = :d", b=barcode, d=deleted)
    return row


def lent_home_returned_away(world, config, owner: str, away: str, book: str):
    world.checkout(book, owner, reader(world, owner))
    circ_id = world.books[book].loan[1]
    push(sync(config))
    world.checkin(book, away)
    rt = sync(config)
    push(rt)
    return rt, circ_id


def test_a_cross_return_and_secondary_circulation_land_at_the_owner_without_an_error(
        evergreens):
    world, config, (a, b) = evergreens
    book = f"{a}0000001"
    rt, circ_id = lent_home_returned_away(world, config, a, b, book)

    [circ] = ils(world, a, "SELECT checkin_lib, stop_fines, stop_fines_time, checkin_time, "
                           "xact_finish, checkin_staff FROM action.circulation WHERE id = :id",
                 id=circ_id)
    assert circ.stop_fines == "CHECKIN" and circ.stop_fines_time == circ.checkin_time
    assert circ.xact_finish is not None and circ.checkin_staff is not None
    view = copy_view(world, a, book)
    assert (view.circ_lib, view.status, view.patron, view.out_at, view.due_date) == (
        a, 1, "circhub-consortium", b, None)

    world.checkout(book, b, reader(world, b))  # secondary circulation at the holder
    rt = sync(config)
    push(rt)
    [due] = ils(world, b, "SELECT due_date FROM action.circulation WHERE checkin_time IS NULL")
    view = copy_view(world, a, book)
    assert (view.circ_lib, view.status, view.out_at, view.due_date) == (a, 1, b, due.due_date)
    assert {c.status for c in commands(rt, book)} == {"applied"}


def test_a_book_back_from_away_is_checked_in_at_home_by_the_owners_own_desk(evergreens):
    world, config, (a, b) = evergreens
    book = f"{a}0000002"
    lent_home_returned_away(world, config, a, b, book)

    world.checkin(book, a)  # Evergreen's own check-in: circ_lib was never moved, so no transit

    view = copy_view(world, a, book)
    assert (view.circ_lib, view.status, view.patron) == (a, 7, None)
    assert ils(world, a, "SELECT id FROM action.transit_copy") == []
    rt = sync(config)
    push(rt)
    assert all(c.status == "applied" for c in commands(rt, book))
    assert copy_view(world, a, book).status == 7


def test_a_floating_copy_floats_to_a_holder_its_group_names(evergreens):
    world, config, (a, b) = evergreens
    book = f"{a}0000003"
    with world.desks[a].engine.begin() as conn:
        conn.execute(text("INSERT INTO config.floating_group (id, name) VALUES (1, 'One-card')"))
        conn.execute(text("INSERT INTO config.floating_group_member (floating_group, org_unit) "
                          "SELECT 1, id FROM actor.org_unit WHERE shortname = :b"), {"b": b})
        conn.execute(text("UPDATE asset.copy SET floating = 1 WHERE barcode = :book"),
                     {"book": book})

    lent_home_returned_away(world, config, a, b, book)

    view = copy_view(world, a, book)  # as Evergreen's check-in at b would leave it
    assert (view.circ_lib, view.status, view.patron) == (b, 7, None)


def _set_item(world, rt, member: str, book: str, holder: str, state_at: datetime,
              due: datetime | None = None) -> list[int]:
    payload = {"barcode": book, "holder": holder, "state_at": state_at.isoformat(sep=" "),
               "due_at": due.isoformat(sep=" ") if due else None}
    return apply_command(world.desks[member].engine, EVERGREEN, rt.consortium.member(member),
                         "set_item", payload)


def test_a_stale_command_never_undoes_the_owners_own_check_in(evergreens):
    world, config, (a, b) = evergreens
    book = f"{a}0000002"
    rt, _ = lent_home_returned_away(world, config, a, b, book)
    stale = world.clock  # the state the hub knew before the owner's desk had the book back
    world.checkin(book, a)

    _set_item(world, rt, a, book, holder=b, state_at=stale)  # "away at b": too late
    _set_item(world, rt, a, book, holder=a, state_at=stale)  # "home": never Available

    view = copy_view(world, a, book)
    assert (view.circ_lib, view.status, view.patron) == (a, 7, None)


def test_a_soft_deleted_copy_whose_barcode_was_reused_is_never_touched(evergreens):
    world, config, (a, b) = evergreens
    book = f"{a}0000001"
    rt = sync(config)
    [old] = ils(world, a, "SELECT id FROM asset.copy WHERE barcode = :b", b=book)
    with world.desks[a].engine.begin() as conn:  # weeded: Evergreen turns DELETE into deleted
        conn.execute(text("DELETE FROM asset.copy WHERE id = :id"), {"id": old.id})
    world.desks[a].add_items([book], world.tick())  # its barcode on a new copy

    _set_item(world, rt, a, book, holder=b, state_at=world.tick(), due=world.clock)

    assert copy_view(world, a, book).out_at == b
    weeded = copy_view(world, a, book, deleted=True)
    assert (weeded.status, weeded.patron) == (0, None)

    # The weeded copy reaches the hub as a delete; the new one as a new copy.
    with holding(a):
        drifts = reconcile_member(rt, rt.consortium.member(a))
    [drift] = [d for d in drifts if d.entity == "items"]
    assert drift.extra == [str(old.id)]
    rt = sync(config)
    with rt.store.connect() as conn:
        ids = set(conn.execute(select(member_items.c.local_id).where(
            member_items.c.member == a, member_items.c.barcode == book)).scalars())
    assert str(old.id) not in ids and len(ids) == 1


def test_system_accounts_are_neither_quarantined_nor_missing(evergreens):
    world, config, (a, _) = evergreens
    purged = world.people[0].accounts[a]
    with world.desks[a].engine.begin() as conn:
        conn.execute(text(  # a circulator
            "INSERT INTO actor.usr (profile, usrname, ident_type, first_given_name, family_name,"
            " home_ou) VALUES (5, 'desk-staff', 3, 'Desk', 'Staff', 1)"))
        conn.execute(text(  # a patron purged as actor.usr_delete does it
            "UPDATE actor.usr SET card = NULL, profile = 1, ident_value = NULL, deleted = TRUE,"
            " active = FALSE, usrname = id || '-PURGED', family_name = id || '-PURGED',"
            " first_given_name = id || '-PURGED' WHERE id = :u"), {"u": purged})
    rt = sync(config)

    with rt.store.connect() as conn:
        held = conn.execute(select(quarantine.c.row_key).where(
            quarantine.c.member == a, quarantine.c.entity == "readers")).all()
    assert held == []
    with holding(a):
        drifts = reconcile_member(rt, rt.consortium.member(a), fix=False)
    [readers] = [d for d in drifts if d.entity == "readers"]
    assert readers.missing == [] and readers.changed == []
