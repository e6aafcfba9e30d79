"""The outbox: write-back commands owed to member ILS, and every change of their status.

    pending ──claim, apply at the ILS, acknowledge──▶ applied
       │ ▲    a failure: back to pending, not tried again before next_attempt_at;
       │ │    the last allowed attempt failing: dead (with its last error)
       │ └──── retry (an operator) ◀── dead
       ├─ the profile has no steps for the kind ─▶ unsupported
       └─ a merge found the item moved on ─▶ superseded (queued again if wanted again)
    dead | unsupported ──resolve (fixed by hand)──▶ resolved

A claim counts the delivery before the ILS is touched, so `attempts` is the number of
deliveries begun; a pusher killed after the ILS commit leaves the command pending, and the next
push delivers it again. The profile's steps make that second delivery change nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, select, update

from circhub.connections.config import Consortium
from circhub.connections.store import one_of, upsert_insert
from circhub.domain.circulation import Command
from circhub.domain.schema import loans, outbox

PENDING, APPLIED, SUPERSEDED = "pending", "applied", "superseded"
DEAD, RESOLVED, UNSUPPORTED = "dead", "resolved", "unsupported"
STATUSES = (PENDING, APPLIED, SUPERSEDED, DEAD, RESOLVED, UNSUPPORTED)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_seconds: float = 30.0
    cap_seconds: float = 3600.0

    @classmethod
    def of(cls, consortium: Consortium) -> RetryPolicy:
        return cls(consortium.writeback_max_attempts, consortium.writeback_backoff_seconds,
                   consortium.writeback_backoff_cap_seconds)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with 'equal jitter': half fixed, half random, so the members'
        retries spread out instead of arriving together after an outage."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** max(attempt - 1, 0))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


# -- written by the merge, inside its transaction ---------------------------------------------
def queue_commands(conn: Connection, commands: dict[str, list[Command]], now: datetime) -> int:
    """For each replayed item (barcode -> the commands its new state asks for): queue those
    commands, and supersede the pending ones it no longer asks for. A few statements for the
    whole replay, not a few per item: a sync replays ~20 items per member. Returns how many
    commands were queued (new, or wanted again after being superseded)."""
    wanted = {(c.target, c.command_key) for cmds in commands.values() for c in cmds}
    _supersede_stale(conn, list(commands), wanted)
    rows = [dict(target=c.target, command_key=c.command_key, kind=c.kind, barcode=c.barcode,
                 payload=c.payload, status=PENDING, attempts=0, created_at=now)
            for cmds in commands.values() for c in cmds]
    if not rows:  # items that now ask for nothing: their stale commands were all it took
        return 0
    # One row per command, in the order given: outbox ids keep the order an item's states were
    # reached, which the push follows.
    stmt = upsert_insert(conn, outbox)
    # Superseded while held back (an exception), wanted again once released.
    stmt = stmt.on_conflict_do_update(
        index_elements=["target", "command_key"],
        set_={"status": PENDING, "next_attempt_at": None},
        where=outbox.c.status == SUPERSEDED).returning(outbox.c.id)
    return len(conn.execute(stmt.values(rows)).all())  # rowcount is -1 here on psycopg


def _supersede_stale(conn: Connection, barcodes: list[str], wanted: set[tuple[str, str]]) -> None:
    """Pending commands for these items that their new state no longer asks for are out of
    date: applying them later would regress newer state (the item moved on meanwhile)."""
    q = select(outbox.c.id, outbox.c.target, outbox.c.command_key).where(
        one_of(outbox.c.barcode, barcodes), outbox.c.status == PENDING)
    stale = [r.id for r in conn.execute(q) if (r.target, r.command_key) not in wanted]
    if stale:
        conn.execute(update(outbox).where(outbox.c.id.in_(stale)).values(status=SUPERSEDED))


# -- the push ---------------------------------------------------------------------------------
def pending_commands(store: Engine, target: str) -> list:
    """In queue order: for one item, the order its states were reached."""
    with store.connect() as conn:
        return conn.execute(
            select(outbox).where(outbox.c.target == target, outbox.c.status == PENDING)
            .order_by(outbox.c.id)).all()


def targets_with_pending(store: Engine) -> list[str]:
    with store.connect() as conn:
        return sorted(conn.execute(
            select(outbox.c.target).where(outbox.c.status == PENDING).distinct()).scalars())


def claim(store: Engine, cmd, now: datetime) -> bool:
    """Count the delivery and note the return time about to be written (so its echo is known
    even if the pusher dies before the acknowledgement). False: no longer pending."""
    with store.begin() as conn:
        res = conn.execute(update(outbox).where(
            outbox.c.id == cmd.id, outbox.c.status == PENDING,
        ).values(attempts=outbox.c.attempts + 1))
        if not res.rowcount:
            return False
        if cmd.kind == "close_loan":
            conn.execute(update(loans).where(
                loans.c.member == cmd.target, loans.c.local_id == cmd.payload["loan_local_id"],
            ).values(pushed_returned_at=datetime.fromisoformat(cmd.payload["returned_at"])))
    return True


def acknowledge(store: Engine, cmd, outcome: str, now: datetime) -> None:
    # Applied even if a merge superseded it meanwhile: the ILS has it, the record must say so.
    # An error of an earlier attempt no longer stands: an applied command shows none.
    _set(store, cmd.id, status=APPLIED, applied_at=now, outcome=outcome, next_attempt_at=None,
         last_error=None)


def record_failure(store: Engine, cmd, message: str, policy: RetryPolicy, now: datetime,
                   rng: random.Random, *, permanent: bool) -> str:
    """A failed delivery: tried again later with backoff, or dead-lettered when its attempts
    are spent or the error is `permanent` (a refused login, a missing table or column, a
    constraint: it comes back every time, so retrying only hides it)."""
    attempts = cmd.attempts + 1  # the claim counted this delivery
    if permanent or attempts >= policy.max_attempts:
        why = ("dead at once: the error does not go away by retrying" if permanent
               else f"dead after {attempts} attempts")
        _set(store, cmd.id, status=DEAD, last_error=message, next_attempt_at=None,
             outcome=why)
        return DEAD
    wait = timedelta(seconds=policy.delay(attempts, rng))
    _set(store, cmd.id, last_error=message, next_attempt_at=now + wait,
         outcome=f"attempt {attempts} failed; next not before {now + wait:%Y-%m-%d %H:%M:%S}")
    return PENDING


def mark_unsupported(store: Engine, cmd, message: str) -> None:
    _set(store, cmd.id, status=UNSUPPORTED, outcome=message, last_error=message)


def _set(store: Engine, command_id: int, **values) -> None:
    with store.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == command_id).values(**values))


# -- operators --------------------------------------------------------------------------------
def list_commands(store: Engine, status: str | None = PENDING, member: str | None = None,
                  limit: int = 50) -> list:
    q = select(outbox).order_by(outbox.c.id).limit(limit)
    if status:
        q = q.where(outbox.c.status == status)
    if member:
        q = q.where(outbox.c.target == member)
    with store.connect() as conn:
        return conn.execute(q).all()


def existing_ids(store: Engine, ids: Iterable[int]) -> set[int]:
    """The ids among `ids` that name a command (whatever its status)."""
    ids = list(ids)
    if not ids:
        return set()
    with store.connect() as conn:
        return set(conn.execute(select(outbox.c.id).where(outbox.c.id.in_(ids))).scalars())


def retry_commands(store: Engine, ids: Iterable[int] = (), member: str | None = None,
                   now: datetime | None = None) -> int:
    """Dead or unsupported commands back to pending, with a fresh attempt budget."""
    now = now or datetime.now()
    return _operate(store, ids, member, (DEAD, UNSUPPORTED), status=PENDING, attempts=0,
                    next_attempt_at=None, outcome=f"retried by an operator at {now:%Y-%m-%d %H:%M}")


def resolve_commands(store: Engine, ids: Iterable[int], note: str,
                     now: datetime | None = None) -> int:
    """Dead or unsupported commands settled by hand at the ILS: never applied by the hub."""
    now = now or datetime.now()
    return _operate(store, ids, None, (DEAD, UNSUPPORTED), status=RESOLVED,
                    next_attempt_at=None, outcome=f"resolved {now:%Y-%m-%d %H:%M}: {note}")


def _operate(store: Engine, ids: Iterable[int], member: str | None, from_statuses: tuple,
             **values) -> int:
    ids = list(ids)
    if not ids and not member:
        raise ValueError("name the commands (ids) or a member")
    q = update(outbox).where(outbox.c.status.in_(from_statuses))
    if ids:
        q = q.where(outbox.c.id.in_(ids))
    if member:
        q = q.where(outbox.c.target == member)
    with store.begin() as conn:
        return conn.execute(q.values(**values)).rowcount or 0
