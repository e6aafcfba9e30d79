"""Write-back statements built once per step and shape, then run with each command's values.

A push runs ~7 steps a command and ~15 statements for them (look-ups, the count of rows a step
is about, the step, the read-back). Building each statement afresh for every command, and
SQLAlchemy computing its cache key, was ~40 % of a push's time (profiled: 1,582 commands,
11,074 steps). A step's statement depends on the command only through its values and a few
branches: an if_null's side, a value that is NULL or the ILS's clock instead of a bound value,
the conditional `set` columns it writes. So the first command builds the statement with named
parameters while its Binding records every branch taken (`step_sql.Recording`); a later
command replays those visits, and where it takes the same branch everywhere it gets the same
statement object with its own values (SQLAlchemy then reuses the statement's cache key and its
compiled form). A command that branches otherwise builds and records a variant of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.sql import Executable

from circhub.connections.step_sql import Binding, Recording

# (kind, id(owner), extra...) -> [(visits, statement)]: the variants of one statement.
_shapes: dict[tuple, list[tuple[list[tuple], Executable]]] = {}
# The owners (steps, look-ups) whose id() is in a key: kept, so no id is ever reused.
_owners: dict[int, object] = {}
# Variants of one statement beyond which a command's statement is built and not kept (a step
# with many optional values could branch in too many ways to be worth trying them all).
MOST_VARIANTS = 16


def prepared(kind: str, owner: object, b: Binding, build: Callable[[Binding], Executable],
             *extra: Any) -> tuple[Executable, dict[str, Any] | None]:
    """The statement `build(b)` would give, and the parameters to run it with.

    `kind` names which statement of the `owner` (a step, a look-up) it is; `extra`, anything
    else it is built from (the columns of a copy, whether the dialect returns keys)."""
    key = (kind, id(owner), *extra)
    variants = _shapes.get(key, [])
    for visits, statement in variants:
        params = b.replay(visits)
        if params is not None:
            return statement, params or None
    if len(variants) >= MOST_VARIANTS:
        return build(b), None
    b.record = Recording()
    try:
        statement = build(b)
        visits, params = b.record.visits, b.record.params
    finally:
        b.record = None
    _owners[id(owner)] = owner
    _shapes.setdefault(key, []).append((visits, statement))
    return statement, params or None


def forget() -> None:
    """Drop every kept statement (tests that compare with statements built afresh)."""
    _shapes.clear()
    _owners.clear()
