"""Circulation rules without any database: an item's state is the replay of its events."""

from __future__ import annotations

from datetime import datetime, timedelta

from circhub.domain.circulation import (
    ISSUED,
    RETURNED,
    SEEN,
    Event,
    MirrorRow,
    OpenLoanAtSource,
    commands_for,
    replay,
)

T0 = datetime(2026, 11, 1, 9, 0)


def ev(kind, member, hours, loan=None, due_days=28):
    at = T0 + timedelta(hours=hours)
    due = at + timedelta(days=due_days) if kind == ISSUED else None
    return Event(f"{member}:{kind}:{hours}:{loan}", "A0001", kind, member, at,
                 (member if loan else None, loan) if loan else None, due)


def test_a_book_lent_at_home_and_returned_elsewhere_is_held_away_and_the_loan_closed_there():
    state = replay("A", [ev(ISSUED, "A", 0, "1"), ev(SEEN, "B", 5)])
    assert (state.status, state.holder) == ("away", "B")
    assert state.closures[("A", "1")].return_member == "B"


def test_a_loan_at_a_non_owner_implies_the_previous_loan_ended_there():
    state = replay("A", [ev(ISSUED, "A", 0, "1"), ev(ISSUED, "B", 5, "7")])
    assert (state.status, state.lent_by) == ("on_loan", "B")
    assert state.closures[("A", "1")].return_member == "B"


def test_events_arriving_late_land_where_they_belong():
    in_order = [ev(ISSUED, "A", 0, "1"), ev(SEEN, "B", 5), ev(ISSUED, "B", 6, "7"),
                ev(SEEN, "C", 9)]
    shuffled = [in_order[3], in_order[1], in_order[0], in_order[2]]
    assert replay("A", shuffled) == replay("A", in_order)
    assert replay("A", in_order).holder == "C"


def test_a_stale_local_return_still_puts_the_book_at_that_desk():
    # A never heard the book came back at B and was lent there; its desk closes A's old loan.
    state = replay("A", [ev(ISSUED, "A", 0, "1"), ev(ISSUED, "B", 5, "7"),
                         Event("A:ret", "A0001", RETURNED, "A", T0 + timedelta(hours=8),
                               ("A", "1"))])
    assert (state.status, state.holder) == ("home", "A")
    assert state.closures[("B", "7")].return_member == "A"
    assert state.closures[("A", "1")].return_member == "B"  # first known end is kept


def test_commands_close_the_stale_loan_and_tell_the_owner_where_the_book_is():
    state = replay("A", [ev(ISSUED, "A", 0, "1"), ev(SEEN, "B", 5)])
    mirrors = [MirrorRow("A", "A", T0 + timedelta(days=28)), MirrorRow("B", "B", None)]
    cmds = commands_for("A0001", state, mirrors, [OpenLoanAtSource(("A", "1"))])
    assert [(c.target, c.kind) for c in cmds] == [("A", "close_loan")]
    assert cmds[0].payload["return_member"] == "B" and cmds[0].payload["holder"] == "B"


def test_no_command_when_every_ils_already_shows_the_state():
    state = replay("A", [ev(ISSUED, "A", 0, "1"), ev(SEEN, "B", 5)])
    assert commands_for("A0001", state, [MirrorRow("A", "B", None), MirrorRow("B", "B", None)],
                        []) == []
