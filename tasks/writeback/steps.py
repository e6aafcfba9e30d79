"""Write steps that verify themselves: one command's steps run in one ILS transaction, and any
step that cannot do what it must stops the command, so the transaction writes nothing.

For each step, in order:
- `when` (conditions on the command) and `skip_if_exists` (applied before) may skip it;
- every look-up it uses is read first: one that finds nothing (or a NULL) stops the command,
  naming the look-up and the values searched, so no step ever writes NULL in its place
  (an `optional` look-up that finds nothing skips the step instead: the step is about a row
  that is not there for this command, e.g. "the copy, if it is away");
- the rows its `where` finds are counted: a step that must find one row and finds none, or
  more, stops the command (rows = "at_most_one" allows none: a replay after the row moved);
- the statement runs; guards may leave a found row alone (a replay, or newer state shown);
- what it wrote is read back and compared with what it meant to write (in the column's type),
  before the command can be marked applied.
An insert may hand its new key to later steps (`returns`): RETURNING / OUTPUT where the
dialect has it (PostgreSQL, MariaDB 10.5+, SQL Server), the driver's lastrowid elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from circhub.connections.errors import driver_message
from circhub.connections.profile import Step
from circhub.connections.profile_forms import Cond, Conditional, Lookup, WhenNull, when_holds
from circhub.connections.step_shapes import prepared
from circhub.connections.step_sql import (
    NOW,
    Binding,
    exists_query,
    identity_count,
    lookup_query,
    readback_query,
    returning_insert,
    row_exists,
    step_statement,
)


class StepFailed(RuntimeError):
    """A write-back step that could not do what it must; its command wrote nothing."""


class StepRefused(StepFailed):
    """A step the ILS itself refused (a foreign key, a NOT NULL, a grant): the step and the
    driver's error, for circhub.tasks.writeback.explain to name what the ILS is missing."""

    def __init__(self, step: Step, params: dict, error: SQLAlchemyError):
        super().__init__(f"{step.label}: {driver_message(error)}")
        self.step, self.params, self.error = step, params, error


@dataclass(frozen=True)
class StepOutcome:
    step: Step
    found: int  # rows the step is about
    changed: int  # rows it wrote
    note: str = ""  # why it wrote nothing, where it did not

    def describe(self) -> str:
        return f"{self.step.op} {self.step.table.name} {self.changed}"


CopyColumns = Callable[[Step], list[str]]


def run_steps(conn: Connection, steps: Iterable[Step], b: Binding,
              copy_columns: CopyColumns) -> list[StepOutcome]:
    outcomes = []
    for step in steps:
        try:
            outcomes.append(_run(conn, step, b, copy_columns))
        except KeyError as exc:  # a parameter or member constant the command does not carry
            raise StepFailed(f"{step.label}: {exc.args[0]}") from None
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise  # the member went away: not a refusal, the push stops for it
            raise StepRefused(step, b.params, exc) from exc
    return outcomes


def _run(conn: Connection, step: Step, b: Binding, copy_columns: CopyColumns) -> StepOutcome:
    if step.when and not when_holds(step.when, b.params):
        return StepOutcome(step, 0, 0, "not for this command")
    if step.skip_if_exists:
        _read_lookups(conn, step, step.skip_if_exists.where.values(), b)
        there = partial(exists_query, step.skip_if_exists)
        if _sql(conn, "exists", step.skip_if_exists, b, there).scalar():
            return StepOutcome(step, 0, 0, "applied before")
    _read_lookups(conn, step, step.where.values(), b)
    absent = _absent(step.where.values(), b)
    if absent:
        return StepOutcome(step, 0, 0, f"not for this row: look-up {absent!r} found nothing")
    if step.op == "insert_missing" and _sql(conn, "row_exists", step, b,
                                            partial(row_exists, step)).scalar():
        return StepOutcome(step, 1, 0, "there already")
    found = 1
    if step.op in ("update", "delete", "copy_row"):
        found = _sql(conn, "count", step, b, partial(identity_count, step)).scalar_one()
        _check_found(step, found, b)
        if found == 0:
            return StepOutcome(step, 0, 0, "no row (applied before)")
    _read_lookups(conn, step, step.values(), b)
    absent = _absent(step.values(), b)
    if absent:
        return StepOutcome(step, found, 0, f"not for this row: look-up {absent!r} found nothing")
    changed, key = _execute(conn, step, b, copy_columns)
    _check_changed(step, found, changed)
    if step.verify and changed and step.op in ("update", "insert", "insert_missing"):
        _read_back(conn, step, b, key)
    return StepOutcome(step, found, changed, "" if changed else "left alone by its guard")


