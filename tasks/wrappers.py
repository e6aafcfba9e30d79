"""Thin Prefect tasks over the plain stage functions: one task per member per stage.

Tasks take the config path and a member code (small, loggable parameters) and rebuild the
runtime from a per-process cache, so nothing secret or large travels as a task parameter.
"""

from __future__ import annotations

import threading
import time

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.exc import OperationalError

from connections.runtime import open_runtime
from tasks.extract import Extract, SourceUnavailable, extract_member
from tasks.limits import source_slots
from tasks.merge import MergeReport, hash_good_rows, merge_batch
from tasks.push import PushReport, push_member
from tasks.validate import BatchRejected, Validated, validate_members

_merge_lock = threading.Lock()  # merges serialise on the central store anyway; no deadlocks
# How long a task waits for its member's slot (held by another run: a manual sync, a push, a
# backfill) before that member fails this cycle by name: under the 5-minute sync interval, so
# a member held by a hung run never makes later runs queue behind it. (Prefect task timeouts
# are not used: in worker threads they cannot interrupt a blocked database read.)
SLOT_WAIT_SECONDS = 240


def transient(task, task_run, state) -> bool:
    """Retry only what may go away by itself: a source that did not answer. Never bad data."""
    try:
        state.result()
    except (SourceUnavailable, OperationalError):
        return True
    except Exception as exc:  # noqa: BLE001 - anything else is not worth a retry...
        return _server_busy(exc)  # ...but a Prefect API that shed load for a moment is
    return False


def _server_busy(exc: Exception) -> bool:
    """A concurrency slot refused with 503 by an overloaded Prefect server (Prefect keeps the
    exception class private, so it is recognised by name and status)."""
    return type(exc).__name__ == "ConcurrencySlotAcquisitionError" and "503" in str(exc)


@task(name="extract", task_run_name="extract-{member_code}", cache_policy=NO_CACHE,
      retries=1, retry_delay_seconds=2, retry_condition_fn=transient)
def extract_task(config: str, member_code: str) -> Extract:
    rt = open_runtime(config)
    member = rt.consortium.member(member_code)
    with source_slots(member_code, SLOT_WAIT_SECONDS):
        ext = extract_member(rt.consortium, member, rt.store, rt.id_key)
    log = get_run_logger()
    log.info("member %s: extracted %s", member_code, ext.counts())
    for entity in ext.partial:
        log.info("member %s: %s is a slice of a larger delta (max_delta_rows); the next sync "
                 "reads on from where it ended", member_code, entity)
    return ext


def _validate_run_name() -> str:
    from prefect.runtime import task_run

    codes = list(task_run.parameters.get("extracts") or {})
    return f"validate-{codes[0]}" if len(codes) == 1 else f"validate-{len(codes)}-members"


@task(name="validate", task_run_name=_validate_run_name, cache_policy=NO_CACHE)
def validate_task(config: str,
                  extracts: dict[str, Extract]) -> dict[str, Validated | str]:
    """Every extracted member of a run in one task: one GX run per entity for all of them.
    A member whose batch is refused gets the reason (a string) instead of its rows."""
    rt = open_runtime(config)
    views = {code: rt.member_view(rt.consortium.member(code)) for code in extracts}
    results = validate_members({code: ext.frames for code, ext in extracts.items()}, views,
                               rt.consortium.max_bad_share)
    log = get_run_logger()
    bad = [(code, b) for code, v in results.items() if isinstance(v, Validated) for b in v.bad]
    for code, b in bad[:20]:  # masked values only; the quarantine table keeps every row
        log.warning("member %s: %s row %s quarantined: %s", code, b.entity, b.row_key,
                    ", ".join(b.rules))
    if len(bad) > 20:
        log.warning("%d more rows quarantined", len(bad) - 20)
    for v in results.values():
        if isinstance(v, BatchRejected):
            log.error(str(v))
    return {code: str(v) if isinstance(v, BatchRejected) else v for code, v in results.items()}


def _merge_run_name() -> str:
    from prefect.runtime import task_run

    codes = list(task_run.parameters.get("batches") or {})
    return f"merge-{codes[0]}" if len(codes) == 1 else f"merge-{len(codes)}-members"


@task(name="merge", task_run_name=_merge_run_name, cache_policy=NO_CACHE)
def merge_task(config: str, batches: dict[str, tuple[Extract, Validated]],
               ) -> dict[str, MergeReport | str]:
    """Every member's merge, one after the other in the order given (a cycle's outcome must
    not depend on thread timing), each in its own central transaction. A member whose merge
    fails gets the reason (a string) and the others go on; a transient database error (a
    deadlock, a dropped connection) is tried once more after MERGE_RETRY_SECONDS.

    One task for all of them, like validation: merges run one at a time anyway, and a task
    run per member put Prefect's own bookkeeping (~40 ms a task run, on this machine's two
    cores with the server) between every two of them.
    """
    rt = open_runtime(config)
    log = get_run_logger()
    hash_good_rows(val for _, val in batches.values())
    with _merge_lock:
        return {code: _merge_one(rt, code, ext, val, log)
                for code, (ext, val) in batches.items()}


MERGE_RETRY_SECONDS = 2


def _merge_one(rt, code: str, ext: Extract, val: Validated, log) -> MergeReport | str:
    member = rt.consortium.member(code)
    try:
        try:
            report = merge_batch(rt.store, rt.consortium, member, ext, val)
        except OperationalError as exc:
            log.warning("member %s: merge hit %s; trying once more", code, type(exc).__name__)
            time.sleep(MERGE_RETRY_SECONDS)
            report = merge_batch(rt.store, rt.consortium, member, ext, val)
    except Exception as exc:  # noqa: BLE001 - that member's result; the others go on
        return _failed_merge(code, exc, log)
    log.info("member %s: merged %s, %d events, %d commands", code, report.merged,
             report.events, report.commands)
    return report


def _failed_merge(code: str, exc: Exception, log) -> str:
    reason = error_line(exc)
    log.error("member %s: merge failed: %s", code, reason)
    return reason


def error_line(exc: BaseException) -> str:
    """An exception as one line for a run summary (its first line, or its type)."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@task(name="push", task_run_name="push-{member_code}", cache_policy=NO_CACHE,
      retries=1, retry_delay_seconds=2, retry_condition_fn=transient)
def push_task(config: str, member_code: str) -> PushReport:
    rt = open_runtime(config)
    member = rt.consortium.member(member_code)
    with source_slots(member_code, SLOT_WAIT_SECONDS):
        report = push_member(rt.store, rt.consortium, member)
    log = get_run_logger()
    for err in report.errors:
        log.error(err)
    if report.held:
        log.info("member %s: write-back off, %d commands held (dry run)", member_code,
                 report.held)
    return report
