"""Defects the fault campaign (`make chaos`) found, each pinned by a deterministic test named
after the schedule that found it (seed and index: `CHAOS_SEED=S CHAOS_ONLY=I make chaos`)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, text, update

from circhub.connections.holds import holding
from circhub.domain.schema import circulation_events, loans, watermarks
from circhub.tasks.loads.reconcile import reconcile_member
from tests.writeback import BOOK, A, B, C, commands, ils, push, reader, sync


def test_seed_7_schedule_2_a_close_corrected_by_a_later_merge_is_the_one_written(koha):
    """Lent at A, returned at B and lent there, returned at C, all before the hub looked. In
    one sync the members merge one after the other: C's merge first sees only the book checked
    in at C and closes A's loan there; B's merge then shows the loan ended at B. The close A
    is sent must be the corrected one. It was the first: both had the same command key, so
    the correction was taken for the command already queued and dropped, and A's ILS showed
    its reader returning the book at C (found with the MariaDB server killed mid-sync, which
    delayed B's merge behind C's)."""
    world, config = koha
    world.checkout(BOOK, A, reader(world, A))
    issue = world.books[BOOK].loan[1]
    sync(config)
    world.checkin(BOOK, B)
    world.checkout(BOOK, B, reader(world, B))
    world.checkin(BOOK, C)

    sync(config, [C])  # C's merge first: A's loan looks closed at C
    rt = sync(config, [B])  # then B's: it ended at B, when B lent the book
    push(rt)

    with rt.store.connect() as conn:
        central = conn.execute(select(loans.c.returned_at, loans.c.return_member).where(
            loans.c.member == A, loans.c.local_id == str(issue))).one()
    assert central.return_member == B
    [closed] = ils(world, A, "SELECT returndate, checkin_library FROM old_issues "
                             "WHERE issue_id = :i", i=issue)
    assert tuple(closed) == (central.returned_at, B)
    assert [c.status for c in commands(rt, BOOK, target=A)
            if c.kind == "close_loan"] == ["superseded", "applied"]


def test_seed_20261204_schedule_1_a_return_at_the_lender_seen_first_on_its_shelf_keeps_its_event(
        koha):
    """The Koha members' MariaDB clock went back 5.6 minutes. A book lent at A came back to A's
    desk then: the check-in's rows (the closed issue, the item on the shelf) were stamped 5.6
    minutes back. Behind the loans' watermark less the lookback, the issue was not read; the
    item was, its own watermark being older. The hub saw the book home, closed the loan there
    at the shelf's time (the desk's, to the second) and sent A that close; when reconcile
    brought the issue, its return matched the close pushed, and it was taken for the hub's own
    echo: the loan returned at its lender's desk had no `returned` event. The close pushed
    named the lender itself as where the loan ended, which no echo of a return elsewhere does:
    the row is the desk's check-in."""
    world, config = koha
    world.checkout(BOOK, A, reader(world, A))
    issue = world.books[BOOK].loan[1]
    rt = sync(config)
    world.checkin(BOOK, A)
    with world.desks[A].engine.begin() as conn:  # the server's clock 7 minutes back
        for table in ("old_issues", "items"):
            conn.execute(text(f"UPDATE {table} SET timestamp = timestamp - INTERVAL 7 MINUTE "
                              "WHERE timestamp > NOW() - INTERVAL 1 MINUTE"))
    with rt.store.begin() as conn:  # the items' newest change read long before the loans'
        conn.execute(update(watermarks).where(
            watermarks.c.member == A, watermarks.c.entity == "items").values(
            cursor_value=watermarks.c.cursor_value - timedelta(minutes=10)))

    rt = sync(config)  # the book seen home, its issue not read
    assert [(c.kind, c.payload["return_member"]) for c in commands(rt, BOOK)] == [
        ("close_loan", A)]
    push(rt)
    with holding(A):
        reconcile_member(rt, rt.consortium.member(A))  # the issue, closed at A's desk

    with rt.store.connect() as conn:
        kinds = conn.execute(select(circulation_events.c.kind).where(
            circulation_events.c.loan_member == A,
            circulation_events.c.loan_local_id == str(issue))).scalars().all()
    assert sorted(kinds) == ["issued", "returned"]