def _execute(conn: Connection, step: Step, b: Binding, copy_columns: CopyColumns
             ) -> tuple[int, dict[str, Any] | None]:
    if not step.returns:
        columns = copy_columns(step) if step.op == "copy_row" else None
        return _sql(conn, "step", step, b, lambda b: step_statement(step, b, columns),
                    tuple(columns or ())).rowcount, None
    column, name = step.returns
    can_return = conn.dialect.insert_returning
    result = _sql(conn, "returning", step, b, lambda b: returning_insert(step, b, can_return),
                  can_return)
    new_key = result.scalar_one() if can_return else result.lastrowid
    b.params[name] = new_key
    return 1, {column: new_key}


def _sql(conn: Connection, kind: str, owner: object, b: Binding,
         build: Callable[[Binding], Any], *extra: Any):
    """Run one of the owner's statements, built once per shape (connections.step_shapes)."""
    statement, params = prepared(kind, owner, b, build, *extra)
    return conn.execute(statement, params)


def _check_found(step: Step, found: int, b: Binding) -> None:
    if step.rows == "any" or found == 1 or (found == 0 and step.rows == "at_most_one"):
        return
    searched = _described(step.table.dotted, step.where, b)
    if found == 0:
        raise StepFailed(f"{step.label}: no row in {step.table.dotted} where {searched}")
    raise StepFailed(f"{step.label}: {found} rows in {step.table.dotted} where {searched}, "
                     f"{'one' if step.rows == 'one' else 'at most one'} expected")


def _check_changed(step: Step, found: int, changed: int) -> None:
    """An update changes at most what it found; a delete or copy all of it; an insert one."""
    expected = {"update": range(0, found + 1), "delete": [found], "copy_row": [found],
                "insert": [1], "insert_missing": [1]}[step.op]
    if changed >= 0 and changed not in expected:  # -1: the driver cannot tell
        raise StepFailed(f"{step.label}: changed {changed} row(s) of {step.table.dotted}, "
                         f"expected {found if step.op != 'update' else f'at most {found}'}")


def _read_lookups(conn: Connection, step: Step, values: Iterable[Any], b: Binding) -> None:
    for value in values:
        for lk in reversed(_active_lookups(value, b)):  # nested ones first
            if id(lk) not in b.resolved:
                b.resolved[id(lk)] = _read_lookup(conn, step, lk, b)


def _active_lookups(value: Any, b: Binding) -> list[Lookup]:
    """The look-ups a value reads for this command (only the chosen side of an if_null)."""
    if isinstance(value, Lookup):
        return [value] + [lk for v in value.where.values() for lk in _active_lookups(v, b)]
    if isinstance(value, WhenNull):
        chosen = value.then if b.param(value.param) is None else value.otherwise
        return _active_lookups(chosen, b)
    if isinstance(value, Conditional):
        return _active_lookups(value.value, b) if when_holds(value.when, b.params) else []
    if isinstance(value, Cond):
        items = value.value if isinstance(value.value, list) else [value.value]
        return [lk for v in items for lk in _active_lookups(v, b)]
    return []


def _absent(values: Iterable[Any], b: Binding) -> str | None:
    """The first look-up these values read that found nothing (an optional one, or one that
    looks for the row of an optional one): its step is skipped."""
    for value in values:
        for lk in _active_lookups(value, b):
            if id(lk) in b.resolved and b.resolved[id(lk)] is None:
                return lk.label
    return None


