"""One sync cycle, composed once: extract each member, validate them all, merge each in member
order, then push what is pending.

The composition is plain code over plain stage functions, and every caller runs this same one:
the Prefect flows, the CLI (through the flows), the tests and the benchmark. Who runs a stage
is a `Runner`. `PlainRunner` calls it here and now; the flows pass `flows.tasks.PrefectRunner`,
which makes each member's extract and push a Prefect task (with that member's database slot and
retries of transient errors) and validation and merge one task each. Prefect adds tasks, slots,
retries and artifacts around the composition, never a step of its own.

A member's failure is a value (`Failed`, with the stage and a one-line cause), never a string
or an exception crossing stages: one member failing at any stage fails alone, by name, and the
others go on. `sync_runs` bookkeeping is written here and nowhere else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy import insert, update
from sqlalchemy.exc import OperationalError

from circhub.connections.config import Member
from circhub.connections.errors import is_transient
from circhub.connections.holds import holding
from circhub.connections.runtime import Runtime
from circhub.domain.schema import sync_runs
from circhub.tasks.sync.extract import Extract, SourceUnavailable, extract_member
from circhub.tasks.sync.merge import MergeReport, hash_good_rows, merge_batch
from circhub.tasks.sync.pauses import without_paused
from circhub.tasks.sync.validate import BatchRejected, Validated, validate_members
from circhub.tasks.writeback.push import PushReport, push_member, targets_with_pending

T = TypeVar("T")
EXTRACT, VALIDATE, MERGE, PUSH = "extract", "validate", "merge", "push"
# Stages that open a connection to the member's own database (the Prefect runner takes the
# member's slot and a source connection around them; without them the database stays shut).
MEMBER_DATABASE_STAGES = frozenset({EXTRACT, PUSH})
# A merge that hits a transient central-store error (a deadlock, a dropped connection) is
# tried once more after this many seconds.
MERGE_RETRY_SECONDS = 2.0

UNREACHABLE, REFUSED, ERROR = "unreachable", "refused", "error"


@dataclass(frozen=True)
class Failed:
    """One member's failure at one stage. `cause` is one line that names the member."""

    stage: str
    cause: str
    kind: str = ERROR  # unreachable (its ILS did not answer) | refused (batch) | error


def failure(stage: str, exc: BaseException) -> Failed:
    kind = (UNREACHABLE if isinstance(exc, SourceUnavailable)
            else REFUSED if isinstance(exc, BatchRejected) else ERROR)
    return Failed(stage, error_line(exc), kind)


