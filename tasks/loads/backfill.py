"""Backfill: load one entity of one member over a date range, window by window.

Each window streams in chunks (bounded memory) through the same validate and merge stages as a
sync, in three steps that overlap: a reader process reads, types and hashes the next chunks
(`circhub.tasks.loads.read_process`), a read-ahead thread validates the next one (`read_ahead`, one
chunk
ahead, across windows), and the current one merges. A window's progress is committed once its
last chunk has committed, so a backfill killed at any point restarts from the first window
not recorded; re-merging a window is idempotent (rows are upserted by key and skipped when
unchanged).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Connection, select, update

from circhub.connections.config import Member
from circhub.connections.engines import member_url
from circhub.connections.runtime import Runtime
from circhub.connections.store import upsert_insert
from circhub.domain.records import entities
from circhub.domain.schema import backfills
from circhub.tasks.loads.prefetch import read_ahead
from circhub.tasks.loads.read_process import ReaderDone, ReadJob, WindowRead, read_in_child
from circhub.tasks.sync.extract import Extract, read_marks
from circhub.tasks.sync.merge import merge_batch
from circhub.tasks.sync.validate import Validated, validate_extract

# Rows per chunk of a backfill window: each chunk is validated and merged on its own, so peak
# memory follows this, not the window; 100,000 rows spread Great Expectations' fixed ~35 ms a
# run thinly (measured in `make bench`, docs/benchmarks.md).
BACKFILL_CHUNK_ROWS = 100_000


@dataclass
class BackfillProgress:
    windows_done: int
    windows_total: int
    rows: int
    done_until: datetime


@dataclass
class BackfillReport:
    member: str
    entity: str
    rows: int
    merged: int
    quarantined: int
    windows: int
    resumed_from: datetime
    reader_peak_mb: float = 0.0  # the reader process's own peak memory
    complete_already: bool = False  # a rerun of a range done before: nothing was read

    def words(self, since: datetime, until: datetime) -> str:
        """The result as a person reads it."""
        span = f"{self.member} {self.entity} from {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M}"
        if self.complete_already:
            return f"backfill of {span} was complete already ({self.rows:,} rows): nothing to do"
        resumed = (f", resumed at {self.resumed_from:%Y-%m-%d %H:%M}"
                   if self.resumed_from > since else "")
        return (f"backfill of {span} complete: {self.rows:,} rows read in {self.windows} "
                f"window(s){resumed}; {self.merged:,} merged, {self.quarantined:,} quarantined"
                + (" (`circhub quarantine` lists them)" if self.quarantined else ""))


def backfill_range(entity: str, since: str, until: str | None, window_hours: int,
                   now: datetime | None = None) -> tuple[datetime, datetime]:
    """The arguments of a backfill checked before anything starts: a known entity, ISO dates,
    since before until, a window of at least an hour. Raises ValueError saying which."""
    if entity not in entities():
        raise ValueError(f"unknown entity {entity!r}; one of: {', '.join(entities())}")
    start, end = _when("--since", since), _when("--until", until) if until else None
    end = end or now or datetime.now()
    if end <= start:
        raise ValueError(f"--since ({start:%Y-%m-%d %H:%M}) must be before --until "
                         f"({end:%Y-%m-%d %H:%M})")
    if window_hours < 1:
        raise ValueError(f"--window-hours must be 1 or more, not {window_hours}")
    return start, end


def _when(option: str, value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{option} {value!r} is not a date: give an ISO date or date and "
                         "time, e.g. 2026-01-01 or 2026-01-01T08:00") from None


def windows(since: datetime, until: datetime, size: timedelta) -> list[tuple[datetime, datetime]]:
    if size <= timedelta(0):
        raise ValueError("a backfill window must be longer than zero")
    out, start = [], since
    while start < until:
        out.append((start, min(start + size, until)))
        start += size
    return out


def _claim(rt: Runtime, member: str, entity: str, since: datetime, until: datetime,
           size: timedelta) -> tuple[int, datetime, int]:
    """The backfill's row (created on first run): its id, where it stands, rows so far."""
    now = datetime.now()
    with rt.store.begin() as conn:
        stmt = upsert_insert(conn, backfills).values(
            member=member, entity=entity, since=since, until=until,
            window_seconds=int(size.total_seconds()), done_until=since, rows=0,
            status="running", started_at=now, updated_at=now)
        conn.execute(stmt.on_conflict_do_nothing(
            index_elements=["member", "entity", "since", "until"]))
        row = conn.execute(select(backfills).where(
            backfills.c.member == member, backfills.c.entity == entity,
            backfills.c.since == since, backfills.c.until == until)).one()
    return row.id, row.done_until, row.rows


