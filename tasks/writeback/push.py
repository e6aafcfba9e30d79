"""Push: apply pending outbox commands to the ILS of the member they are owed to.

Delivery is at least once: a claim counts the delivery before the ILS is touched, the
acknowledgement marks the command applied after the ILS commit, and a pusher that dies in
between leaves it pending for the next push (circhub.tasks.writeback.outbox). The effect is once,
because every
profile step is replay-safe: a loan row moved already is not there to move again, a transfer
row is inserted only if missing, and an item update carries the time of the state it sends
(Koha: `datelastseen`), leaving alone an item that shows something newer — so neither a
replay nor a late, older command can regress what the ILS shows.

Order: one member's commands are applied in queue order; a command that fails (or waits out
its backoff) holds back the later commands for the same item until it has gone through.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from circhub.connections.config import Consortium, Member
from circhub.connections.engines import ConnectionSetupError, member_engine
from circhub.connections.errors import is_permanent
from circhub.connections.holder_note import away_note, return_note
from circhub.connections.live_schema import column_renderer, column_types
from circhub.connections.profile import Profile, load_profile
from circhub.connections.step_sql import Binding
from circhub.tasks.writeback.explain import explain
from circhub.tasks.writeback.outbox import (
    DEAD,
    RetryPolicy,
    acknowledge,
    claim,
    mark_unsupported,
    pending_commands,
    record_failure,
    targets_with_pending,
)
from circhub.tasks.writeback.steps import StepFailed, StepOutcome, run_steps

__all__ = ["PushReport", "push_member", "pending_commands", "targets_with_pending"]

# Test-only pause between the ILS commit and the acknowledgement (see _pause_for_tests).
PAUSE_ENV = "CIRCHUB_TEST_PAUSE_AFTER_ILS_COMMIT"


@dataclass
class PushReport:
    member: str
    applied: int = 0
    failed: int = 0
    dead: int = 0
    held: int = 0  # write-back switched off: computed, shown, not applied
    waiting: int = 0  # in backoff after a failure, or behind a failed command of its item
    unsupported: int = 0
    unreachable: str | None = None  # the ILS could not be reached: nothing tried, none counted
    errors: list[str] = field(default_factory=list)
    dry_run: list[dict] = field(default_factory=list)  # what write-back would do, when off


def command_params(member: Member, payload: dict) -> dict:
    """The bound parameters of a command, in the target ILS's own branch codes."""
    params = dict(payload)
    params["holder_branch"] = member.branch_for_member(payload["holder"])
    # Which member holds it, in words its staff read where the branch cannot say (one
    # consortium branch for all the others); none when it is here.
    params["holder_note"] = None if payload["holder"] == member.code \
        else away_note(payload["holder"])
    params["holder_branches"] = member.holder_branches
    if payload.get("return_member"):
        params["return_branch"] = member.branch_for_member(payload["return_member"])
    if payload.get("owner"):
        params["owner_branch"] = member.branch_for_member(payload["owner"])
        params["owner_note"] = return_note(payload["owner"])
    for key in ("due_at", "returned_at", "state_at", "requested_at", "arrived_at"):
        if params.get(key):
            params[key] = datetime.fromisoformat(params[key])
    # Each value is bound in the type and precision of the column it meets (a DATE column
    # gets the due day): no hand-made variant of a parameter per column shape.
    params.update({f"$member.{name}": value
                   for name, value in member.profile_constants().items()})
    return params


def apply_command(engine: Engine, profile: Profile, member: Member, kind: str,
                  payload: dict) -> list[StepOutcome]:
    """All steps of one command in one ILS transaction, each verified (tasks.writeback.steps):
    a step that cannot do what it must raises StepFailed and the ILS keeps nothing of it."""
    with engine.begin() as conn:
        return apply_on(conn, profile, member, kind, payload)


def apply_on(conn: Connection, profile: Profile, member: Member, kind: str,
             payload: dict) -> list[StepOutcome]:
    """One command's steps on an open ILS transaction: the push commits it, `circhub check`
    rehearses it and rolls it back (circhub.tasks.onboarding.rehearse)."""
    # Column types read on this connection: the member's slot grants it one (live_schema).
    binding = Binding(command_params(member, payload), render=column_renderer(conn))

    def shared(step) -> list[str]:  # the columns both tables of a copy_row have
        dest = column_types(conn, step.into.dotted)
        return [c for c in column_types(conn, step.table.dotted) if c in dest]

    return run_steps(conn, profile.writeback[kind], binding, shared)


