"""Where each member stands, from the central store: last good sync, lag, write-backs, quarantine.

Plain functions (no Prefect): `circhub status`, the daily report and the alerts all read the
same rows, so the terminal, the UI and the notifications never disagree about a member.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select

from circhub.connections.config import Consortium
from circhub.domain.schema import outbox, quarantine, sync_runs

INTERVAL_ENV = "CIRCHUB_SYNC_INTERVAL_SECONDS"
STALE_ENV = "CIRCHUB_STALE_AFTER_INTERVALS"


@dataclass(frozen=True)
class Staleness:
    """A member is stale when its last good sync is older than `intervals` sync intervals."""

    interval_seconds: int = 300  # the consortium sync deployment's schedule (prefect.yaml)
    intervals: int = 3

    @classmethod
    def from_env(cls) -> Staleness:
        return cls(int(os.environ.get(INTERVAL_ENV, 300)), int(os.environ.get(STALE_ENV, 3)))

    @property
    def limit(self) -> timedelta:
        return timedelta(seconds=self.interval_seconds * self.intervals)


@dataclass(frozen=True)
class MemberStatus:
    code: str
    name: str
    region: str
    level: str
    sync_enabled: bool
    last_good_sync: datetime | None
    last_status: str | None  # of the latest run, good or not
    last_error: str | None
    lag: timedelta | None  # since the last good sync; None: never synced
    pending: int
    dead: int
    quarantined: int
    failing: int = 0  # pending write-backs whose last attempt the ILS refused
    failing_error: str | None = None  # the latest of their errors, in plain words

    def stale(self, rule: Staleness) -> bool:
        if not self.sync_enabled:
            return False
        return self.lag is None or self.lag > rule.limit

    def problems(self, rule: Staleness) -> list[str]:
        """What needs a person; empty when the member is fine."""
        found = []
        if self.stale(rule):
            found.append("never synced" if self.lag is None else
                         f"not synced for {_minutes(self.lag)} min")
        if self.dead:
            found.append(f"{self.dead} write-back(s) dead-lettered")
        if self.failing:
            found.append(f"{self.failing} write-back(s) failing: {self.failing_error}")
        return found


def member_statuses(store: Engine, consortium: Consortium,
                    now: datetime | None = None) -> list[MemberStatus]:
    now = now or datetime.now()
    good = _last_good(store)
    latest = _latest_runs(store)
    backlog = _outbox_counts(store)
    held = _quarantine_counts(store)
    failing = _failing_writebacks(store)
    rows = []
    for m in consortium.members:
        last_status, last_error = latest.get(m.code, (None, None))
        at = good.get(m.code)
        rows.append(MemberStatus(
            m.code, m.name, m.region, m.level, m.sync, at, last_status, last_error,
            now - at if at else None, backlog.get((m.code, "pending"), 0),
            backlog.get((m.code, "dead"), 0), held.get(m.code, 0),
            *failing.get(m.code, (0, None))))
    return rows


def needs_attention(rows: list[MemberStatus], rule: Staleness) -> list[MemberStatus]:
    return [r for r in rows if r.problems(rule)]


def _last_good(store: Engine) -> dict[str, datetime]:
    with store.connect() as conn:
        return dict(conn.execute(
            select(sync_runs.c.member, func.max(sync_runs.c.finished_at))
            .where(sync_runs.c.status == "ok").group_by(sync_runs.c.member)).all())


def _latest_runs(store: Engine) -> dict[str, tuple[str, str | None]]:
    last = (select(func.max(sync_runs.c.id).label("id"))
            .group_by(sync_runs.c.member).subquery())
    with store.connect() as conn:
        rows = conn.execute(select(sync_runs.c.member, sync_runs.c.status, sync_runs.c.error)
                            .join(last, last.c.id == sync_runs.c.id)).all()
    return {r.member: (r.status, r.error) for r in rows}


def _outbox_counts(store: Engine) -> dict[tuple[str, str], int]:
    with store.connect() as conn:
        rows = conn.execute(
            select(outbox.c.target, outbox.c.status, func.count())
            .where(outbox.c.status.in_(("pending", "dead")))
            .group_by(outbox.c.target, outbox.c.status)).all()
    return {(t, s): n for t, s, n in rows}


def _failing_writebacks(store: Engine) -> dict[str, tuple[int, str | None]]:
    """Per member: pending commands that failed their last attempt, and the latest error (an
    error is cleared when its command is applied, so one here still stands)."""
    failing = select(outbox.c.target, outbox.c.id, outbox.c.last_error).where(
        outbox.c.status == "pending", outbox.c.last_error.is_not(None))
    found: dict[str, tuple[int, str | None]] = {}
    with store.connect() as conn:
        for r in conn.execute(failing.order_by(outbox.c.id)):
            count, _ = found.get(r.target, (0, None))
            found[r.target] = (count + 1, r.last_error)
    return found


def _quarantine_counts(store: Engine) -> dict[str, int]:
    with store.connect() as conn:
        return dict(conn.execute(
            select(quarantine.c.member, func.count())
            .where(quarantine.c.released_at.is_(None)).group_by(quarantine.c.member)).all())


def _minutes(lag: timedelta) -> int:
    return int(lag.total_seconds() // 60)