def _progress_step(backfill_id: int, done_until: datetime, rows: int,
                   last: bool) -> Callable[[Connection], None]:
    def record(conn: Connection) -> None:
        conn.execute(update(backfills).where(backfills.c.id == backfill_id).values(
            done_until=done_until, rows=rows, updated_at=datetime.now(),
            status="done" if last else "running"))
    return record


def backfill_member(rt: Runtime, member: Member, entity: str, since: datetime, until: datetime,
                    size: timedelta, on_progress: Callable[[BackfillProgress], None] | None = None,
                    chunk_rows: int = BACKFILL_CHUNK_ROWS) -> BackfillReport:
    if entity not in entities():
        raise ValueError(f"unknown entity {entity!r}; one of {', '.join(entities())}")
    if until <= since:
        raise ValueError(f"backfill of {member.code} {entity}: until must be after since")
    backfill_id, done_until, rows = _claim(rt, member.code, entity, since, until, size)
    all_windows = windows(since, until, size)
    todo = [w for w in all_windows if w[1] > done_until]
    report = BackfillReport(member.code, entity, rows, 0, 0, len(todo), done_until)
    if not todo:  # a rerun of a completed range: say so, read nothing
        report.complete_already = True
        return report
    view = rt.member_view(member)
    done = len(all_windows) - len(todo)
    # The URL is taken here, in the caller's context, which holds the member's slot; the
    # read-ahead thread that starts the reader process does not (connections.holds).
    job = ReadJob(member, member_url(member), entity, todo, chunk_rows, rt.id_key,
                  arrow=rt.consortium.bulk_reader == "arrow")
    # Closed on the way out, even by an error: the reader process and its connection to the
    # member end before the caller gives the member's slot back.
    with closing(read_ahead(_prepared(rt, job, view),
                            name=f"circhub-backfill-{member.code}")) as chunks:
        for chunk in chunks:
            if isinstance(chunk, ReaderDone):
                report.reader_peak_mb = chunk.peak_mb
            elif isinstance(chunk, WindowRead):
                last_window = chunk.end == all_windows[-1][1]
                with rt.store.begin() as conn:
                    _progress_step(backfill_id, chunk.end, report.rows, last_window)(conn)
                done += 1
                if on_progress:
                    on_progress(BackfillProgress(done, len(all_windows), report.rows,
                                                 chunk.end))
            else:
                _merge_chunk(rt, member, entity, *chunk, report)
    return report


Chunk = tuple[pd.DataFrame, Validated]


def _prepared(rt: Runtime, job: ReadJob, view) -> Iterator[Chunk | WindowRead | ReaderDone]:
    """Every window's chunks, read, typed and hashed in the reader process
    (`circhub.tasks.loads.read_process`), then validated here on the read-ahead thread; the merge
    thread only writes, so the three overlap on the machine's two cores."""
    with closing(read_in_child(job)) as items:  # a validation error ends the reader now
        for item in items:
            if isinstance(item, pd.DataFrame):
                yield item, validate_extract(job.member.code, {job.entity: item}, view,
                                             rt.consortium.max_bad_share)
            else:
                yield item


def _merge_chunk(rt: Runtime, member: Member, entity: str, frame: pd.DataFrame,
                 val: Validated, report: BackfillReport) -> None:
    """One chunk in its own central transaction. The window's progress is recorded after its
    last chunk committed: killed in between, the window is read again, which changes nothing."""
    marks = read_marks(rt.store, member.code)
    merged = merge_batch(rt.store, rt.consortium, member,
                         Extract(member.code, {entity: frame}, marks), val)
    report.rows += len(frame)
    report.merged += merged.merged.get(entity, 0)
    report.quarantined += merged.quarantined
