"""Book-flow facts: where each member's books are, how many were lent again away from home,
how long they stay away. Koha members on real MariaDB, the central store on real PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

from typer.testing import CliRunner

from circhub.cli import app
from circhub.domain.bookflow import away_spells
from circhub.domain.circulation import ISSUED, RETURNED, SEEN, Event
from circhub.tasks.reporting.bookflow import book_flow
from tests.writeback import BOOK, A, B, C, push, reader, sync

OTHER = "SC0010000002"
T0 = datetime(2026, 11, 1, 9, 0)


def _ev(kind, member, days, loan=None):
    return Event(f"{member}:{kind}:{days}", BOOK, kind, member, T0 + timedelta(days=days), loan)


def test_time_away_runs_from_the_first_desk_elsewhere_to_the_owners_own_desk():
    events = [_ev(ISSUED, A, 0, (A, "1")), _ev(RETURNED, A, 3, (A, "1")),  # a loan at home
              _ev(ISSUED, A, 4, (A, "2")), _ev(SEEN, B, 9), _ev(ISSUED, B, 10, (B, "5")),
              _ev(SEEN, C, 20), _ev(SEEN, A, 30), _ev(ISSUED, A, 31, (A, "3")),
              _ev(SEEN, B, 40)]
    spells = away_spells(BOOK, A, events)
    assert [(s.left_at, s.back_at) for s in spells] == [
        (T0 + timedelta(days=9), T0 + timedelta(days=30)), (T0 + timedelta(days=40), None)]
    assert spells[0].days(T0) == 21




def test_an_owner_sees_where_its_books_are_what_was_lent_again_and_how_long_they_stayed(koha):
    world, config = koha
    for barcode in (BOOK, OTHER):
        world.checkout(barcode, A, reader(world, A))
        world.checkin(barcode, B)
    left_at = world.journal[-3][0]  # BOOK's return at B
    world.checkout(BOOK, B, reader(world, B))  # lent again away from home
    world.checkin(BOOK, C)
    world.clock += timedelta(days=6)
    world.checkin(BOOK, A)  # home again
    back_at = world.journal[-1][0]
    rt = sync(config)
    push(rt)

    flow = book_flow(rt.store)[A]

    owned = sum(b.owner == A for b in world.books.values())
    assert (flow.books, flow.at_home, dict(flow.held_at)) == (owned, owned - 1, {B: 1})
    assert flow.lent_again_away == 1
    done = flow.days_away(datetime.now())
    assert done["returned home"] == 1
    assert done["median days away"] == round((back_at - left_at).total_seconds() / 86400, 1)
    assert done["away now, median days so far"] is not None
    shown = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["books", "-c", str(config)])
    assert shown.exit_code == 0 and f"{B} 1" in shown.output
