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
from circhub.tasks.sync.pauses import paused_members

INTERVAL_ENV = "CIRCHUB_SYNC_INTERVAL_SECONDS"
STALE_ENV = "CIRCHUB_STALE_AFTER_INTERVALS"
FAILURES_ENV = "CIRCHUB_ALERT_AFTER_FAILURES"


@dataclass(frozen=True)
class Staleness:
    """A member is stale when its last good sync is older than `intervals` sync intervals; it
    is failing (an alert) after `failures` failed runs in a row."""

    interval_seconds: int = 300  # the consortium sync deployment's schedule (prefect.yaml)
    intervals: int = 3
    failures: int = 3

    @classmethod
    def from_env(cls) -> Staleness:
        return cls(int(os.environ.get(INTERVAL_ENV, 300)), int(os.environ.get(STALE_ENV, 3)),
                   int(os.environ.get(FAILURES_ENV, 3)))

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
    failing: int = 0  # pending write-backs whose last attempt failed (backing off)
    failures_in_a_row: int = 0  # the latest runs that failed, back to the last good one
    paused: str | None = None  # why an operator paused it (`circhub member pause`)

    def stale(self, rule: Staleness) -> bool:
        if not self.sync_enabled or self.paused:
            return False
        return self.lag is None or self.lag > rule.limit

    def problems(self, rule: Staleness) -> list[str]:
        """What needs a person; empty when the member is fine."""
        found = []
        if self.last_status == "failed" and not self.paused:
            row = f" ({self.failures_in_a_row} in a row)" if self.failures_in_a_row > 1 else ""
            found.append(f"last run failed{row}: {self.last_error}")
        if self.stale(rule):
            found.append(self.staleness())
        if self.dead:
            found.append(f"{self.dead} write-back(s) dead-lettered")
        if self.failing:
            found.append(f"{self.failing} write-back(s) failing, retried with backoff")
        return found

    def staleness(self) -> str:
        return "never synced" if self.lag is None else f"not synced for {_minutes(self.lag)} min"

    def to_json(self, rule: Staleness) -> dict:
        """Its line of `circhub status --json`."""
        return {"member": self.code, "name": self.name, "region": self.region,
                "sync_enabled": self.sync_enabled, "paused": self.paused,
                "last_good_sync": self.last_good_sync.isoformat() if self.last_good_sync
                else None,
                "lag_seconds": int(self.lag.total_seconds()) if self.lag else None,
                "last_status": self.last_status, "last_error": self.last_error,
                "failures_in_a_row": self.failures_in_a_row, "pending": self.pending,
                "failing": self.failing, "dead": self.dead, "quarantined": self.quarantined,
                "problems": self.problems(rule)}


def member_statuses(store: Engine, consortium: Consortium,
                    now: datetime | None = None) -> list[MemberStatus]:
    now = now or datetime.now()
    good = _last_good(store)
    latest = _latest_runs(store)
    backlog = _outbox_counts(store)
    held = _quarantine_counts(store)
    in_a_row = failures_in_a_row(store)
    paused = paused_members(store)
    rows = []
    for m in consortium.members:
        last_status, last_error = latest.get(m.code, (None, None))
        at = good.get(m.code)
        pause = paused.get(m.code)
        rows.append(MemberStatus(
            m.code, m.name, m.region, m.level, m.sync, at, last_status, last_error,
            now - at if at else None, backlog.get((m.code, "pending"), 0),
            backlog.get((m.code, "dead"), 0), held.get(m.code, 0),
            backlog.get((m.code, "failing"), 0), in_a_row.get(m.code, 0),
            f"{pause.reason} (since {pause.paused_at:%Y-%m-%d %H:%M})" if pause else None))
    return rows


def needs_attention(rows: list[MemberStatus], rule: Staleness) -> list[MemberStatus]:
    return [r for r in rows if r.problems(rule)]


def problems_first(rows: list[MemberStatus], rule: Staleness) -> list[MemberStatus]:
    """Members needing a person first (most problems, then longest lag), then paused ones,
    then the rest by code: at 250 members the ones to act on are on the first screen."""
    def order(s: MemberStatus):
        lag = s.lag.total_seconds() if s.lag else float("inf")
        return (-len(s.problems(rule)), s.paused is None, -lag if s.problems(rule) else 0,
                s.code)
    return sorted(rows, key=order)


def least_fresh(rows: list[MemberStatus], n: int) -> list[MemberStatus]:
    """The `n` members least fresh, worst first: never synced, then longest since a good sync.
    Members whose sync is off or paused come last: nobody expects them to be fresh."""
    def order(s: MemberStatus):
        lag = float("inf") if s.lag is None else s.lag.total_seconds()
        return (not s.sync_enabled or s.paused is not None, -lag, s.code)
    return sorted(rows, key=order)[:n]


def stale_members(rows: list[MemberStatus], rule: Staleness) -> list[MemberStatus]:
    return [s for s in rows if s.stale(rule)]


def writeback_backlog(store: Engine) -> dict[str, dict[str, int]]:
    """Member -> {"pending": n, "dead": n}, for the members owed write-backs."""
    with store.connect() as conn:
        rows = conn.execute(select(outbox.c.target, outbox.c.status, func.count())
                            .where(outbox.c.status.in_(("pending", "dead")))
                            .group_by(outbox.c.target, outbox.c.status)).all()
    found: dict[str, dict[str, int]] = {}
    for target, status, n in rows:
        found.setdefault(target, {"pending": 0, "dead": 0})[status] = n
    return found


def failures_in_a_row(store: Engine) -> dict[str, int]:
    """Per member, its failed runs since its last good one (0 when the latest was good)."""
    last_ok = (select(sync_runs.c.member, func.max(sync_runs.c.id).label("ok_id"))
               .where(sync_runs.c.status == "ok").group_by(sync_runs.c.member).subquery())
    with store.connect() as conn:
        rows = conn.execute(
            select(sync_runs.c.member, func.count())
            .select_from(sync_runs.outerjoin(last_ok, last_ok.c.member == sync_runs.c.member))
            .where(sync_runs.c.status == "failed",
                   (last_ok.c.ok_id.is_(None)) | (sync_runs.c.id > last_ok.c.ok_id))
            .group_by(sync_runs.c.member)).all()
    return dict(rows)


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
    """(member, pending | dead | failing) -> commands; failing: pending after a failure."""
    with store.connect() as conn:
        failing = conn.execute(
            select(outbox.c.target, func.count())
            .where(outbox.c.status == "pending", outbox.c.attempts > 0,
                   outbox.c.last_error.is_not(None))
            .group_by(outbox.c.target)).all()
    backlog = {(t, status): n for t, counts in writeback_backlog(store).items()
               for status, n in counts.items()}
    return backlog | {(t, "failing"): n for t, n in failing}


def _quarantine_counts(store: Engine) -> dict[str, int]:
    with store.connect() as conn:
        return dict(conn.execute(
            select(quarantine.c.member, func.count())
            .where(quarantine.c.released_at.is_(None)).group_by(quarantine.c.member)).all())


def _minutes(lag: timedelta) -> int:
    return int(lag.total_seconds() // 60)
