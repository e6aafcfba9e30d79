"""How long books stay away from home, read off their circulation events. Pure, no I/O.

A book is away from the moment a desk other than its owner's has it in hand (a return there,
a loan there) until its owner's own desk has it again. A loan made at home is not time away:
the book left with one of its own library's readers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from circhub.domain.circulation import IN_HAND, Event


@dataclass(frozen=True)
class Spell:
    barcode: str
    owner: str
    left_at: datetime
    back_at: datetime | None  # None: still away

    def days(self, now: datetime) -> float:
        return ((self.back_at or now) - self.left_at).total_seconds() / 86400


def away_spells(barcode: str, owner: str, events: Iterable[Event]) -> list[Spell]:
    spells, left = [], None
    for ev in sorted(events, key=Event.sort_key):
        if ev.kind not in IN_HAND:
            continue
        if ev.member != owner and left is None:
            left = ev.at
        elif ev.member == owner and left is not None:
            spells.append(Spell(barcode, owner, left, ev.at))
            left = None
    if left is not None:
        spells.append(Spell(barcode, owner, left, None))
    return spells