def _read_lookup(conn: Connection, step: Step, lk: Lookup, b: Binding) -> Any:
    if any(isinstance(v, Lookup) and v.optional and b.resolved.get(id(v)) is None
           for v in lk.where.values()):
        return None  # it looks for a row an optional look-up did not find
    rows = _sql(conn, "lookup", lk, b, partial(lookup_query, lk)).all()
    searched = _described(lk.table.dotted, lk.where, b)
    if lk.optional and (not rows or rows[0][0] is None):
        return None
    if not rows or rows[0][0] is None:
        raise StepFailed(f"{step.label}: look-up {lk.label!r} found nothing in "
                         f"{lk.table.dotted} where {searched}")
    if len(rows) > 1:
        raise StepFailed(f"{step.label}: look-up {lk.label!r} found more than one row in "
                         f"{lk.table.dotted} where {searched}")
    return rows[0][0]


def _described(dotted: str, conds: dict[str, Any], b: Binding) -> str:
    """`col = value` of each condition, as searched (values in the column's type)."""
    parts = []
    for col, v in conds.items():
        if v in ("$null", "$not_null"):
            parts.append(f"{col} IS {'NULL' if v == '$null' else 'NOT NULL'}")
        elif isinstance(v, Cond):
            items = v.value if isinstance(v.value, list) else [v.value]
            shown = [_plain(b, x, (dotted, col)) for x in items]
            parts.append(f"{col} {v.op.upper()} {shown if v.op == 'in' else shown[0]!r}")
        else:
            parts.append(f"{col} = {_plain(b, v, (dotted, col))!r}")
    return ", ".join(parts)


def _plain(b: Binding, v: Any, target) -> Any:
    try:
        value = b.plain(v, target)
    except KeyError:  # a look-up not read yet (an outer one's own condition failed)
        return "?"
    return str(value) if isinstance(value, date) else value


def _read_back(conn: Connection, step: Step, b: Binding, key: dict[str, Any] | None) -> None:
    """The row(s) now show what the step wrote, or the command fails."""
    written = {c: b.plain(v, (step.table.dotted, c)) for c, v in b.written(step.set).items()}
    if step.op != "update":
        written.update({c: b.plain(v, (step.table.dotted, c)) for c, v in step.where.items()
                        if not isinstance(v, Cond) and v not in ("$null", "$not_null")})
    rows = (conn.execute(readback_query(step, b, key)) if key  # the new key: not kept
            else _sql(conn, "readback", step, b, partial(readback_query, step))).mappings().all()
    if not rows:
        raise StepFailed(f"{step.label}: wrote to {step.table.dotted} but reads back no row")
    for row in rows:
        wrong = [f"{c}: wrote {v!r}, reads {row[c]!r}" for c, v in written.items()
                 if v != NOW and not same(row[c], v)]
        if wrong:
            raise StepFailed(f"{step.label}: {step.table.dotted} reads back other values "
                             f"than written ({'; '.join(wrong)})")


def same(read: Any, meant: Any) -> bool:
    """Equal as the ILS keeps them: times compared naive in local time, texts without the
    padding of CHAR columns, numbers whatever their Python type."""
    if read is None or meant is None:
        return read is None and meant is None
    if isinstance(read, str) and isinstance(meant, date):  # SQLite keeps times as text
        read = _parsed(read, type(meant))
    if isinstance(read, datetime) and isinstance(meant, datetime):
        return _naive(read) == _naive(meant)
    if isinstance(read, str) and isinstance(meant, str):
        return read.rstrip() == meant.rstrip()
    return read == meant or str(read).rstrip() == str(meant).rstrip()


def _parsed(text: str, kind: type) -> Any:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return text
    return value if kind is datetime else value.date()


def _naive(value: datetime) -> datetime:
    return value.astimezone().replace(tzinfo=None) if value.tzinfo else value