def error_line(exc: BaseException) -> str:
    """An exception as one line for a run summary (its first line, or its type)."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@dataclass
class MemberOutcome:
    """What one cycle did for one member, stage by stage, or where it stopped."""

    member: str
    extract: Extract | None = None
    validated: Validated | None = None
    merged: MergeReport | None = None
    pushed: PushReport | None = None
    failure: Failed | None = None
    push_failure: Failed | None = None  # the push is owed to the ILS, not part of the sync

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def status(self) -> str:
        return "ok" if self.ok else "failed"

    @property
    def catching_up(self) -> tuple[str, ...]:
        """Entities read as a slice of a larger delta; the next cycles go on with them."""
        return self.extract.catching_up if self.extract else ()

    def error(self) -> str | None:
        if self.failure:
            return self.failure.cause
        if self.push_failure:
            return self.push_failure.cause
        return self.pushed.errors[0] if self.pushed and self.pushed.errors else None

    def counts(self) -> dict:
        """What `sync_runs.counts` keeps of a successful sync."""
        return {"extracted": self.extract.counts() if self.extract else {},
                "quarantined": self.merged.quarantined if self.merged else 0,
                "released": self.merged.released if self.merged else 0,
                "merged": self.merged.merged if self.merged else {},
                "events": self.merged.events if self.merged else 0,
                "commands": self.merged.commands if self.merged else 0}


class Runner(Protocol):
    """Who runs the stages. Either way a failure comes back as a `Failed` value."""

    def per_member(self, stage: str, fn: Callable[[str], T],
                   codes: Sequence[str]) -> dict[str, T | Failed]: ...

    def whole(self, stage: str, fn: Callable[[], T], codes: Sequence[str]) -> T | Failed: ...


class PlainRunner:
    """Every stage called in this process, one member after the other: one member's database
    open at a time, so it holds each member (`connections.holds`) with no Prefect limit."""

    def per_member(self, stage: str, fn: Callable[[str], T],
                   codes: Sequence[str]) -> dict[str, T | Failed]:
        results: dict[str, T | Failed] = {}
        for code in codes:
            try:
                with holding(code):
                    results[code] = fn(code)
            except Exception as exc:  # noqa: BLE001 - that member's result; the others go on
                results[code] = failure(stage, exc)
        return results

    def whole(self, stage: str, fn: Callable[[], T], codes: Sequence[str]) -> T | Failed:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - every member of the stage fails with it
            return failure(stage, exc)


PLAIN = PlainRunner()


# -- the stages, as the composition calls them --------------------------------------------------
def extract_stage(rt: Runtime, code: str) -> Extract:
    return extract_member(rt.consortium, rt.consortium.member(code), rt.store, rt.id_key)


def validate_stage(rt: Runtime, extracts: dict[str, Extract],
                   run_label: str | None = None) -> dict[str, Validated | Failed]:
    """Every extracted member in one Great Expectations run per entity; then every member's
    good rows get their content hash, in one call per entity for all of them. `run_label`
    names the cycle's validation runs in the Data Docs, beside each member's code."""
    views = {code: rt.member_view(rt.consortium.member(code)) for code in extracts}
    checked = validate_members({code: ext.frames for code, ext in extracts.items()}, views,
                               rt.consortium.max_bad_share, run_label=run_label)
    hash_good_rows(v for v in checked.values() if isinstance(v, Validated))
    return {code: v if isinstance(v, Validated) else failure(VALIDATE, v)
            for code, v in checked.items()}


def merge_stage(rt: Runtime, batches: dict[str, tuple[Extract, Validated]],
                ) -> dict[str, MergeReport | Failed]:
    """Each member's merge in its own central transaction, in the order given: a cycle's
    outcome does not depend on thread timing."""
    return {code: _merge_one(rt, code, ext, val) for code, (ext, val) in batches.items()}


def _merge_one(rt: Runtime, code: str, ext: Extract, val: Validated) -> MergeReport | Failed:
    member = rt.consortium.member(code)
    try:
        try:
            return merge_batch(rt.store, rt.consortium, member, ext, val)
        except OperationalError as exc:  # a deadlock, a dropped connection: once more
            if not is_transient(exc):
                raise
            time.sleep(MERGE_RETRY_SECONDS)
            return merge_batch(rt.store, rt.consortium, member, ext, val)
    except Exception as exc:  # noqa: BLE001 - that member's result; the others go on
        return failure(MERGE, exc)


def push_stage(rt: Runtime, code: str) -> PushReport:
    return push_member(rt.store, rt.consortium, rt.consortium.member(code))


# -- the composition --------------------------------------------------------------------------
def run_cycle(rt: Runtime, codes: Sequence[str], runner: Runner = PLAIN, *,
              push: bool = True, run_label: str | None = None) -> dict[str, MemberOutcome]:
    """Extract, validate and merge the members named, then (with `push`) push every member
    owed write-backs. Returns each member's outcome; never raises for one member's failure.
    `run_label` (a flow passes its run's name) names the validation runs with each member;
    without it they are named by member alone, a bounded set for a process that never
    publishes its Data Docs (a benchmark, a test)."""
    outcomes = {code: MemberOutcome(code) for code in codes}
    runs = {code: _start_run(rt, code) for code in codes}
    try:
        _sync(rt, codes, runner, outcomes, run_label)
    finally:
        for code, out in outcomes.items():
            _finish_run(rt, runs[code], out)
    if push:
        run_push(rt, runner, outcomes)
    return outcomes


def _sync(rt: Runtime, codes: Sequence[str], runner: Runner,
          outcomes: dict[str, MemberOutcome], run_label: str | None) -> None:
    extracts = {}
    for code, got in runner.per_member(EXTRACT, lambda c: extract_stage(rt, c), codes).items():
        if isinstance(got, Failed):
            outcomes[code].failure = got
        else:
            outcomes[code].extract = extracts[code] = got
    if not extracts:
        return
    checked = runner.whole(VALIDATE, lambda: validate_stage(rt, extracts, run_label),
                           list(extracts))
    batches = {}
    for code in extracts:
        got = checked if isinstance(checked, Failed) else checked[code]
        if isinstance(got, Failed):
            outcomes[code].failure = got
        else:
            outcomes[code].validated = got
            batches[code] = (extracts[code], got)
    if not batches:
        return
    merged = runner.whole(MERGE, lambda: merge_stage(rt, batches), list(batches))
    for code in batches:
        got = merged if isinstance(merged, Failed) else merged[code]
        if isinstance(got, Failed):
            outcomes[code].failure = got
        else:
            outcomes[code].merged = got


def run_push(rt: Runtime, runner: Runner = PLAIN,
             outcomes: dict[str, MemberOutcome] | None = None,
             targets: Sequence[str] | None = None) -> dict[str, MemberOutcome]:
    """Push every member owed write-backs (or the `targets` named); their reports join
    `outcomes` (a member pushed to but not synced gets an outcome of its own)."""
    outcomes = {} if outcomes is None else outcomes
    targets = list(targets) if targets is not None else targets_with_pending(rt.store)
    targets, _ = without_paused(rt.store, targets)  # a paused member's commands wait
    for code, got in runner.per_member(PUSH, lambda c: push_stage(rt, c), targets).items():
        out = outcomes.setdefault(code, MemberOutcome(code))
        if isinstance(got, Failed):
            out.push_failure = got
        else:
            out.pushed = got
    return outcomes


# -- sync_runs: one row per member and cycle ---------------------------------------------------
def _start_run(rt: Runtime, member: str) -> int:
    with rt.store.begin() as conn:
        res = conn.execute(insert(sync_runs).values(
            member=member, started_at=datetime.now(), status="running"))
        return res.inserted_primary_key[0]


def _finish_run(rt: Runtime, run_id: int, out: MemberOutcome) -> None:
    with rt.store.begin() as conn:
        conn.execute(update(sync_runs).where(sync_runs.c.id == run_id).values(
            finished_at=datetime.now(), status=out.status,
            counts=out.counts() if out.ok else None,
            error=out.failure.cause if out.failure else None))


class MemberFailed(RuntimeError):
    """One member's sync failed (raised by `sync_member`, the one-member convenience)."""

    def __init__(self, outcome: MemberOutcome):
        super().__init__(outcome.failure.cause)
        self.outcome = outcome


def sync_member(rt: Runtime, member: Member) -> MemberOutcome:
    """One member's extract, validate and merge through `run_cycle`, without pushing; its
    failure raised as `MemberFailed` (tests and scripts that sync one member at a time)."""
    outcome = run_cycle(rt, [member.code], push=False)[member.code]
    if outcome.failure:
        raise MemberFailed(outcome)
    return outcome
