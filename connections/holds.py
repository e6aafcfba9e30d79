"""Who may open a member's database: only code that holds that member's slot.

The slot itself is Prefect's (`circhub.flows.slots.source_slots`: a global concurrency limit
per member and one on the consortium's source connections), and Prefect stays out of the
stages, so a stage cannot ask Prefect whether its slot is held. It can ask this module:
`member_url` and `member_engine` (`circhub.connections.engines`) hand out a member's database
only inside `holding(code)`, which the slot wrapper enters once it has the slots (and the
plain runner, which runs one member at a time in one process: tests, benchmark). A new task
that forgets the wrapper fails on its first connection, by member, instead of quietly
working on a database another run holds and pushing the source connections past their limit
(issue 17: backfill and reconcile once did exactly that).

A hold is per context (a thread, a Prefect task run), not per process: a thread that does not
hold a member cannot open it because another thread does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar

from sqlalchemy import Engine

# What a stage that reads several members is given to hold each one: the flows' slot wrapper
# in production (`flows.slots.source_slots`), `holding` where no Prefect runs (tests).
MemberHold = Callable[[str], AbstractContextManager]

_held: ContextVar[frozenset[str]] = ContextVar("circhub_members_held", default=frozenset())
_handed_out: dict[str, set[Engine]] = {}  # member -> engines opened on it while held
_lock = threading.Lock()


class SlotNotHeld(RuntimeError):
    """A member's database was asked for outside that member's slot."""


@contextmanager
def holding(code: str) -> Iterator[None]:
    """The current context may open member `code`'s database until the block ends; then its
    idle pooled connections are closed, so none stays open once the slot is given back (the
    source-connection limit counts real connections, not just holders)."""
    token = _held.set(_held.get() | {code})
    try:
        yield
    finally:
        _held.reset(token)
        if code not in _held.get():
            close_idle(code)


def require_slot(code: str) -> None:
    if code not in _held.get():
        raise SlotNotHeld(
            f"member {code}: its database was opened without its slot; run the work inside "
            "circhub.flows.slots.source_slots (the one wrapper every member task takes)")


def handed_out(code: str, engine: Engine) -> Engine:
    """Note an engine opened on member `code`, to close its idle connections at release."""
    with _lock:
        _handed_out.setdefault(code, set()).add(engine)
    return engine


def close_idle(code: str) -> None:
    """Close the pooled connections of the engines member `code` used. One still checked out
    (a member sharing the same ILS database, in its own hold) is left to its holder: SQLAlchemy
    closes it when it is returned."""
    with _lock:
        engines = _handed_out.pop(code, set())
    for engine in engines:
        engine.dispose()
