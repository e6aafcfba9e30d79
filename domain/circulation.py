"""Circulation rules: one item's state is a replay of its events, and write-back commands are the
differences between that state and what each member's ILS shows. Pure functions, no I/O.

Events come from every member in any order (members sync independently); replaying the whole
log of an item in event-time order makes a late, older event land where it belongs instead of
overriding newer state.

Replay also finds what no rule may settle by itself (a `Conflict`): a book checked in or lent
somewhere while it sat on another member's shelf, or a loan renewed after the book was lent
elsewhere. Such an event is held out, or the write-back it would cause is held back, until
data that explains it arrives or an operator releases it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

ISSUED, RENEWED, RETURNED, SEEN = "issued", "renewed", "returned", "seen"
TRANSFER_REQUESTED = "transfer_requested"  # the owner asked for its book back (hub-made event)
# At one instant a return (or a check-in seen at the desk) comes before a new loan.
KIND_ORDER = {RETURNED: 0, SEEN: 1, ISSUED: 2, RENEWED: 3, TRANSFER_REQUESTED: 4}
IN_HAND = (RETURNED, SEEN, ISSUED)  # events that put the book in the hands of ev.member's staff

HOME, ON_LOAN, AWAY, IN_TRANSIT = "home", "on_loan", "away", "in_transit"

# Conflict reasons found by replay (see circhub.domain.conflicts for the ones found in the mirrors).
RETURN_NOT_ON_LOAN = "return_not_on_loan"
ON_LOAN_IN_TWO_ILS = "on_loan_in_two_ils"

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


@dataclass(frozen=True)
class Conflict:
    """Something the rules cannot settle alone: listed as an exception, never guessed."""

    reason: str
    subject: str  # what it is about: an event key, a loan, a member's row
    detail: str
    members: tuple[str, ...]
    waiting_on: str | None = None  # a member whose data, once synced, may still explain it

    @property
    def key(self) -> str:
        return f"{self.reason}:{self.subject}"


@dataclass
class Transfer:
    """The owner asked for the book back; it is over when the book is in hand at the owner."""

    requested_at: datetime
    arrived_at: datetime | None = None
    shelves: list[str] = field(default_factory=list)  # where it sat while asked home

    def note_shelf(self, member: str) -> None:
        if member not in self.shelves:
            self.shelves.append(member)


@dataclass
class ItemState:
    owner: str
    holder: str
    open_loan: LoanRef | None = None
    due: datetime | None = None
    state_at: datetime | None = None
    closures: dict[LoanRef, Closure] = field(default_factory=dict)
    transfer: Transfer | None = None
    conflicts: list[Conflict] = field(default_factory=list)
    held_targets: set[str] = field(default_factory=set)  # ILS the hub must not write to now

    @property
    def status(self) -> str:
        if self.open_loan:
            return ON_LOAN
        if self.holder == self.owner:
            return HOME
        return IN_TRANSIT if self.transfer_open else AWAY

    @property
    def transfer_open(self) -> bool:
        return self.transfer is not None and self.transfer.arrived_at is None

    @property
    def lent_by(self) -> str | None:
        return self.open_loan[0] if self.open_loan else None


Siblings = frozenset[frozenset[str]]  # members sharing one ILS instance (one city system)


def replay(owner: str, events: list[Event], released: frozenset[str] = frozenset(),
           siblings: Siblings = frozenset()) -> ItemState:
    """The item's state after all its events, in event-time order, starting at home.

    `released` holds the keys of conflicts an operator let through: their events count.
    Books move between `siblings` without loans (the city system's own courier).
    """
    state = ItemState(owner=owner, holder=owner)
    for ev in sorted(events, key=Event.sort_key):
        if _held(state, ev, released, siblings):
            continue
        _apply(state, ev, released)
        _follow_transfer(state, ev)
        if ev.kind != TRANSFER_REQUESTED:  # a request moves nothing: no new item version
            state.state_at = ev.at
    return state


def _held(state: ItemState, ev: Event, released: frozenset[str], siblings: Siblings) -> bool:
    """A book in hand at a desk while it sat, not on loan, on another member's shelf.

    Books leave a shelf only by a loan (or a transfer home), so either that loan's data has not
    arrived yet (`waiting_on` the shelf's member) or the scan is wrong: the event waits, and
    the desk that scanned it is not told otherwise meanwhile.
    """
    if ev.kind not in IN_HAND or state.open_loan or ev.member in (state.holder, state.owner):
        return False
    if any({ev.member, state.holder} <= group for group in siblings):
        return False
    conflict = Conflict(
        RETURN_NOT_ON_LOAN, ev.event_key,
        f"{ev.kind} at {ev.member} at {ev.at:%Y-%m-%d %H:%M} while not on loan and on the "
        f"shelf of {state.holder}", (state.holder, ev.member), waiting_on=state.holder)
    if conflict.key in released:
        return False
    state.conflicts.append(conflict)
    state.held_targets.add(ev.member)
    return True


def _follow_transfer(state: ItemState, ev: Event) -> None:
    t = state.transfer
    if t is None or t.arrived_at is not None or ev.kind not in IN_HAND:
        return
    if ev.member == state.owner:
        t.arrived_at = ev.at  # the owner's own check-in (or loan) of its book: it is home
    elif state.open_loan is None:
        t.note_shelf(ev.member)


def _close_open_loan(state: ItemState, at: datetime, where: str) -> None:
    if state.open_loan and state.open_loan not in state.closures:
        state.closures[state.open_loan] = Closure(at, where)
    state.open_loan, state.due, state.holder = None, None, where


def _renewed(state: ItemState, ev: Event, released: frozenset[str]) -> None:
    if state.open_loan == ev.loan:
        state.due = ev.due_at
        return
    if state.open_loan is None or ev.loan not in state.closures:
        return  # a stale renewal of a book on a shelf: the return elsewhere closes it
    # The lender renewed its loan while the book is lent at another member: two ILS each hold
    # it on loan. Closing the renewed loan would overwrite that ILS; hold it for a person.
    lender, local_id = ev.loan
    other = state.open_loan[0]
    conflict = Conflict(
        ON_LOAN_IN_TWO_ILS, f"{lender}:{local_id}",
        f"loan {local_id} renewed at {lender} at {ev.at:%Y-%m-%d %H:%M} while the book is on "
        f"loan at {other}", (lender, other))
    if conflict.key not in released:
        state.conflicts.append(conflict)
        state.held_targets.add(lender)


def _transfer_requested(state: ItemState, ev: Event) -> None:
    if state.holder == state.owner and state.open_loan is None:
        return  # already home: nothing to send
    if not state.transfer_open:
        state.transfer = Transfer(ev.at)
    if state.open_loan is None:
        state.transfer.note_shelf(state.holder)


def _apply(state: ItemState, ev: Event, released: frozenset[str] = frozenset()) -> None:
    if ev.kind == TRANSFER_REQUESTED:
        _transfer_requested(state, ev)
    elif ev.kind == ISSUED:
        # The book is in hand at ev.member, so any loan still open elsewhere ended there.
        if state.open_loan and state.open_loan != ev.loan:
            _close_open_loan(state, ev.at, ev.member)
        if ev.loan in state.closures:
            return  # the loan's own issue replayed after a later return: nothing reopens
        state.open_loan, state.due, state.holder = ev.loan, ev.due_at, ev.member
    elif ev.kind == RENEWED:
        _renewed(state, ev, released)
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
    is_copy: bool = False  # a consortium copy of a foreign book (else the member's own item)


@dataclass(frozen=True)
class OpenLoanAtSource:
    loan: LoanRef  # a loan the lending ILS still shows open


# What makes two commands the same command (the outbox keeps one per target and key).
STATE_KEY_FIELDS = ("loan_local_id", "holder", "due_at", "state_at")
KEY_FIELDS = {
    "transfer": ("holder", "requested_at"),
    "transfer_arrived": ("requested_at", "arrived_at"),
    # A close is also where and when the loan ended: a later merge that learns the loan ended
    # elsewhere (members merge one after the other) asks for another close, which supersedes
    # the first instead of being taken for it (`make chaos`, seed 7, schedule 2).
    "close_loan": (*STATE_KEY_FIELDS, "returned_at", "return_member"),
}


@dataclass(frozen=True)
class Command:
    target: str
    kind: str  # close_loan | set_item | transfer | transfer_arrived
    barcode: str
    payload: dict

    @property
    def command_key(self) -> str:
        p = self.payload
        fields = KEY_FIELDS.get(self.kind, STATE_KEY_FIELDS)
        return ":".join([self.kind, self.barcode, *(str(p.get(f) or "") for f in fields)])


def _day(value: datetime | None):
    return value.date() if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(sep=" ") if value else None


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
    return commands + transfer_commands(barcode, state, base)


def transfer_commands(barcode: str, state: ItemState, base: dict) -> list[Command]:
    """Ask the member whose shelf holds the book to send it home; once the owner has it,
    tell every member that was asked that it arrived."""
    t = state.transfer
    if t is None:
        return []
    payload = {**base, "owner": state.owner, "requested_at": _iso(t.requested_at)}
    if t.arrived_at is not None:
        payload["arrived_at"] = _iso(t.arrived_at)
        return [Command(m, "transfer_arrived", barcode, payload)
                for m in t.shelves if m != state.owner]
    if state.open_loan is None and state.holder != state.owner:
        return [Command(state.holder, "transfer", barcode, payload)]
    return []  # on loan: the desk it is returned to is asked then
