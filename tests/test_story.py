"""The one-card story, end to end, read back from the owning member's own ILS rows.

Koha members on real MariaDB with the central store on real PostgreSQL, and the same story on
the embedded default (SQLite members, SQLite central store).
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from circhub.domain.schema import circulation_events, items, loans, outbox
from circhub.simulator.koha import STAND_IN
from tests.helpers import koha_consortium, sync_cycle

A, B, C = "SC001", "CQ001", "CD001"
BOOK = "SC0010000001"


@pytest.fixture(params=["mariadb+postgres", "koha_2311", "sqlite"])
def story(request, tmp_path):
    """Koha with checkin_library on MariaDB, the older generation without it (koha_2311),
    and the embedded default."""
    if request.param == "sqlite":
        members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(3)]
        central = f"sqlite:///{tmp_path}/central.db"
    else:
        mariadb, pg = (request.getfixturevalue(f) for f in ("mariadb_db", "pg_db"))
        members = [mariadb() for _ in range(3)]
        central = pg()
    kind = "koha_2311" if request.param == "koha_2311" else "koha"
    world, config = koha_consortium(tmp_path, members, central, kind=kind)
    return world, config


def _reader(world, home):
    return next(p for p in world.people if p.home == home)


def _lent_at_a_returned_at_b(world):
    world.checkout(BOOK, A, _reader(world, A))
    issue_at_a = world.books[BOOK].loan[1]
    world.checkin(BOOK, B)
    return issue_at_a


def test_cross_return_closes_the_owners_loan_and_shows_the_book_held_at_the_returning_member(
        story):
    world, config = story
    issue_at_a = _lent_at_a_returned_at_b(world)
    assert world.desks[A].loan_view(issue_at_a)["open"]  # A does not know yet

    rt = sync_cycle(config)

    assert world.desks[A].loan_view(issue_at_a) == {
        "open": False, "returned_at": world.journal[-1][0],
        "return_branch": B if world.desks[A].checkin_library else None, "records": 1}
    assert world.desks[A].item_view(BOOK) == {"holding": B, "onloan": None, "open_loan": None}
    with rt.store.connect() as conn:
        loan = conn.execute(select(loans).where(loans.c.member == A)).one()
        assert (loan.return_member, loan.returned_at) == (B, world.journal[-1][0])
        item = conn.execute(select(items).where(items.c.barcode == BOOK)).one()
        assert (item.owner, item.holder, item.status) == (A, B, "away")


def test_secondary_circulation_shows_the_book_on_loan_at_the_holder_in_the_owners_ils(story):
    world, config = story
    _lent_at_a_returned_at_b(world)
    world.checkout(BOOK, B, _reader(world, B))
    due = world.desks[B].item_view(BOOK)["onloan"]

    sync_cycle(config)

    view = world.desks[A].item_view(BOOK)
    assert (view["holding"], view["onloan"]) == (B, due)
    assert world.desks[A].lent_to(BOOK) == STAND_IN  # issued to the consortium stand-in


def test_return_at_a_third_member_closes_the_holders_loan_and_moves_the_book(story):
    world, config = story
    _lent_at_a_returned_at_b(world)
    world.checkout(BOOK, B, _reader(world, B))
    issue_at_b = world.books[BOOK].loan[1]
    sync_cycle(config)
    world.checkin(BOOK, C)

    sync_cycle(config)

    assert world.desks[B].loan_view(issue_at_b)["open"] is False
    assert world.desks[B].item_view(BOOK)["holding"] == C
    assert world.desks[A].item_view(BOOK) == {"holding": C, "onloan": None, "open_loan": None}


def _snapshot(rt, world):
    with rt.store.connect() as conn:
        counts = {t.name: conn.execute(select(func.count()).select_from(t)).scalar()
                  for t in (circulation_events, outbox, loans, items)}
        states = conn.execute(select(items).order_by(items.c.barcode)).all()
    views = {b: world.desks[book.owner].item_view(b) for b, book in world.books.items()}
    return counts, states, views


def test_a_second_sync_changes_nothing(story):
    world, config = story
    _lent_at_a_returned_at_b(world)
    world.checkout(BOOK, B, _reader(world, B))
    rt = sync_cycle(config)
    before = _snapshot(rt, world)

    rt = sync_cycle(config)

    assert _snapshot(rt, world) == before
    rt = sync_cycle(config)
    assert _snapshot(rt, world) == before
    with rt.store.connect() as conn:
        pending = conn.execute(select(func.count()).select_from(outbox)
                               .where(outbox.c.status == "pending")).scalar()
    assert pending == 0
