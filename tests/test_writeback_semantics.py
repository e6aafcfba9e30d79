"""Return anywhere, secondary circulation, return home and renewals, read back from the members'
own Koha rows (real MariaDB) and the outbox (real PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from circhub.domain.schema import items
from circhub.tasks.circulation.transfers import TransferRefused, request_transfer
from tests.writeback import (
    BOOK,
    A,
    B,
    C,
    commands,
    ils,
    item_row,
    push,
    reader,
    sync,
)


def _cycle(config):
    rt = sync(config)
    push(rt)
    return rt


def _item_state(rt, barcode):
    with rt.store.connect() as conn:
        return conn.execute(select(items).where(items.c.barcode == barcode)).one()


def test_return_anywhere_closes_the_lenders_loan_with_the_return_member_and_time(koha):
    world, config = koha
    world.checkout(BOOK, A, reader(world, A))
    issue = world.books[BOOK].loan[1]
    world.checkin(BOOK, B)
    returned_at = world.journal[-1][0]

    rt = _cycle(config)

    assert ils(world, A, "SELECT issue_id FROM issues") == []
    old = ils(world, A, "SELECT returndate, checkin_library FROM old_issues WHERE issue_id = :i",
              i=issue)
    assert [tuple(r) for r in old] == [(returned_at, B)]
    owner_row = item_row(world, A, BOOK)
    assert (owner_row.holdingbranch, owner_row.onloan) == (B, None)
    [close] = commands(rt, BOOK, target=A)
    assert (close.kind, close.status, close.attempts) == ("close_loan", "applied", 1)
    assert close.payload["return_member"] == B


def test_secondary_circulation_shows_the_loan_at_the_holder_and_a_third_return_moves_it(koha):
    world, config = koha
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, B)
    world.checkout(BOOK, B, reader(world, B))
    issue_at_b = world.books[BOOK].loan[1]
    due = item_row(world, B, BOOK).onloan

    rt = _cycle(config)

    owner_row = item_row(world, A, BOOK)
    assert (owner_row.holdingbranch, owner_row.onloan) == (B, due)
    assert ils(world, B, "SELECT issue_id FROM issues") == [(issue_at_b,)]  # B's own loan

    world.checkin(BOOK, C)
    returned_at = world.journal[-1][0]
    rt = _cycle(config)

    assert ils(world, B, "SELECT issue_id FROM issues") == []
    old = ils(world, B, "SELECT returndate, checkin_library FROM old_issues WHERE issue_id = :i",
              i=issue_at_b)
    assert [tuple(r) for r in old] == [(returned_at, C)]
    assert item_row(world, B, BOOK).holdingbranch == C
    owner_row = item_row(world, A, BOOK)
    assert (owner_row.holdingbranch, owner_row.onloan) == (C, None)
    state = _item_state(rt, BOOK)
    assert (state.holder, state.status) == (C, "away")
    assert {c.status for c in commands(rt, BOOK)} <= {"applied", "superseded"}


def test_a_renewal_at_the_holder_shows_the_new_due_date_in_the_owners_ils(koha):
    world, config = koha
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, B)
    world.checkout(BOOK, B, reader(world, B))
    _cycle(config)
    first_due = item_row(world, A, BOOK).onloan

    world.clock += timedelta(days=5)
    world.renew(BOOK)
    renewed_due = item_row(world, B, BOOK).onloan
    _cycle(config)

    assert renewed_due > first_due
    owner_row = item_row(world, A, BOOK)
    assert (owner_row.holdingbranch, owner_row.onloan) == (B, renewed_due)


def test_an_owner_asks_a_book_home_and_its_arrival_closes_the_transfer(koha):
    world, config = koha
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, B)
    rt = _cycle(config)

    asked = request_transfer(rt.store, rt.consortium, BOOK, at=world.tick())

    assert (asked.owner, asked.holder, asked.commands) == (A, B, 1)
    assert _item_state(rt, BOOK).status == "in_transit"
    push(rt)
    push(rt)  # a second push has nothing left to apply: one transfer row, not two
    copy_at_b = item_row(world, B, BOOK).itemnumber
    [row] = world.desks[B].transfers(BOOK)
    assert (row["itemnumber"], row["frombranch"], row["tobranch"], row["reason"]) == (
        copy_at_b, B, A, "ReturnToHome")
    assert row["datearrived"] is None

    world.desks[B].send_transfers(world.tick())  # B's staff send it
    world.checkin(BOOK, A)  # A's own desk checks its book in: it is home
    arrived_at = world.journal[-1][0]
    rt = _cycle(config)

    [row] = world.desks[B].transfers(BOOK)
    assert row["datesent"] is not None and row["datearrived"] == arrived_at
    assert item_row(world, B, BOOK).holdingbranch == A
    assert (_item_state(rt, BOOK).holder, _item_state(rt, BOOK).status) == (A, "home")
    kinds = {(c.target, c.kind): c.status for c in commands(rt, BOOK)}
    assert kinds[(B, "transfer")] == kinds[(B, "transfer_arrived")] == "applied"


def test_a_book_asked_home_while_on_loan_is_sent_by_the_desk_it_is_returned_to(koha):
    world, config = koha
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, B)
    world.checkout(BOOK, B, reader(world, B))
    rt = _cycle(config)

    asked = request_transfer(rt.store, rt.consortium, BOOK, at=world.tick())
    assert (asked.holder, asked.on_loan, asked.commands) == (B, True, 0)

    world.checkin(BOOK, C)
    rt = _cycle(config)

    assert world.desks[B].transfers(BOOK) == []
    [row] = world.desks[C].transfers(BOOK)
    assert (row["frombranch"], row["tobranch"]) == (C, A)


def test_a_book_already_at_its_owner_cannot_be_asked_home(koha):
    world, config = koha
    world.checkout(BOOK, A, reader(world, A))
    rt = _cycle(config)

    with pytest.raises(TransferRefused, match="already at its owner"):
        request_transfer(rt.store, rt.consortium, BOOK)
    with pytest.raises(TransferRefused, match="not a book"):
        request_transfer(rt.store, rt.consortium, "SC0019999999")


def test_an_older_loan_heard_after_a_newer_return_does_not_move_the_book_back(koha):
    world, config = koha
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, B)
    world.checkout(BOOK, B, reader(world, B))
    issue_at_b = world.books[BOOK].loan[1]
    world.checkin(BOOK, C)  # the latest event: the book is on C's shelf
    rt = sync(config, [A, C])  # B's loan (older) has not been read yet
    push(rt)
    assert item_row(world, A, BOOK).holdingbranch == C

    rt = sync(config, [B])  # the late, older event arrives
    push(rt)
    rt = _cycle(config)

    owner_row = item_row(world, A, BOOK)
    assert (owner_row.holdingbranch, owner_row.onloan) == (C, None)
    assert ils(world, B, "SELECT checkin_library FROM old_issues WHERE issue_id = :i",
               i=issue_at_b) == [(C,)]
    assert (_item_state(rt, BOOK).holder, _item_state(rt, BOOK).lent_by) == (C, None)
