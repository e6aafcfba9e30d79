"""Prefect's part of a cycle: the `Runner` that makes the composition's stages task runs.

`circhub.tasks.sync.cycle.run_cycle` composes the stages; this runner only decides how each is
run. The stages that open members' databases (extract, push) run as a task per group of
members: the group's own slots and one source connection taken in one acquisition
(`flows.slots.members_slots`), its members worked on one after the other, each under its own
hold. A task run costs Prefect ~40 ms of bookkeeping (client and server, on this machine's
two cores): 251 members in 251 task runs paid ~10 s a stage for it, and in groups of eight
(at most `GROUPS_PER_WORKER` groups per worker thread) ~1 s. A small consortium keeps a task
run per member, named after it (`extract-CD001`); in a larger one, a member that fails inside
its group gets a red task run of its own with that name and its one-line cause. Validation
and the merges are one task each. An error that may go away by itself is tried once more,
after `RETRY_SECONDS`: by Prefect for a task run of one member, by the group's task for one of
its members. A failure comes back to the composition as a `Failed` value.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import httpx
from prefect import get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.exc import OperationalError

from circhub.connections.errors import is_transient
from circhub.connections.runtime import Runtime
from circhub.flows.naming import member_tags, tagged
from circhub.flows.slots import members_slots
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
    """Prefect's retry condition: the failed run's error is `worth_retrying`."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - judged by worth_retrying
        return worth_retrying(exc)
    return False


def worth_retrying(exc: BaseException) -> bool:
    """Retry only what may go away by itself: a source that did not answer, a lost connection,
    a lock wait (the driver's error code says: `connections.errors`), a Prefect API that shed
    load for a moment. Never bad data, a refused login or a missing table or column: they fail
    at once with their cause."""
    if isinstance(exc, SourceUnavailable):
        return exc.transient
    if isinstance(exc, OperationalError):
        return is_transient(exc)
    return server_busy(exc)


def server_busy(exc: BaseException) -> bool:
    """An API call the Prefect server refused for load (503, 429), anywhere in the causes:
    Prefect's slot acquisition for tagged task runs raises its own error from httpx's."""
    seen = exc
    while seen is not None:
        if isinstance(seen, httpx.HTTPStatusError) and seen.response.status_code in (429, 503):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


RETRY_SECONDS = 2
WORKERS = 8  # the sync and push flows' ThreadPoolTaskRunner(max_workers=8)
GROUPS_PER_WORKER = 4  # enough groups that one slow member does not leave the others idle
MOST_GROUPS = WORKERS * GROUPS_PER_WORKER


def member_groups(codes: Sequence[str]) -> list[list[str]]:
    """The members in consecutive groups, at most MOST_GROUPS of them: one member a group while
    they are few."""
    size = max(1, math.ceil(len(codes) / MOST_GROUPS))
    return [list(codes[i:i + size]) for i in range(0, len(codes), size)]


def _group_run_name() -> str:
    from prefect.runtime import task_run

    stage, codes = task_run.parameters["stage"], task_run.parameters["codes"]
    return f"{stage}-{codes[0]}" if len(codes) == 1 \
        else f"{stage}-{codes[0]}-and-{len(codes) - 1}-more"


@task(name="member-stage", task_run_name=_group_run_name, cache_policy=NO_CACHE,
      retries=1, retry_delay_seconds=RETRY_SECONDS, retry_condition_fn=transient)
def member_stage_task(stage: str, codes: list[str], fn: Callable[[str], T]) -> dict:
    """A group's stage on its members' databases, one member after the other. A group of one
    raises its member's error (the task run is that member's: red, and retried by Prefect
    when the error may pass); a larger group returns each member's failure as a value."""
    on_databases = stage in MEMBER_DATABASE_STAGES
    with members_slots(codes) if on_databases else nullcontext(_unheld) as hold:
        if len(codes) == 1:
            return {codes[0]: _attempt(codes[0], fn, hold)}
        return {code: _member_in_group(stage, code, fn, hold) for code in codes}


def _unheld(code: str) -> AbstractContextManager:
    return nullcontext()  # a stage that opens no member database holds none


def _member_in_group(stage: str, code: str, fn: Callable[[str], T],
                     hold: Callable[[str], AbstractContextManager]) -> T | Failed:
    """One member of a group, under its own hold; an error that may pass is tried once more."""
    try:
        return _attempt(code, fn, hold)
    except Exception as exc:  # noqa: BLE001 - that member's result; the group goes on
        if not worth_retrying(exc):
            return failure(stage, exc)
        get_run_logger().warning("member %s: %s failed, trying once more in %d s: %s",
                                 code, stage, RETRY_SECONDS, error_line(exc))
    time.sleep(RETRY_SECONDS)
    try:
        return _attempt(code, fn, hold)
    except Exception as exc:  # noqa: BLE001 - as above
        return failure(stage, exc)


def _attempt(code: str, fn: Callable[[str], T],
             hold: Callable[[str], AbstractContextManager]) -> T:
    with hold(code):
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
        for group in member_groups(codes):
            with tags(*self._tags(group)):
                futures[tuple(group)] = _member_task(stage).submit(stage, group, fn)
        results: dict[str, T | Failed] = {}
        for group, future in futures.items():
            got = _value(stage, future)
            results.update(dict.fromkeys(group, got) if isinstance(got, Failed) else got)
        grouped = {c: results[c] for group in futures if len(group) > 1 for c in group}
        _show_member_failures(self.rt, stage, grouped)
        return results

    def _tags(self, group: Sequence[str]) -> list[str]:
        """The group's members' tags (shared by many: `flows.naming`)."""
        found = {t: None for c in group for t in member_tags(self.rt.consortium.member(c))}
        return list(found)

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
