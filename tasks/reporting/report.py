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

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import Engine, and_, distinct, func, select, true, union

from circhub.connections.config import Consortium
from circhub.domain.records import entities, suite_rules
from circhub.domain.schema import items, loans, outbox, quarantine, readers
from circhub.tasks.reporting.status import MemberStatus, member_statuses, writeback_backlog

CROSS_LOAN = and_(loans.c.barcode == items.c.barcode, loans.c.member != items.c.owner)
CROSS_RETURN = and_(loans.c.returned_at.is_not(None), loans.c.return_member.is_not(None),
                    loans.c.return_member != loans.c.member)
# A loan made at a member other than the reader's home member: the reader borrowed across.
LENT_AWAY_FROM_HOME = loans.c.member != readers.c.home_member


DAY = timedelta(days=1)
STREAM_ROWS = 10_000  # quarantine rows read at a time: a bad profile may hold millions


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


@dataclass(frozen=True)
class HeadlineChange:
    """The headline figures now and 24 h before, computed by the one `headline` definition."""

    now: Headline
    day_before: Headline

    def rows(self) -> list[tuple[str, int, int]]:
        """(label, value now, change since the day before), in the headline's order."""
        return [(label, value, value - before) for (label, value), (_, before)
                in zip(self.now.rows(), self.day_before.rows(), strict=True)]

    def lines(self) -> list[str]:
        """One line per figure, for logs and terminals (no Python reprs)."""
        return [f"{label}: {value:,} ({change_text(change)})"
                for label, value, change in self.rows()]


def change_text(change: int) -> str:
    return f"{change:+,} since the day before" if change else "unchanged since the day before"


def headline(store: Engine, as_of: datetime | None = None) -> Headline:
    """The headline figures over every loan the store holds; with `as_of`, as they stood at
    that moment: only loans issued, and returns made, before it. One definition serves today's
    figures and the day before's, so their difference is the day's activity."""
    issued, returned = _issued_before(as_of), and_(CROSS_RETURN, _returned_before(as_of))
    with store.connect() as conn:
        def count(query) -> int:
            return conn.execute(query).scalar() or 0

        cross = select(loans).join(items, CROSS_LOAN).where(issued)
        lenders = select(loans.c.member).join(items, CROSS_LOAN).where(issued)
        receivers = select(loans.c.return_member).where(returned)
        active = union(lenders, receivers).subquery()
        return Headline(
            cross_loans=count(select(func.count()).select_from(cross.subquery())),
            cross_returns=count(select(func.count()).select_from(loans).where(returned)),
            cross_readers=count(select(func.count(distinct(loans.c.reader_key)))
                                .join(readers, readers.c.reader_key == loans.c.reader_key)
                                .where(LENT_AWAY_FROM_HOME, issued)),
            active_members=count(select(func.count()).select_from(active)),
            lent_again=count(books_lent_again(as_of=as_of)),
        )


def books_lent_again(*by, as_of: datetime | None = None):
    """Books lent by a member that is not their owner, each counted once (grouped `by` the
    columns given, e.g. `items.c.owner`): the report's and `circhub books`' one query."""
    return (select(*by, func.count(distinct(loans.c.barcode)))
            .select_from(loans.join(items, CROSS_LOAN)).where(_issued_before(as_of))
            .group_by(*by))


def headline_change(store: Engine, now: datetime) -> HeadlineChange:
    return HeadlineChange(now=headline(store), day_before=headline(store, now - DAY))


def _issued_before(as_of: datetime | None):
    return true() if as_of is None else loans.c.issued_at < as_of


def _returned_before(as_of: datetime | None):
    return true() if as_of is None else loans.c.returned_at < as_of


@dataclass
class DailyFigures:
    consortium: str
    at: datetime
    change: HeadlineChange  # the headline beside the day before's
    per_day: list[tuple[date, int]]  # cross loans per day, oldest first, days without any: 0
    flows: dict[tuple[str, str], int]  # (lent at, returned at) -> books moved
    levels: dict[str, str]  # member -> province | city | county
    regions: dict[str, str]  # member -> region, to fold a large matrix
    backlog: dict[str, dict[str, int]]  # member -> {"pending": n, "dead": n}
    quarantined: QuarantineByRule
    freshness: list[MemberStatus] = field(default_factory=list)

    @property
    def headline(self) -> Headline:
        return self.change.now

    def county_share(self) -> float:
        """Share of book movements that end at a county-level member."""
        moved = sum(self.flows.values())
        to_county = sum(n for (_, dst), n in self.flows.items()
                        if self.levels.get(dst) == "county")
        return to_county / moved if moved else 0.0


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


@dataclass(frozen=True)
class QuarantineByRule:
    """Rows held in quarantine, counted under each rule they broke."""

    rows: int
    by_rule: dict[str, int]  # rule (with its specific reason, when it has one) -> rows
    several: int  # rows that broke more than one rule: counted under each

    def top(self, n: int) -> list[tuple[str, int]]:
        """The `n` rules broken most, most first (ties by name, so the order is stable)."""
        return sorted(self.by_rule.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def quarantine_by_rule(store: Engine, member: str | None = None) -> QuarantineByRule:
    """Rows held (not released), per rule broken, of every member or of one;
    `circhub quarantine` lists the rows."""
    query = select(quarantine.c.rules).where(quarantine.c.released_at.is_(None))
    if member is not None:
        query = query.where(quarantine.c.member == member)
    by_rule: Counter[str] = Counter()
    rows = several = 0
    with store.connect() as conn:
        for entries in conn.execution_options(yield_per=STREAM_ROWS).execute(query).scalars():
            broken = rules_broken(entries)
            rows += 1
            several += len(broken) > 1
            by_rule.update(broken)
    return QuarantineByRule(rows, dict(by_rule), several)


def rules_broken(entries: list[str]) -> list[str]:
    """A quarantined row's rules, each with its specific reason when the rule records one
    (`id_number_valid: id_check_digit`): the rules column lists that reason right after its
    rule (tasks/sync/validate.py), and a reason alone is no rule."""
    names, detailed = _rule_names()
    found: list[str] = []
    for entry in entries:
        if found and found[-1] in detailed and entry not in names:
            found[-1] = f"{found[-1]}: {entry}"
        else:
            found.append(entry)
    return found


def _rule_names() -> tuple[set[str], set[str]]:
    """Every declared rule's name, and the names of those that record a specific reason."""
    rules = [r for e in entities() for r in suite_rules(e)]
    return {r.name for r in rules}, {r.name for r in rules if r.detail}


def writebacks_by_status(store: Engine) -> dict[str, int]:
    """Write-back commands per status (pending, applied, dead, ...), over every member."""
    with store.connect() as conn:
        return dict(conn.execute(select(outbox.c.status, func.count())
                                 .group_by(outbox.c.status)).all())


def daily_figures(store: Engine, consortium: Consortium, now: datetime | None = None,
                  days: int = 30) -> DailyFigures:
    now = now or datetime.now()
    change = headline_change(store, now)
    return DailyFigures(
        consortium=consortium.name, at=now, change=change,
        per_day=cross_loans_per_day(store, now.date(), days), flows=book_flows(store),
        levels={m.code: m.level for m in consortium.members},
        regions={m.code: m.region or m.code for m in consortium.members},
        backlog=writeback_backlog(store), quarantined=quarantine_by_rule(store),
        freshness=member_statuses(store, consortium, now))


def _as_date(value) -> date:
    """SQLite's date() gives text, PostgreSQL's a date."""
    return value if isinstance(value, date) else date.fromisoformat(str(value))
