"""The daily report's figures, as plain queries over the central store (no Prefect, no plotting).

Definitions follow the glossary in DESIGN.md:
- cross loan: a loan made by a member that does not own the book;
- cross return: a loan returned at a member other than the one that lent it;
- a reader borrowed across members when they have a loan at a member other than their home;
- a book was lent again away from home when it was lent by a member that is not its owner
  (it got there by a cross return: secondary circulation), counted once per book;
- book movements: cross returns, from the lending member to the member it was returned at,
  which is where books physically travel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import Engine, and_, distinct, func, select, union

from circhub.connections.config import Consortium
from circhub.domain.schema import items, loans, outbox, quarantine, readers
from circhub.tasks.reporting.status import MemberStatus, member_statuses

CROSS_LOAN = and_(loans.c.barcode == items.c.barcode, loans.c.member != items.c.owner)
CROSS_RETURN = and_(loans.c.returned_at.is_not(None), loans.c.return_member.is_not(None),
                    loans.c.return_member != loans.c.member)


@dataclass(frozen=True)
class Headline:
    cross_loans: int
    cross_returns: int
    cross_readers: int
    active_members: int
    lent_again: int

    def rows(self) -> list[tuple[str, int]]:
        return [("cross loans to date", self.cross_loans),
                ("cross returns to date", self.cross_returns),
                ("readers who borrowed across members", self.cross_readers),
                ("members with cross activity", self.active_members),
                ("books lent again away from home", self.lent_again)]


@dataclass
class DailyFigures:
    consortium: str
    at: datetime
    headline: Headline
    per_day: list[tuple[date, int]]  # cross loans per day, oldest first, days without any: 0
    flows: dict[tuple[str, str], int]  # (lent at, returned at) -> books moved
    levels: dict[str, str]  # member -> province | city | county
    regions: dict[str, str]  # member -> region, to fold a large matrix
    backlog: dict[str, dict[str, int]]  # member -> {"pending": n, "dead": n}
    quarantined: dict[tuple[str, str], int]  # (member, entity) -> rows held
    freshness: list[MemberStatus] = field(default_factory=list)

    def county_share(self) -> float:
        """Share of book movements that end at a county-level member."""
        moved = sum(self.flows.values())
        to_county = sum(n for (_, dst), n in self.flows.items()
                        if self.levels.get(dst) == "county")
        return to_county / moved if moved else 0.0


def headline(store: Engine) -> Headline:
    with store.connect() as conn:
        def count(query) -> int:
            return conn.execute(query).scalar() or 0

        cross = select(loans).join(items, CROSS_LOAN)
        lenders = select(loans.c.member).join(items, CROSS_LOAN)
        receivers = select(loans.c.return_member).where(CROSS_RETURN)
        active = union(lenders, receivers).subquery()
        return Headline(
            cross_loans=count(select(func.count()).select_from(cross.subquery())),
            cross_returns=count(select(func.count()).select_from(loans).where(CROSS_RETURN)),
            cross_readers=count(select(func.count(distinct(loans.c.reader_key)))
                                .join(readers, readers.c.reader_key == loans.c.reader_key)
                                .where(loans.c.member != readers.c.home_member)),
            active_members=count(select(func.count()).select_from(active)),
            lent_again=count(select(func.count(distinct(loans.c.barcode))).join(items, CROSS_LOAN)),
        )


def cross_loans_per_day(store: Engine, today: date, days: int = 30) -> list[tuple[date, int]]:
    first = today - timedelta(days=days - 1)
    day = func.date(loans.c.issued_at)  # date() exists on SQLite and PostgreSQL alike
    since = datetime.combine(first, datetime.min.time())
    with store.connect() as conn:
        rows = conn.execute(select(day, func.count()).join(items, CROSS_LOAN)
                            .where(loans.c.issued_at >= since).group_by(day)).all()
    found = {_as_date(d): n for d, n in rows}
    return [(first + timedelta(days=i), found.get(first + timedelta(days=i), 0))
            for i in range(days)]


def book_flows(store: Engine) -> dict[tuple[str, str], int]:
    with store.connect() as conn:
        rows = conn.execute(select(loans.c.member, loans.c.return_member, func.count())
                            .where(CROSS_RETURN)
                            .group_by(loans.c.member, loans.c.return_member)).all()
    return {(src, dst): n for src, dst, n in rows}


def writeback_backlog(store: Engine) -> dict[str, dict[str, int]]:
    with store.connect() as conn:
        rows = conn.execute(select(outbox.c.target, outbox.c.status, func.count())
                            .where(outbox.c.status.in_(("pending", "dead")))
                            .group_by(outbox.c.target, outbox.c.status)).all()
    found: dict[str, dict[str, int]] = {}
    for target, status, n in rows:
        found.setdefault(target, {"pending": 0, "dead": 0})[status] = n
    return found


def quarantine_counts(store: Engine) -> dict[tuple[str, str], int]:
    with store.connect() as conn:
        rows = conn.execute(select(quarantine.c.member, quarantine.c.entity, func.count())
                            .where(quarantine.c.released_at.is_(None))
                            .group_by(quarantine.c.member, quarantine.c.entity)).all()
    return {(m, e): n for m, e, n in rows}


def daily_figures(store: Engine, consortium: Consortium, now: datetime | None = None,
                  days: int = 30) -> DailyFigures:
    now = now or datetime.now()
    return DailyFigures(
        consortium=consortium.name, at=now, headline=headline(store),
        per_day=cross_loans_per_day(store, now.date(), days), flows=book_flows(store),
        levels={m.code: m.level for m in consortium.members},
        regions={m.code: m.region or m.code for m in consortium.members},
        backlog=writeback_backlog(store), quarantined=quarantine_counts(store),
        freshness=member_statuses(store, consortium, now))


def _as_date(value) -> date:
    """SQLite's date() gives text, PostgreSQL's a date."""
    return value if isinstance(value, date) else date.fromisoformat(str(value))
