"""The oracle: after a schedule's faults stop and the hub has caught up, everything the hub and
the owners' ILS databases hold is compared with the simulator's ground truth (the World: where
every book is, and its ledger of every loan as it really happened).

Findings come in kinds, so a campaign can count them: `lost` (a loan, event or row the truth
has and the hub or an owner lacks), `doubled` (recorded twice, or a loan the truth never
made), `wrong` (present, with other values), `owner` (an owner's ILS showing a book or a loan
otherwise than its own desk plus the hub's write-backs should have left it), `outbox` (a
command neither applied nor dead-lettered with a reason) and `exception` (a circulation
exception open with no cause in the data: the world has no bad rows).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Engine, select

from circhub.domain.identity import reader_key
from circhub.domain.schema import circulation_events, circulation_exceptions, loans, outbox
from circhub.simulator.verify import central_differences, ils_differences
from circhub.simulator.world import LoanTruth, World

# Outbox states that end a command: applied, replaced by a newer one, settled by a person.
SETTLED = {"applied", "superseded", "resolved"}


@dataclass(frozen=True)
class Finding:
    kind: str  # lost | doubled | wrong | owner | outbox | exception
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def check(world: World, store: Engine, id_key: bytes) -> list[Finding]:
    """Every way the hub and the owners differ from the truth; [] when they agree."""
    return (_central_loans(world, store, id_key) + _events(world, store)
            + [Finding("wrong", d) for d in central_differences(world, store)]
            + [Finding("owner", d) for d in ils_differences(world)]
            + _owner_loans(world) + _outbox(store) + _exceptions(store))


def _central_loans(world: World, store: Engine, id_key: bytes) -> list[Finding]:
    with store.connect() as conn:
        rows = {(r.member, r.local_id): r for r in conn.execute(select(loans))}
    found = []
    for (member, issue), truth in world.ledger.items():
        row = rows.pop((member, str(issue)), None)
        if row is None:
            found.append(Finding("lost", f"loan {member}/{issue} ({truth.barcode}) is not in "
                                         "the central store"))
            continue
        found += [Finding("wrong", f"loan {member}/{issue}: {what}")
                  for what in _loan_mismatches(row, truth, id_key, world)]
    found += [Finding("doubled", f"loan {m}/{i} ({r.barcode}) in the central store was never "
                                 "made at a desk") for (m, i), r in rows.items()]
    return found


def _loan_mismatches(row, truth: LoanTruth, id_key: bytes, world: World) -> list[str]:
    expected = {"barcode": truth.barcode, "reader_key": reader_key(truth.id_number, id_key),
                "issued_at": truth.issued_at, "due_at": truth.due_at,
                "renewals": truth.renewals, "return_member": truth.return_member}
    shown = {"reader_key": "the reader's keyed hash"}  # never a hash in a finding
    wrong = [f"{name} is {_shown(name, getattr(row, name), shown)}, truth "
             f"{_shown(name, want, shown)}"
             for name, want in expected.items() if getattr(row, name) != want]
    if not _knowable_return(row.returned_at, truth, world):
        wrong.append(f"returned_at is {row.returned_at!r}, truth {truth.returned_at!r}")
    return wrong


def _knowable_return(returned_at, truth: LoanTruth, world: World) -> bool:
    """A return at the lender's own desk is on the loan, to the second. A return at another
    member is known from that member's ILS, whose current state keeps only its latest
    action on the book: if the book was lent again there before the hub looked, the return is
    known no later than that. So: from the true time up to the book's next action."""
    if truth.returned_at is None or truth.return_member == truth.member:
        return returned_at == truth.returned_at
    if returned_at is None or returned_at < truth.returned_at:
        return False
    later = [at for at, _, barcode, _ in world.journal
             if barcode == truth.barcode and at > truth.returned_at]
    return returned_at <= min(later, default=truth.returned_at)


def _shown(name: str, value, masked: dict) -> str:
    return masked.get(name, repr(value)) if value is not None else "None"


