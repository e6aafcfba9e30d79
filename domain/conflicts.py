"""What the hub may write for one item, and what it must hold back for a person. Pure, no I/O.

Replay finds conflicts in the event log (circhub.domain.circulation); this module adds the ones
visible
in what the member ILS show (the mirrors), and decides the consequences:

- unknown barcode: no member's barcode prefix, or the owner's ILS has no such item. Listed;
  with no owner there is no state to keep at all.
- one barcode at two owners: two members catalogue it as their own item (or one member's own
  item carries another member's prefix, which validation quarantined). Nothing is written for
  that barcode, and the claiming member's events are kept out of the owner's book's history,
  until the data is fixed or an operator releases the conflict.
- the replay conflicts hold back an event (return of a book not on loan) or every write to one
  ILS (a loan renewed there while the book is on loan elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from circhub.domain.circulation import (
    Command,
    Conflict,
    Event,
    ItemState,
    MirrorRow,
    OpenLoanAtSource,
    Siblings,
    commands_for,
    replay,
)

UNKNOWN_BARCODE = "unknown_barcode"
TWO_OWNERS = "barcode_at_two_owners"


@dataclass(frozen=True)
class Decisions:
    """What is already known about an item's conflicts (from the exceptions table)."""

    released: frozenset[str] = frozenset()  # conflict keys an operator let through
    claims: dict[str, str] = field(default_factory=dict)  # member -> key: "this is my own book"

    def unreleased_claims(self) -> set[str]:
        return {m for m, key in self.claims.items() if key not in self.released}


@dataclass
class Assessment:
    state: ItemState | None
    commands: list[Command]
    conflicts: list[Conflict]


def structural_conflicts(barcode: str, owner: str | None, mirrors: list[MirrorRow],
                         owner_synced: bool, events: list[Event] = ()) -> list[Conflict]:
    seen_at = tuple(sorted({m.member for m in mirrors} | {e.member for e in events}))
    if owner is None:
        return [Conflict(UNKNOWN_BARCODE, "no-owner",
                         f"barcode {barcode} carries no member's barcode prefix", seen_at)]
    found = []
    owners = tuple(sorted({m.member for m in mirrors if not m.is_copy}))
    if len(owners) > 1:
        found.append(Conflict(TWO_OWNERS, "+".join(owners),
                              f"barcode {barcode} is an own item at {', '.join(owners)}", owners))
    if owner not in owners and mirrors:
        # Until the owner's items have been read once, its data may still bring the row.
        found.append(Conflict(UNKNOWN_BARCODE, f"not-at-owner:{owner}",
                              f"owner {owner} has no item with barcode {barcode}",
                              (owner, *seen_at), waiting_on=None if owner_synced else owner))
    return found


def assess_item(barcode: str, owner: str | None, events: list[Event], mirrors: list[MirrorRow],
                open_loans: list[OpenLoanAtSource], decisions: Decisions,
                owner_synced: bool, siblings: Siblings = frozenset()) -> Assessment:
    """The item's state, the commands the hub may queue now, and every conflict found."""
    conflicts = structural_conflicts(barcode, owner, mirrors, owner_synced, events)
    if owner is None:
        return Assessment(None, [], conflicts)
    claimed = decisions.unreleased_claims()
    state = replay(owner, [e for e in events if e.member not in claimed], decisions.released,
                   siblings)
    conflicts += state.conflicts
    commands = commands_for(barcode, state, mirrors, open_loans)
    two_owners = any(c.reason == TWO_OWNERS and c.key not in decisions.released
                     for c in conflicts)
    if two_owners or claimed:
        return Assessment(state, [], conflicts)
    return Assessment(state, [c for c in commands if c.target not in state.held_targets],
                      conflicts)
