"""Circulation rules: one item's state is a replay of its events, and write-back commands are the
differences between that state and what each member's ILS shows. Pure functions, no I/O.

Events come from every member in any order (members sync independently); replaying the whole
log of an item in event-time order makes a late, older event land where it belongs instead of
overriding newer state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

ISSUED, RENEWED, RETURNED, SEEN = "issued", "renewed", "returned", "seen"
# At one instant a return (or a check-in seen at the desk) comes before a new loan.
KIND_ORDER = {RETURNED: 0, SEEN: 1, ISSUED: 2, RENEWED: 3}

HOME, ON_LOAN, AWAY = "home", "on_loan", "away"

LoanRef = tuple[str, str]  # (lending member, local loan id)


@dataclass(frozen=True)
class Event:
    event_key: str
    barcode: str
    kind: str
    member: str  # where it happened
    at: datetime
    loan: LoanRef | None = None
    due_at: datetime | None = None

    def sort_key(self):
        return (self.at, KIND_ORDER[self.kind], self.event_key)


@dataclass(frozen=True)
class Closure:
    returned_at: datetime
    return_member: str


@dataclass
class ItemState:
    owner: str
    holder: str
    open_loan: LoanRef | None = None
    due: datetime | None = None
    state_at: datetime | None = None
    closures: dict[LoanRef, Closure] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.open_loan:
            return ON_LOAN
        return HOME if self.holder == self.owner else AWAY

    @property
    def lent_by(self) -> str | None:
        return self.open_loan[0] if self.open_loan else None


def replay(owner: str, events: list[Event]) -> ItemState:
    """The item's state after all its events, in event-time order, starting at home."""
    state = ItemState(owner=owner, holder=owner)
    for ev in sorted(events, key=Event.sort_key):
        _apply(state, ev)
        state.state_at = ev.at
    return state


def _close_open_loan(state: ItemState, at: datetime, where: str) -> None:
    if state.open_loan and state.open_loan not in state.closures:
        state.closures[state.open_loan] = Closure(at, where)
    state.open_loan, state.due, state.holder = None, None, where


def _apply(state: ItemState, ev: Event) -> None:
    if ev.kind == ISSUED:
        # The book is in hand at ev.member, so any loan still open elsewhere ended there.
        if state.open_loan and state.open_loan != ev.loan:
            _close_open_loan(state, ev.at, ev.member)
        if ev.loan in state.closures:
            return  # the loan's own issue replayed after a later return: nothing reopens
        state.open_loan, state.due, state.holder = ev.loan, ev.due_at, ev.member
    elif ev.kind == RENEWED:
        if state.open_loan == ev.loan:
            state.due = ev.due_at
    elif ev.kind == RETURNED:
        if ev.loan not in state.closures and state.open_loan != ev.loan:
            state.closures[ev.loan] = Closure(ev.at, ev.member)
        # A check-in scan puts the book at that desk, whichever loan the ILS closed with it:
        # a member that has not yet heard of a return elsewhere closes its own stale loan.
        _close_open_loan(state, ev.at, ev.member)
    elif ev.kind == SEEN:
        # Checked in / shelved at ev.member and not on loan there: any open loan is over.
        _close_open_loan(state, ev.at, ev.member)


@dataclass(frozen=True)
class MirrorRow:
    """What one member's ILS last showed for a barcode (its own copy or a consortium copy)."""

    member: str
    holding_member: str | None
    on_loan_due: datetime | None


@dataclass(frozen=True)
class OpenLoanAtSource:
    loan: LoanRef  # a loan the lending ILS still shows open


@dataclass(frozen=True)
class Command:
    target: str
    kind: str  # close_loan | set_item
    barcode: str
    payload: dict

    @property
    def command_key(self) -> str:
        p = self.payload
        return ":".join(
            str(x) for x in (self.kind, self.barcode, p.get("loan_local_id", ""),
                             p["holder"], p.get("due_at") or "", p.get("state_at") or "")
        )


def _day(value: datetime | None):
    return value.date() if value else None


def commands_for(barcode: str, state: ItemState, mirrors: list[MirrorRow],
                 open_at_source: list[OpenLoanAtSource]) -> list[Command]:
    """What each ILS must be told so that it shows the consortium's state of this item."""
    due = state.due if state.open_loan else None
    base = {
        "barcode": barcode,
        "holder": state.holder,
        "due_at": due.isoformat(sep=" ") if due else None,
        "state_at": state.state_at.isoformat(sep=" ") if state.state_at else None,
    }
    commands: list[Command] = []
    closed_targets = set()
    for src in open_at_source:
        closure = state.closures.get(src.loan)
        if closure is None:
            continue
        member, local_id = src.loan
        payload = {**base, "loan_local_id": local_id,
                   "returned_at": closure.returned_at.isoformat(sep=" "),
                   "return_member": closure.return_member}
        commands.append(Command(member, "close_loan", barcode, payload))
        closed_targets.add(member)
    for row in mirrors:
        if row.member in closed_targets:
            continue
        if row.holding_member == state.holder and _day(row.on_loan_due) == _day(due):
            continue
        if row.member == state.holder and state.open_loan is None and row.on_loan_due is None:
            continue  # the holder's own ILS shows it on its shelf: nothing to say
        if state.open_loan and row.member == state.lent_by:
            continue  # the lender's ILS is the source of that loan; it already knows
        commands.append(Command(row.member, "set_item", barcode, dict(base)))
    return commands
