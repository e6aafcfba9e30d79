"""Backfill flow: one member's entity over a date range, resumable, with a progress artifact."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime, timedelta

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from circhub.connections.runtime import default_config_path, open_runtime
from circhub.flows.attempts import refuse_endless_attempts
from circhub.flows.slots import ensure_limits, source_slots
from circhub.tasks.loads.backfill import BackfillProgress, backfill_member
from circhub.tasks.sync.validate import publish_data_docs


def _run_name() -> str:
    from prefect.runtime import flow_run

    p = flow_run.parameters
    return f"backfill-{p.get('member')}-{p.get('entity')}-{p.get('since')}"


def _terminal_bar(show: bool):
    if not show:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), "windows", TimeRemainingColumn(), transient=False)


@flow(name="backfill", flow_run_name=_run_name)
def backfill(member: str, entity: str, since: str, until: str | None = None,
             window_hours: int = 24, config: str | None = None,
             show_progress: bool = False) -> dict:
    """Load `entity` of `member` for cursor values in [since, until), window by window.

    Run it again with the same arguments after a crash: it resumes at the first window that
    was not committed, and re-merging is idempotent.
    """
    refuse_endless_attempts()
    rt = open_runtime(config or default_config_path())
    rt.consortium.member(member)  # an unknown code is an error by name, before any work
    ensure_limits(rt.consortium)
    start = datetime.fromisoformat(since)
    end = datetime.fromisoformat(until) if until else datetime.now()
    log = get_run_logger()
    artifact = create_progress_artifact(0.0, description=f"backfill {member} {entity}")
    with _terminal_bar(show_progress) as bar:
        bar_task = bar.add_task(f"{member} {entity}", total=None) if bar else None

        def report(p: BackfillProgress) -> None:
            update_progress_artifact(artifact, 100.0 * p.windows_done / p.windows_total)
            if bar is not None:
                bar.update(bar_task, completed=p.windows_done, total=p.windows_total)
            log.info("backfill %s %s: %d/%d windows, %d rows, done until %s", member, entity,
                     p.windows_done, p.windows_total, p.rows, p.done_until)

        try:
            # The member's slot for the whole load: its syncs wait (and fail by name after
            # SLOT_WAIT_SECONDS) instead of reading its database beside the backfill.
            with source_slots(member):
                result = backfill_member(rt, rt.consortium.member(member), entity, start, end,
                                         timedelta(hours=window_hours), on_progress=report)
        finally:  # a refused chunk's failing rules are worth seeing too
            publish_data_docs(rt.consortium, f"backfill-{member}-{entity}", log)
    update_progress_artifact(artifact, 100.0)
    return {"member": result.member, "entity": result.entity, "rows": result.rows,
            "merged": result.merged, "quarantined": result.quarantined,
            "windows_run": result.windows, "resumed_from": str(result.resumed_from)}
