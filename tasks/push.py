"""Push: apply pending outbox commands to the ILS of the member they are owed to.

Delivery is at least once (a crash after the ILS commit but before the outbox is marked
replays the command); the effect is once, because every profile step is idempotent (a loan
row moved already is not there to move again; an update sets the same values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache

from sqlalchemy import Engine, inspect, select, update
from sqlalchemy.exc import SQLAlchemyError

from connections.config import Consortium, Member
from connections.engines import member_engine
from connections.profile import Profile, load_profile
from connections.sql import step_statement
from domain.schema import loans, outbox

MAX_ATTEMPTS = 5


@dataclass
class PushReport:
    member: str
    applied: int = 0
    failed: int = 0
    dead: int = 0
    held: int = 0  # write-back switched off: computed, shown, not applied
    errors: list[str] = field(default_factory=list)


def pending_commands(store: Engine, target: str) -> list:
    with store.connect() as conn:
        return conn.execute(
            select(outbox).where(outbox.c.target == target, outbox.c.status == "pending")
            .order_by(outbox.c.id)
        ).all()


def targets_with_pending(store: Engine) -> list[str]:
    with store.connect() as conn:
        return sorted(conn.execute(
            select(outbox.c.target).where(outbox.c.status == "pending").distinct()).scalars())


def command_params(member: Member, payload: dict) -> dict:
    """The bound parameters of a command, in the target ILS's own branch codes."""
    params = dict(payload)
    params["holder_branch"] = member.branch_for_member(payload["holder"])
    if payload.get("return_member"):
        params["return_branch"] = member.branch_for_member(payload["return_member"])
    for key in ("due_at", "returned_at", "state_at"):
        if params.get(key):
            params[key] = datetime.fromisoformat(params[key])
    # ILS kinds that keep a due *date* on the item (Koha's items.onloan) bind this one.
    params["due_date"] = params["due_at"].date() if params.get("due_at") else None
    return params


@cache
def _columns(engine: Engine, dotted: str) -> tuple[str, ...]:
    schema, _, name = dotted.rpartition(".")
    return tuple(c["name"] for c in inspect(engine).get_columns(name, schema=schema or None))


def apply_command(engine: Engine, profile: Profile, member: Member, kind: str,
                  payload: dict) -> None:
    """All steps of one command in one ILS transaction."""
    params = command_params(member, payload)
    with engine.begin() as conn:
        for step in profile.writeback[kind]:
            shared = None
            if step.op == "copy_row":
                dest = set(_columns(engine, step.into.dotted))
                shared = [c for c in _columns(engine, step.table.dotted) if c in dest]
            conn.execute(step_statement(step, params, shared))


def push_member(store: Engine, consortium: Consortium, member: Member,
                max_attempts: int = MAX_ATTEMPTS) -> PushReport:
    report = PushReport(member.code)
    commands = pending_commands(store, member.code)
    if not member.writeback:
        report.held = len(commands)
        return report
    profile = load_profile(member.profile)
    engine = member_engine(member)
    for cmd in commands:
        try:
            apply_command(engine, profile, member, cmd.kind, cmd.payload)
        except SQLAlchemyError as exc:
            _record_failure(store, cmd, exc, max_attempts, report)
            break  # later commands may concern the same item: never apply them out of order
        _acknowledge(store, cmd)
        report.applied += 1
    return report


def _acknowledge(store: Engine, cmd) -> None:
    """Mark the command applied; remember a written return time so its echo is recognised."""
    with store.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == cmd.id).values(
            status="applied", applied_at=datetime.now(), attempts=cmd.attempts + 1))
        if cmd.kind == "close_loan":
            conn.execute(update(loans).where(
                loans.c.member == cmd.target, loans.c.local_id == cmd.payload["loan_local_id"],
            ).values(pushed_returned_at=datetime.fromisoformat(cmd.payload["returned_at"])))


def _record_failure(store: Engine, cmd, exc: SQLAlchemyError, max_attempts: int,
                    report: PushReport) -> None:
    orig = getattr(exc, "orig", None) or exc
    message = f"{type(orig).__name__}: {str(orig).splitlines()[0] if str(orig) else ''}"
    attempts = cmd.attempts + 1
    status = "dead" if attempts >= max_attempts else "pending"
    with store.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == cmd.id).values(
            attempts=attempts, last_error=message, status=status))
    report.failed += 1
    report.dead += status == "dead"
    report.errors.append(f"member {cmd.target}: {cmd.kind} {cmd.barcode}: {message}")
