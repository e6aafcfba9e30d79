"""Backfill flow: one member's entity over a date range, resumable, with a progress artifact."""

from __future__ import annotations

import time
from contextlib import nullcontext
from datetime import timedelta

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from circhub.connections.runtime import default_config_path, open_runtime
from circhub.flows.attempts import refuse_endless_attempts
from circhub.flows.slots import ensure_limits, source_slots
from circhub.tasks.loads.backfill import BackfillProgress, backfill_member, backfill_range
from circhub.tasks.sync.validate import publish_data_docs


def _run_name() -> str:
    from prefect.runtime import flow_run

    p = flow_run.parameters
    return f"backfill-{p.get('member')}-{p.get('entity')}-{p.get('since')}"


def _terminal_bar(show: bool):
    """One bar: windows done of all, rows so far, rows per second, time left."""
    if not show:
        return nullcontext(None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), "windows",
                    TextColumn("{task.fields[rows]:,} rows, {task.fields[rate]:,.0f} rows/s"),
                    TimeRemainingColumn(), transient=False)


class _ProgressLog:
    """Log lines for the run's log, at most one per LOG_EVERY share of the windows: a year of
    daily windows is ~10 lines, not 365, and empty windows are counted, not listed."""

    LOG_SHARE = 0.1

    def __init__(self, log, member: str, entity: str):
        self.log, self.what = log, f"backfill {member} {entity}"
        self.rows_at_last, self.empty, self.next_at = 0, 0, 0
        self.started = time.monotonic()

    def __call__(self, p: BackfillProgress) -> None:
        self.empty += p.rows == self.rows_at_last
        self.rows_at_last = p.rows
        if p.windows_done < self.next_at and p.windows_done < p.windows_total:
            return
        self.next_at = p.windows_done + max(1, int(p.windows_total * self.LOG_SHARE))
        empty = f", {self.empty} of them empty" if self.empty else ""
        self.log.info("%s: %d/%d windows%s, %d rows, %.0f rows/s, done until %s", self.what,
                      p.windows_done, p.windows_total, empty, p.rows, self.rate(p.rows),
                      f"{p.done_until:%Y-%m-%d %H:%M}")
        self.empty = 0

    def rate(self, rows: int) -> float:
        return rows / max(time.monotonic() - self.started, 1e-6)


@flow(name="backfill", flow_run_name=_run_name)
def backfill(member: str, entity: str, since: str, until: str | None = None,
             window_hours: int = 24, config: str | None = None,
             show_progress: bool = False) -> dict:
    """Load `entity` of `member` for cursor values in [since, until), window by window.

    Run it again with the same arguments after a crash: it resumes at the first window that
    was not committed, and re-merging is idempotent; a range done already is not read again.
    """
    refuse_endless_attempts()
    start, end = backfill_range(entity, since, until, window_hours)  # before anything starts
    rt = open_runtime(config or default_config_path())
    code = rt.consortium.member(member).code
    ensure_limits(rt.consortium)
    log = get_run_logger()
    artifact = create_progress_artifact(0.0, description=f"backfill {member} {entity}")
    logged = _ProgressLog(log, member, entity)
    with _terminal_bar(show_progress) as bar:
        bar_task = (bar.add_task(f"{member} {entity}", total=None, rows=0, rate=0.0)
                    if bar else None)

        def report(p: BackfillProgress) -> None:
            update_progress_artifact(artifact, 100.0 * p.windows_done / p.windows_total)
            if bar is not None:
                bar.update(bar_task, completed=p.windows_done, total=p.windows_total,
                           rows=p.rows, rate=logged.rate(p.rows))
            logged(p)

        try:
            # The member's slot for the whole load: its syncs wait (and fail by name after
            # SLOT_WAIT_SECONDS) instead of reading its database beside the backfill.
            with source_slots(code):
                result = backfill_member(rt, rt.consortium.member(code), entity, start, end,
                                         timedelta(hours=window_hours), on_progress=report)
        except Exception:  # a refused chunk's failing rules are worth seeing too
            publish_data_docs(rt.consortium, f"backfill-{member}-{entity}", log)
            raise
    if not result.complete_already:  # a rerun that read nothing leaves the docs as they were
        publish_data_docs(rt.consortium, f"backfill-{member}-{entity}", log)
    update_progress_artifact(artifact, 100.0)
    summary = result.words(start, end)
    log.info(summary)
    return {"member": result.member, "entity": result.entity, "rows": result.rows,
            "merged": result.merged, "quarantined": result.quarantined,
            "windows_run": result.windows, "resumed_from": str(result.resumed_from),
            "complete_already": result.complete_already, "summary": summary}
