"""Book-flow facts per owning member, from the central store: where its books are now, how
many were lent again away from home (secondary circulation; the real one-card network reports
274 thousand such volumes), and how long its books stay away (circhub.domain.bookflow)."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby

from sqlalchemy import Engine, func, select

from circhub.domain.bookflow import Spell, away_spells
from circhub.domain.circulation import IN_HAND, Event
from circhub.domain.schema import circulation_events as ev
from circhub.domain.schema import items
from circhub.tasks.reporting.report import books_lent_again

STREAM_ROWS = 50_000


@dataclass
class OwnerFlow:
    owner: str
    books: int = 0  # catalogued in its ILS, as the hub knows them
    at_home: int = 0
    held_at: Counter = field(default_factory=Counter)  # holder -> books there now
    lent_again_away: int = 0  # books ever lent by a member that is not their owner
    spells: list[Spell] = field(default_factory=list, repr=False)

    def away_now(self) -> int:
        return sum(self.held_at.values())

    def days_away(self, now: datetime) -> dict[str, float | None]:
        done = [s.days(now) for s in self.spells if s.back_at is not None]
        ongoing = [s.days(now) for s in self.spells if s.back_at is None]
        return {"returned home": len(done),
                "median days away": round(statistics.median(done), 1) if done else None,
                "longest days away": round(max(done), 1) if done else None,
                "away now, median days so far":
                    round(statistics.median(ongoing), 1) if ongoing else None}


def book_flow(store: Engine) -> dict[str, OwnerFlow]:
    flows: dict[str, OwnerFlow] = defaultdict(lambda: OwnerFlow(""))
    with store.connect() as conn:
        for owner, holder, n in conn.execute(
                select(items.c.owner, items.c.holder, func.count())
                .group_by(items.c.owner, items.c.holder)):
            f = _flow(flows, owner)
            f.books += n
            if holder == owner:
                f.at_home += n
            else:
                f.held_at[holder] += n
        for owner, n in conn.execute(books_lent_again(items.c.owner)):
            _flow(flows, owner).lent_again_away = n
        for spell in _spells(conn):
            _flow(flows, spell.owner).spells.append(spell)
    return dict(sorted(flows.items()))


def _flow(flows: dict[str, OwnerFlow], owner: str) -> OwnerFlow:
    flows[owner].owner = owner
    return flows[owner]


def _spells(conn):
    """Stream the in-hand events item by item (a few per loan: millions of rows at scale)."""
    q = (select(ev.c.event_key, ev.c.barcode, ev.c.kind, ev.c.member, ev.c.at, items.c.owner)
         .select_from(ev.join(items, items.c.barcode == ev.c.barcode))
         .where(ev.c.kind.in_(IN_HAND)).order_by(ev.c.barcode, ev.c.at))
    rows = conn.execution_options(yield_per=STREAM_ROWS).execute(q)
    for (barcode, owner), group in groupby(rows, key=lambda r: (r.barcode, r.owner)):
        events = [Event(r.event_key, barcode, r.kind, r.member, r.at) for r in group]
        yield from away_spells(barcode, owner, events)
