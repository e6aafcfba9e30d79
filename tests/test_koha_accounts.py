"""Accounts every Koha has, and changes Koha makes without moving a cursor, on Koha's own
schema (real MariaDB): staff and statistical patrons (category types S, X), the AnonymousPatron
and the consortium stand-in are never read, so never quarantined and never "missing" in
reconcile; a patron deletion, which NULLs old_issues.borrowernumber by foreign-key action and
leaves the row's timestamp, is found by reconcile's content comparison."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, text

from circhub.domain.schema import drift, loans, quarantine, reader_accounts
from circhub.simulator.koha import ANONYMOUS, STAFF, STAND_IN, STATISTICAL
from circhub.tasks.loads.reconcile import reconcile_member
from tests.writeback import BOOK, A, ils, reader, sync


def test_system_and_stand_in_accounts_are_neither_quarantined_nor_missing(koha_both):
    world, config = koha_both
    system_cards = {STAFF, STATISTICAL, ANONYMOUS, STAND_IN}
    have = {c for (c,) in ils(world, A, "SELECT cardnumber FROM borrowers")}
    assert system_cards <= have  # the accounts are there, as in a real Koha

    rt = sync(config)

    with rt.store.connect() as conn:
        held = conn.execute(select(quarantine.c.entity, quarantine.c.row_key)).all()
    assert held == []
    member = rt.consortium.member(A)
    found = {d.entity: d for d in reconcile_member(rt, member, fix=False)}
    assert not found["readers"].missing and not found["readers"].extra
    real = ils(world, A, "SELECT COUNT(*) FROM borrowers WHERE categorycode = 'PT' AND "
                         "cardnumber <> :anon", anon=ANONYMOUS)[0][0]
    with rt.store.connect() as conn:
        accounts = conn.execute(select(func.count()).select_from(reader_accounts).where(
            reader_accounts.c.member == A)).scalar()
    assert accounts == real


def test_a_patron_deletion_is_found_by_reconcile(koha_both):
    world, config = koha_both
    person = reader(world, A)
    world.checkout(BOOK, A, person)
    issue = world.books[BOOK].loan[1]
    world.checkin(BOOK, A)
    desk = world.desks[A]
    last_week = world.clock - timedelta(days=7)
    with desk.engine.begin() as conn:  # history from last week: behind every poll's reach
        conn.execute(text("UPDATE old_issues SET timestamp = :t"), {"t": last_week})
    someone_else = next(p for p in world.people if p.home == A and p is not person)
    world.checkout(f"{A}0000002", A, someone_else)  # today's loan: the watermark moves on
    rt = sync(config)

    desk.delete_patron(person.accounts[A])

    row = ils(world, A, "SELECT borrowernumber, timestamp FROM old_issues WHERE issue_id = :i",
              i=issue)[0]
    assert row.borrowernumber is None and row.timestamp == last_week  # no cursor moved
    found = {d.entity: d for d in reconcile_member(rt, rt.consortium.member(A))}
    assert found["loans"].changed == [str(issue)]
    assert found["readers"].extra == [str(person.accounts[A])]
    with rt.store.connect() as conn:
        loan = conn.execute(select(loans.c.reader_local_id, loans.c.returned_at).where(
            loans.c.member == A, loans.c.local_id == str(issue))).one()
        kinds = set(conn.execute(select(drift.c.kind)).scalars())
    assert loan.reader_local_id is None and loan.returned_at is not None
    assert kinds == {"changed", "extra"}
    assert all(d.clean for d in reconcile_member(rt, rt.consortium.member(A)))
