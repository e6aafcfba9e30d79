"""Defects the fault campaign (`make chaos`) found, each pinned by a deterministic test named
after the schedule that found it (seed and index: `CHAOS_SEED=S CHAOS_ONLY=I make chaos`)."""

from __future__ import annotations

from sqlalchemy import select

from circhub.domain.schema import loans
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
