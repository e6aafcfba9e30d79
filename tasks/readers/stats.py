"""Reader figures of the central store, defined like the consortium's public headline figures
(DESIGN.md: "readers who borrowed across libraries", "cross-library loans so far").

- a reader borrowed across members when they have a loan at a member other than their home;
- a cross loan is a loan made by a member that does not own the book (the glossary);
both are the daily report's own predicates (`circhub.tasks.reporting.report`), imported, so
`circhub readers stats` and the report cannot disagree;
- cross loans per reader = cross loans / readers who borrowed across (5.41 M / 1.5 M = 3.6 in
  the real network's Dec 2025 figures).
`since` / `until` bound the loans by issue time, for a day's or a month's figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, distinct, func, select

from circhub.domain.schema import items, loans, reader_accounts, readers
from circhub.tasks.reporting.report import CROSS_LOAN, LENT_AWAY_FROM_HOME


@dataclass(frozen=True)
class ReaderStats:
    readers: int  # people, each counted once however many members know them
    readers_at_several_members: int  # with accounts at two members or more
    readers_borrowed_across: int
    loans_away_from_home: int
    cross_loans: int

    @property
    def cross_loans_per_reader(self) -> float:
        if not self.readers_borrowed_across:
            return 0.0
        return self.cross_loans / self.readers_borrowed_across

    def line(self) -> str:
        """The one report line."""
        return (f"{self.readers} readers ({self.readers_at_several_members} with accounts at "
                f"several members); {self.readers_borrowed_across} borrowed across members; "
                f"{self.cross_loans} cross loans, {self.cross_loans_per_reader:.2f} per reader")


def reader_stats(store: Engine, since: datetime | None = None,
                 until: datetime | None = None) -> ReaderStats:
    with store.connect() as conn:
        return ReaderStats(
            readers=_count(conn, select(func.count()).select_from(readers)),
            readers_at_several_members=_several(conn),
            readers_borrowed_across=_count(conn, _window(
                select(func.count(distinct(loans.c.reader_key))).join(
                    readers, readers.c.reader_key == loans.c.reader_key).where(LENT_AWAY_FROM_HOME),
                since, until)),
            loans_away_from_home=_count(conn, _window(
                select(func.count()).select_from(loans).join(
                    readers, readers.c.reader_key == loans.c.reader_key).where(LENT_AWAY_FROM_HOME),
                since, until)),
            cross_loans=_count(conn, _window(
                select(func.count()).select_from(loans).join(items, CROSS_LOAN), since, until)),
        )


def _window(query, since: datetime | None, until: datetime | None):
    if since is not None:
        query = query.where(loans.c.issued_at >= since)
    if until is not None:
        query = query.where(loans.c.issued_at < until)
    return query


def _several(conn: Connection) -> int:
    # home_branch is the member of the account's own branch: an ILS instance shared by several
    # members lists one account under each of them, and that is still one account.
    member = func.coalesce(reader_accounts.c.home_branch, reader_accounts.c.member)
    per_reader = (select(reader_accounts.c.reader_key)
                  .where(reader_accounts.c.reader_key.is_not(None))
                  .group_by(reader_accounts.c.reader_key)
                  .having(func.count(distinct(member)) > 1).subquery())
    return _count(conn, select(func.count()).select_from(per_reader))


def _count(conn: Connection, query) -> int:
    return int(conn.execute(query).scalar() or 0)
