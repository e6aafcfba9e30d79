"""Conflicts go to the exceptions list with their reason and are never silently overwritten:
an item on loan in two ILS at once, a return of an item not on loan, an unknown barcode, one
barcode at two owners. Koha members on real MariaDB, the central store on real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from circhub.domain.schema import items, sync_runs
from circhub.simulator.koha import STAND_IN
from circhub.tasks.circulation.operators import list_exceptions, release
from tests.writeback import (
    BOOK,
    A,
    B,
    C,
    commands,
    exceptions_of,
    ils,
    item_row,
    push,
    reader,
    sync,
)


def _state(rt, barcode):
    with rt.store.connect() as conn:
        return conn.execute(select(items).where(items.c.barcode == barcode)).one_or_none()


def test_a_loan_renewed_at_the_lender_while_lent_elsewhere_is_held_until_released(koha):
    world, config = koha
    world.checkout(BOOK, A, reader(world, A))
    issue_at_a = world.books[BOOK].loan[1]
    world.checkin(BOOK, B)
    world.checkout(BOOK, B, reader(world, B))
    sync(config)  # A is owed a close_loan; before it is pushed, A's reader renews online
    at = world.tick()
    world.desks[A].renew(BOOK, at, at + timedelta(days=28))

    rt = sync(config, [A])
    push(rt)

    [conflict] = exceptions_of(rt, BOOK)
    assert (conflict.reason, conflict.status, sorted(conflict.members)) == (
        "on_loan_in_two_ils", "open", sorted([A, B]))
    assert ils(world, A, "SELECT issue_id, renewals_count FROM issues") == [(issue_at_a, 1)]
    assert all(c.status != "applied" for c in commands(rt, BOOK, target=A))

    release(rt.store, rt.consortium, conflict.id, "reader confirmed the return at B")
    push(rt)

    # A's own loan is closed; the book, lent at B, shows as issued to the stand-in patron.
    assert ils(world, A, "SELECT b.cardnumber FROM issues JOIN borrowers b "
                         "USING (borrowernumber)") == [(STAND_IN,)]
    assert item_row(world, A, BOOK).holdingbranch == B
    assert exceptions_of(rt, BOOK)[0].status == "released"


def test_a_return_of_a_book_not_on_loan_waits_then_is_listed_and_changes_nothing(koha):
    world, config = koha
    world.desks[C].checkin(BOOK, world.tick())  # C scans A's book, which sits on A's shelf

    rt = sync(config)
    [waiting] = exceptions_of(rt, BOOK)
    assert (waiting.reason, waiting.status, waiting.waiting_on) == (
        "return_not_on_loan", "waiting", A)  # A's loan of it may not have been read yet

    rt = sync(config, [A])  # A has synced since: no loan explains it

    [listed] = list_exceptions(rt.store, barcode=BOOK)
    assert (listed.reason, listed.status) == ("return_not_on_loan", "open")
    assert (_state(rt, BOOK).holder, _state(rt, BOOK).status) == (A, "home")
    push(rt)
    assert commands(rt, BOOK) == []
    assert item_row(world, A, BOOK).holdingbranch == A
    assert item_row(world, C, BOOK).holdingbranch == C  # C's scan is not overwritten either


def test_a_waiting_return_is_cleared_when_the_lenders_data_explains_it(koha):
    world, config = koha
    sync(config)
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, C)

    rt = sync(config, [C])  # C first: the hub still thinks the book is on A's shelf
    assert [e.status for e in exceptions_of(rt, BOOK)] == ["waiting"]

    rt = sync(config, [A])
    push(rt)

    assert [e.status for e in exceptions_of(rt, BOOK)] == ["cleared"]
    assert _state(rt, BOOK).holder == C
    assert ils(world, A, "SELECT issue_id FROM issues") == []


def test_a_loan_of_an_unknown_barcode_is_listed_and_the_merge_goes_on(koha):
    world, config = koha
    stray = "ZZ0000001"  # no member's prefix
    world.desks[C].add_items([stray], world.tick())
    at = world.tick()
    world.desks[C].checkout(stray, reader(world, C).accounts[C], at, at + timedelta(days=28))

    rt = sync(config)

    [listed] = list_exceptions(rt.store, barcode=stray)
    assert (listed.reason, listed.members) == ("unknown_barcode", [C])
    assert _state(rt, stray) is None and commands(rt, stray) == []
    with rt.store.connect() as conn:
        assert set(conn.execute(select(sync_runs.c.status)).scalars()) == {"ok"}


def test_one_barcode_at_two_owners_is_listed_and_nothing_is_written_for_it(koha):
    world, config = koha
    twin = "SC0010000002"  # A's book; B catalogues a book of its own under the same barcode
    world.desks[B].add_items([twin], world.tick())
    at = world.tick()
    world.desks[B].checkout(twin, reader(world, B).accounts[B], at, at + timedelta(days=28))

    rt = sync(config)
    push(rt)

    [listed] = list_exceptions(rt.store, barcode=twin)
    assert (listed.reason, sorted(listed.members)) == ("barcode_at_two_owners", sorted([A, B]))
    assert commands(rt, twin) == []
    owner_row = item_row(world, A, twin)
    assert (owner_row.holdingbranch, owner_row.onloan) == (A, None)
    assert (_state(rt, twin).holder, _state(rt, twin).status) == (A, "home")
