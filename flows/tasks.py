"""Prefect's part of a cycle: the `Runner` that makes the composition's stages task runs.

`circhub.tasks.sync.cycle.run_cycle` composes the stages; this runner only decides how each is
run: a task per member for the stages that open the member's database (extract, push), taken
under that member's slot and a source connection (`flows.slots`) and retried once when the
error may go away by itself; one task for validation and one for the merges of all members (a
task run costs Prefect ~40 ms of bookkeeping on this machine's two cores, which 251 members
would pay three times a cycle for nothing). A task that fails comes back to the composition as
a `Failed` value with its one-line cause.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import httpx
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.exc import OperationalError

from circhub.connections.errors import is_transient
from circhub.connections.runtime import Runtime
from circhub.flows.naming import tagged
from circhub.flows.slots import source_slots
from circhub.tasks.sync.cycle import (
    MEMBER_DATABASE_STAGES,
    Failed,
    MemberOutcome,
    error_line,
    failure,
)
from circhub.tasks.sync.extract import Extract, SourceUnavailable
from circhub.tasks.sync.merge import MergeReport
from circhub.tasks.sync.validate import BatchRejected, Validated
from circhub.tasks.writeback.push import PushReport

T = TypeVar("T")


def transient(task, task_run, state) -> bool:
    """Retry only what may go away by itself: a source that did not answer, a lost connection,
    a lock wait (the driver's error code says: `connections.errors`). Never bad data, a refused
    login or a missing table or column: they fail at once with their cause."""
    try:
        state.result()
    except SourceUnavailable as exc:
        return exc.transient
    except OperationalError as exc:
        return is_transient(exc)
    except Exception as exc:  # noqa: BLE001 - anything else is not worth a retry...
        return server_busy(exc)  # ...but a Prefect API that shed load for a moment is
    return False


def server_busy(exc: BaseException) -> bool:
    """An API call the Prefect server refused for load (503, 429), anywhere in the causes:
    Prefect's slot acquisition for tagged task runs raises its own error from httpx's."""
    seen = exc
    while seen is not None:
        if isinstance(seen, httpx.HTTPStatusError) and seen.response.status_code in (429, 503):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@task(name="member-stage", task_run_name="{stage}-{code}", cache_policy=NO_CACHE,
      retries=1, retry_delay_seconds=2, retry_condition_fn=transient)
def member_stage_task(stage: str, code: str, fn: Callable[[str], T]) -> T:
    """One member's stage; where it opens the member's database, under its slots."""
    if stage not in MEMBER_DATABASE_STAGES:
        return fn(code)
    with source_slots(code):
        result = fn(code)
    _log_member_result(code, result)
    return result


def _whole_run_name() -> str:
    from prefect.runtime import task_run

    stage, codes = task_run.parameters["stage"], task_run.parameters["codes"]
    return f"{stage}-{codes[0]}" if len(codes) == 1 else f"{stage}-{len(codes)}-members"


@task(name="stage", task_run_name=_whole_run_name, cache_policy=NO_CACHE)
def whole_stage_task(stage: str, codes: list[str], fn: Callable[[], T]) -> T:
    """A stage run once for many members (validation, the merges)."""
    result = fn()
    if isinstance(result, dict):
        _log_stage_results(stage, result)
    return result


_member_tasks: dict[str, object] = {}


def _member_task(stage: str):
    """The member-stage task under the stage's own name (`extract`, `push`): the UI filters
    task runs by it."""
    if stage not in _member_tasks:
        _member_tasks[stage] = member_stage_task.with_options(name=stage)
    return _member_tasks[stage]


class PrefectRunner:
    """Runs the cycle's stages as Prefect task runs of the flow run it is created in."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        quiet_expected_failures()

    def per_member(self, stage: str, fn: Callable[[str], T],
                   codes: Sequence[str]) -> dict[str, T | Failed]:
        futures = {}
        for code in codes:
            with tagged(self.rt, code):
                futures[code] = _member_task(stage).submit(stage, code, fn)
        return {code: _value(stage, fut) for code, fut in futures.items()}

    def whole(self, stage: str, fn: Callable[[], T], codes: Sequence[str]) -> T | Failed:
        got = _value(stage, whole_stage_task.with_options(name=stage).submit(stage, list(codes),
                                                                             fn))
        if isinstance(got, dict):
            _show_member_failures(self.rt, stage, got)
        return got


def _show_member_failures(rt: Runtime, stage: str, results: dict) -> None:
    """A member failing inside a stage run once for many (its batch refused at validation, its
    merge failed) gets a red task run of its own, `validate-CD001`, with its one-line cause:
    the timeline shows each failed member, whichever stage it failed at (a task run only for
    the failed ones: ~10 ms each)."""
    futures = []
    for code, value in results.items():
        if isinstance(value, Failed):
            with tagged(rt, code):
                futures.append(_failure_task(stage).submit(stage, code, value.cause))
    for fut in futures:
        fut.wait()


@task(name="member-failed", task_run_name="{stage}-{code}", cache_policy=NO_CACHE)
def member_failed_task(stage: str, code: str, cause: str) -> None:
    raise MemberStageFailed(cause)


class MemberStageFailed(RuntimeError):
    """One member's part of a stage run for many failed; the message is its cause."""


_failure_tasks: dict[str, object] = {}


def _failure_task(stage: str):
    if stage not in _failure_tasks:
        _failure_tasks[stage] = member_failed_task.with_options(name=stage)
    return _failure_tasks[stage]


def _value(stage: str, future):
    state = future.wait() or future.state
    try:
        return state.result()
    except Exception as exc:  # noqa: BLE001 - the composition gets the cause as a value
        return failure(stage, exc)


# -- an expected failure logs one line, not a traceback -----------------------------------------
EXPECTED = (SourceUnavailable, BatchRejected, MemberStageFailed)


class _OneLineForExpected(logging.Filter):
    """Prefect logs a failed task run's exception with its traceback. A member that did not
    answer or whose batch was refused is an expected condition of a 250-member consortium:
    its line ("Task run failed with exception: SourceUnavailable('member CD001: cannot read
    ...')") names the member and the cause, and a traceback would only bury it."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        if isinstance(exc, EXPECTED):
            record.exc_info, record.exc_text = None, None
        return True


_ONE_LINE = _OneLineForExpected()


def quiet_expected_failures() -> None:
    """Installed on Prefect's task-run logger (idempotent: a logger keeps one of each)."""
    logging.getLogger("prefect.task_runs").addFilter(_ONE_LINE)


# -- what the task runs log (masked values only; the quarantine table keeps every row) ----------
def _log_member_result(code: str, result) -> None:
    log = get_run_logger()
    if isinstance(result, Extract):
        log.info("member %s: extracted %s", code, result.counts())
        for entity in result.catching_up:
            log.info("member %s: %s is a slice of a larger delta (max_delta_rows); the next "
                     "sync reads on from where it ended", code, entity)
    elif isinstance(result, PushReport):
        for err in result.errors:
            log.error(err)
        if result.held:
            log.info("member %s: write-back off, %d commands held (dry run)", code, result.held)


def _log_stage_results(stage: str, results: dict) -> None:
    log = get_run_logger()
    bad = [(code, b) for code, v in results.items() if isinstance(v, Validated) for b in v.bad]
    for code, b in bad[:20]:
        log.warning("member %s: %s row %s quarantined: %s", code, b.entity, b.row_key,
                    ", ".join(b.rules))
    if len(bad) > 20:
        log.warning("%d more rows quarantined", len(bad) - 20)
    for code, v in results.items():
        if isinstance(v, Failed):
            log.error("member %s: %s failed: %s", code, stage, v.cause)
        elif isinstance(v, MergeReport):
            log.info("member %s: merged %s, %d events, %d commands", code, v.merged, v.events,
                     v.commands)


__all__ = ["PrefectRunner", "MemberOutcome", "error_line", "transient", "server_busy"]