def _events(world: World, store: Engine) -> list[Finding]:
    """One `issued` event per loan, one `returned` per loan returned at its lender's own desk
    (a return at another member is that member's sighting of the book, and the hub's close of
    the lender's loan read back is its echo, not a second return); none for a loan the truth
    does not have."""
    with store.connect() as conn:
        seen = Counter((r.loan_member, r.loan_local_id, r.kind) for r in conn.execute(
            select(circulation_events.c.loan_member, circulation_events.c.loan_local_id,
                   circulation_events.c.kind)
            .where(circulation_events.c.kind.in_(("issued", "returned")))))
    found = []
    for (member, issue), truth in world.ledger.items():
        at_lender = (truth.returned_at is not None and truth.return_member == member
                     or truth.desk_closed is not None)
        for kind, want in (("issued", 1), ("returned", int(at_lender))):
            got = seen.pop((member, str(issue), kind), 0)
            if got != want:
                found.append(Finding("lost" if got < want else "doubled",
                                     f"loan {member}/{issue} ({truth.barcode}): {got} "
                                     f"`{kind}` events, truth {want}"))
    found += [Finding("doubled", f"{n} `{kind}` event(s) for loan {m}/{i}, which the truth "
                                 "does not have") for (m, i, kind), n in seen.items()]
    return found


def _owner_loans(world: World) -> list[Finding]:
    """Each loan as its lending member's ILS shows it: closed when returned, at the truth's
    return time and branch (where the ILS keeps one), recorded once."""
    found = []
    for (member, issue), truth in world.ledger.items():
        view = world.desks[member].loan_view(issue)
        name = f"loan {member}/{issue} ({truth.barcode}) at its lender"
        if view.get("records", 1) != 1:
            found.append(Finding("doubled", f"{name}: {view['records']} records of it"))
        if view["open"] != (truth.returned_at is None):
            found.append(Finding("owner", f"{name}: open={view['open']}, truth returned at "
                                          f"{truth.returned_at}"))
        elif truth.desk_closed is not None:
            found += _desk_close_mismatches(name, view, truth)
        elif truth.returned_at is not None:
            found += _return_mismatches(name, view, truth, world)
    return found


def _desk_close_mismatches(name: str, view: dict, truth: LoanTruth) -> list[Finding]:
    """The lender's desk closed the loan itself (the book came back before the hub's close):
    its own time and branch stand, and a close from the hub must not have overwritten them."""
    at, member = truth.desk_closed
    shown = (view["returned_at"], view.get("return_branch") or member)
    if shown == (at, member):
        return []
    return [Finding("owner", f"{name}: returned at {shown[0]} at branch {shown[1]}; its own "
                             f"desk closed it at {at} at {member}")]


def _return_mismatches(name: str, view: dict, truth: LoanTruth, world: World) -> list[Finding]:
    found = []
    if not _knowable_return(view["returned_at"], truth, world):
        found.append(Finding("owner", f"{name}: returned at {view['returned_at']}, truth "
                                      f"{truth.returned_at}"))
    branch = view.get("return_branch")
    if branch is not None and branch != truth.return_member:
        found.append(Finding("owner", f"{name}: returned at branch {branch}, truth "
                                      f"{truth.return_member}"))
    return found


def _outbox(store: Engine) -> list[Finding]:
    with store.connect() as conn:
        rows = conn.execute(select(outbox.c.id, outbox.c.target, outbox.c.kind, outbox.c.barcode,
                                   outbox.c.status, outbox.c.last_error)
                            .where(outbox.c.status.not_in(SETTLED))).all()
    return [Finding("outbox", f"command {r.id} ({r.kind} {r.barcode} to {r.target}) is "
                              f"{r.status}" + (f": {r.last_error}" if r.last_error else
                                               " with no reason"))
            for r in rows if r.status != "dead" or not r.last_error]


def _exceptions(store: Engine) -> list[Finding]:
    with store.connect() as conn:
        rows = conn.execute(select(circulation_exceptions).where(
            circulation_exceptions.c.status.in_(("open", "waiting")))).all()
    return [Finding("exception", f"{r.reason} on {r.barcode} ({r.subject}) is {r.status}: "
                                 f"{r.detail}") for r in rows]
