"""Circulation events read off a member's rows. Pure: the caller supplies the member mapping.

Event keys are built from the source's own identity (member, local id, what happened, and for
sightings when), so re-reading the same row can never add the same event twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from circhub.domain.circulation import ISSUED, RENEWED, RETURNED, SEEN, Event


def _py(value) -> datetime | None:
    if value is None:
        return None
    try:
        if value != value:  # NaT / NaN
            return None
    except (TypeError, ValueError):
        return None
    return value.to_pydatetime() if hasattr(value, "to_pydatetime") else value


def loan_events(rows: Iterable[dict], branch_to_member: Callable[[str | None], str | None]
                ) -> list[Event]:
    events = []
    for r in rows:
        lender = branch_to_member(r["branch"])
        loan = (lender, str(r["local_id"]))
        base = f"{lender}:loan:{r['local_id']}"
        due = _py(r["due_at"])
        events.append(Event(f"{base}:issued", r["barcode"], ISSUED, lender,
                            _py(r["issued_at"]), loan, due))
        if r.get("renewals"):
            at = _py(r.get("renewed_at")) or _py(r["updated_at"])
            events.append(Event(f"{base}:renewed:{int(r['renewals'])}", r["barcode"], RENEWED,
                                lender, at, loan, due))
        returned = _py(r.get("returned_at"))
        if returned and _names_no_member(r.get("return_branch"), branch_to_member):
            # Returned at a branch that stands for every other member (one consortium
            # branch): the hub's own close_loan read back. It learnt where from that member's
            # desk; taking the lender for it would move the book home.
            continue
        if returned:
            where = branch_to_member(r.get("return_branch")) or lender
            events.append(Event(f"{base}:returned", r["barcode"], RETURNED, where, returned,
                                loan))
    return events


def _names_no_member(branch: str | None,
                     branch_to_member: Callable[[str | None], str | None]) -> bool:
    return branch is not None and branch_to_member(branch) is None


def sighting_events(rows: Iterable[dict], member: str,
                    branch_to_member: Callable[[str | None], str | None]) -> list[Event]:
    """An item checked in and shelved at this member. The caller passes only rows of items the
    central state does not have on this member's shelf (a routine edit of a book at home adds
    no event). A row that shows the item held elsewhere is the hub's own write-back echoed,
    not a sighting.
    """
    events = []
    for r in rows:
        seen = _py(r.get("last_seen"))
        if seen is None or _py(r.get("on_loan_due")) is not None:
            continue
        if branch_to_member(r["holding_branch"]) != member:
            continue
        key = f"{member}:item:{r['local_id']}:seen:{seen.isoformat(sep=' ')}"
        events.append(Event(key, r["barcode"], SEEN, member, seen))
    return events