def push_member(store: Engine, consortium: Consortium, member: Member, *,
                now: datetime | None = None, rng: random.Random | None = None) -> PushReport:
    """Apply one member's pending commands. `now` and `rng` are the clock and the jitter."""
    report = PushReport(member.code)
    commands = pending_commands(store, member.code)
    profile = load_profile(member.profile)
    if not member.writeback:  # onboarding: computed and shown, never applied
        report.held = len(commands)
        report.dry_run = [describe(profile, cmd) for cmd in commands]
        return report
    if not commands:
        return report
    try:
        engine = _reachable(member)
    except (SQLAlchemyError, ConnectionSetupError) as exc:
        report.unreachable = f"member {member.code}: ILS unreachable, {len(commands)} " \
                             f"command(s) kept pending: {_cause(exc)}"
        report.errors.append(report.unreachable)
        return report
    pusher = _Pusher(store, engine, profile, member, RetryPolicy.of(consortium),
                     rng or random.Random(), report)
    for cmd in commands:
        if not pusher.push(cmd, now or datetime.now()):
            break
    return report


def _reachable(member: Member) -> Engine:
    """A member that does not answer keeps its commands pending without spending attempts."""
    engine = member_engine(member)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return engine


@dataclass
class _Pusher:
    store: Engine
    engine: Engine
    profile: Profile
    member: Member
    policy: RetryPolicy
    rng: random.Random
    report: PushReport
    blocked: set[str] = field(default_factory=set)  # items with a command not yet through

    def push(self, cmd, now: datetime) -> bool:
        """Deliver one command; False when the member went away and the rest must wait."""
        if cmd.barcode in self.blocked or (cmd.next_attempt_at and cmd.next_attempt_at > now):
            self.blocked.add(cmd.barcode)
            self.report.waiting += 1
            return True
        if cmd.kind not in self.profile.writeback:
            message = (f"write-back {cmd.kind!r} not supported by profile "
                       f"{self.profile.kind!r} (member {self.member.code})")
            mark_unsupported(self.store, cmd, message)
            self.report.unsupported += 1
            self.report.errors.append(f"{message}: {cmd.barcode}")
            return True
        if not claim(self.store, cmd, now):
            return True  # superseded (or taken) since it was read
        try:
            outcomes = apply_command(self.engine, self.profile, self.member, cmd.kind,
                                     cmd.payload)
        except (SQLAlchemyError, StepFailed) as exc:
            return self._failed(cmd, exc, now)
        _pause_for_tests(cmd.id)
        acknowledge(self.store, cmd, _outcome(outcomes), now)
        self.report.applied += 1
        return True

    def _failed(self, cmd, exc: SQLAlchemyError | StepFailed, now: datetime) -> bool:
        message = explain(self.member, self.profile, exc) if isinstance(exc, StepFailed) \
            else _cause(exc)
        status = record_failure(self.store, cmd, message, self.policy, now, self.rng,
                                permanent=is_permanent(exc))
        self.blocked.add(cmd.barcode)
        self.report.failed += 1
        self.report.dead += status == DEAD
        self.report.errors.append(f"member {cmd.target}: {cmd.kind} {cmd.barcode}: {message}")
        # A dropped connection means the member went away mid-push: stop, keep the rest.
        return not (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def _outcome(outcomes: list[StepOutcome]) -> str:
    steps = ", ".join(o.describe() for o in outcomes)
    if not any(o.changed for o in outcomes):
        return f"no row changed (applied before, or the ILS shows newer state): {steps}"
    return f"rows matched: {steps}"


def describe(profile: Profile, cmd) -> dict:
    """One command as an operator reads it (the dry run of a member with write-back off)."""
    steps = profile.writeback.get(cmd.kind)
    p = cmd.payload
    return {"id": cmd.id, "member": cmd.target, "kind": cmd.kind, "barcode": cmd.barcode,
            "holder": p.get("holder"), "due": p.get("due_at") or "",
            "loan": p.get("loan_local_id") or "",
            "steps": "; ".join(f"{s.op} {s.table.name}" for s in steps) if steps
            else f"not supported by profile {profile.kind!r}"}


def _cause(exc: Exception) -> str:
    """The driver's own message, first line only, without the SQL or its parameters."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).splitlines()[0] if str(orig) else ""
    return f"{type(orig).__name__}: {first}".strip()


def _pause_for_tests(command_id: int) -> None:
    """Test-only pause point between the ILS commit and the acknowledgement.

    With CIRCHUB_TEST_PAUSE_AFTER_ILS_COMMIT=<folder> the pusher touches
    <folder>/paused-<command id> and waits until <folder>/resume exists (at most two minutes),
    so a test can SIGKILL it, or cut its central-store connections, at the one moment where
    the ILS has a command the outbox does not know is applied. Never set in production.
    """
    folder = os.environ.get(PAUSE_ENV)
    if not folder:
        return
    (Path(folder) / f"paused-{command_id}").touch()
    deadline = time.monotonic() + 120
    while not (Path(folder) / "resume").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
