"""Koha write-backs on Koha's own schema, both generations (with checkin_library, Koha bug
33641, and without, e.g. 23.11): a cross return and secondary circulation land at the owner as
Koha's own AddReturn / AddIssue would write them, with the consortium branches the member
created at onboarding, and fail loudly, naming the branch, where it did not create them."""

from __future__ import annotations

from sqlalchemy import func, select, text

from circhub.connections.profile import load_profile
from circhub.domain.schema import loans, quarantine
from circhub.simulator.koha import STAND_IN
from circhub.tasks.writeback.push import apply_command
from tests.writeback import (
    BOOK,
    A,
    B,
    C,
    commands,
    dispose,
    ils,
    item_row,
    koha_on_mariadb,
    push,
    reader,
    sync,
)


def _cycle(config):
    rt = sync(config)
    reports = push(rt)
    return rt, reports


def _has_checkin_library(world) -> bool:
    return world.desks[A].checkin_library


def test_a_cross_return_is_written_at_the_owner_as_koha_writes_a_return(koha_both):
    world, config = koha_both
    world.checkout(BOOK, A, reader(world, A))
    issue = world.books[BOOK].loan[1]
    world.checkin(BOOK, B)
    returned_at = world.journal[-1][0]

    rt, reports = _cycle(config)

    assert not any(r.errors for r in reports.values())
    assert ils(world, A, "SELECT issue_id FROM issues") == []
    assert ils(world, A, "SELECT returndate FROM old_issues WHERE issue_id = :i",
               i=issue) == [(returned_at,)]
    if _has_checkin_library(world):
        assert ils(world, A, "SELECT checkin_library FROM old_issues") == [(B,)]
    stats = ils(world, A, "SELECT branch, datetime, other FROM statistics "
                          "WHERE type = 'return' AND branch = :b", b=B)
    assert [tuple(s) for s in stats] == [(B, returned_at, "circhub")]
    owner_row = item_row(world, A, BOOK)
    assert (owner_row.holdingbranch, owner_row.onloan) == (B, None)
    [close] = commands(rt, BOOK, target=A)
    assert close.status == "applied"


def test_a_replayed_close_writes_no_second_return_statistic(koha_both):
    world, config = koha_both
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, B)
    rt, _ = _cycle(config)
    [close] = commands(rt, BOOK, target=A)
    member = rt.consortium.member(A)
    apply_command(world.desks[A].engine, load_profile(member.profile), member, "close_loan",
                  close.payload)

    assert ils(world, A, "SELECT COUNT(*) FROM statistics WHERE type = 'return'") == [(1,)]


def test_the_older_generation_reads_the_return_branch_from_statistics(tmp_path, mariadb_db,
                                                                     pg_db):
    """Two members in one Koha without checkin_library: a loan lent at one branch and
    returned at the other is read with the return branch of its 'return' statistics row."""
    world, config = koha_on_mariadb(tmp_path, mariadb_db, pg_db, kind="koha_2311")
    try:
        world.checkout(BOOK, A, reader(world, A))
        world.checkin(BOOK, A)
        rt = sync(config)
        with rt.store.connect() as conn:
            row = conn.execute(select(loans.c.returned_at, loans.c.return_member).where(
                loans.c.member == A)).one()
        assert row.returned_at is not None and row.return_member == A
    finally:
        dispose(world, config)


def test_secondary_circulation_shows_at_the_owner_as_an_issue_to_the_stand_in(koha_both):
    world, config = koha_both
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, B)
    world.checkout(BOOK, B, reader(world, B))
    due_at_b = ils(world, B, "SELECT date_due FROM issues")[0][0]

    rt, reports = _cycle(config)

    assert not any(r.errors for r in reports.values())
    [away] = ils(world, A, "SELECT b.cardnumber, i.date_due, i.branchcode FROM issues i "
                           "JOIN borrowers b USING (borrowernumber)")
    assert tuple(away) == (STAND_IN, due_at_b, B)
    owner_row = item_row(world, A, BOOK)
    assert (owner_row.holdingbranch, owner_row.onloan) == (B, due_at_b.date())

    world.checkin(BOOK, C)  # returned at a third member: the stand-in loan is returned
    rt, reports = _cycle(config)

    assert not any(r.errors for r in reports.values())
    assert ils(world, A, "SELECT issue_id FROM issues") == []
    assert ils(world, A, "SELECT COUNT(*) FROM old_issues o JOIN borrowers b "
                         "USING (borrowernumber) WHERE b.cardnumber = :c", c=STAND_IN) == [(1,)]
    assert item_row(world, A, BOOK).holdingbranch == C


def test_the_stand_in_loan_is_never_read_back_as_a_loan(koha_both):
    world, config = koha_both
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, B)
    world.checkout(BOOK, B, reader(world, B))
    _cycle(config)

    rt, reports = _cycle(config)  # the owner's stand-in issue is in its delta now

    with rt.store.connect() as conn:
        open_at_owner = conn.execute(select(func.count()).select_from(loans).where(
            loans.c.member == A, loans.c.returned_at.is_(None))).scalar()
        held = conn.execute(select(func.count()).select_from(quarantine)).scalar()
    assert (open_at_owner, held) == (0, 0)
    assert not any(r.errors for r in reports.values())


def test_a_write_back_to_a_koha_without_the_holders_branch_fails_naming_it(koha_both):
    world, config = koha_both
    with world.desks[A].engine.begin() as conn:  # A never created a branch for B
        conn.execute(text("DELETE FROM branches WHERE branchcode = :b"), {"b": B})
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, B)

    rt, reports = _cycle(config)

    [error] = reports[A].errors
    assert A in error and "close_loan" in error and "holdingbranch" in error
    assert ils(world, A, "SELECT COUNT(*) FROM issues") == [(1,)]  # rolled back whole
    [close] = commands(rt, BOOK, target=A)
    assert close.status != "applied"
