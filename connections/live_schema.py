"""A profile checked against a member's live database: every table and column it reads or
writes must exist there. Loading a profile checks its shape; only this check can tell that a
member's ILS version lacks a column (or that an Evergreen member has not installed the
circulation change column the profile needs).

It also gives each write-back value the type and precision of the column it meets
(`column_renderer`), instead of hand-made variants of a parameter per column shape.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.sql import sqltypes
from sqlalchemy.types import TypeEngine

from circhub.connections.backends import backend_of
from circhub.connections.profile import Profile


def schema_problems(profile: Profile, engine: Engine) -> list[str]:
    """One message per missing table or column, naming it; empty when the schema fits."""
    inspector = inspect(engine)
    problems = []
    for dotted, columns in sorted(profile.referenced_columns().items()):
        schema, _, name = dotted.rpartition(".")
        schema = schema or None
        if not inspector.has_table(name, schema=schema):
            problems.append(f"profile {profile.kind!r}: table {dotted} does not exist")
            continue
        live = {c["name"] for c in inspector.get_columns(name, schema=schema)}
        problems += [f"profile {profile.kind!r}: table {dotted} has no column {col}"
                     for col in sorted(columns - live)]
    return problems


_column_types: dict[tuple[Engine, str], dict[str, TypeEngine]] = {}


def column_types(bind: Engine | Connection, dotted: str) -> dict[str, TypeEngine]:
    """The live types of a table's columns, read once per engine and table. Given a write's
    open connection, read on it: inspecting the engine beside an open transaction takes a
    second connection, one more than the member's slot grants (tests/test_member_slots.py)."""
    key = (bind.engine, dotted)
    if key not in _column_types:
        schema, _, name = dotted.rpartition(".")
        _column_types[key] = {c["name"]: c["type"] for c in
                              inspect(bind).get_columns(name, schema=schema or None)}
    return _column_types[key]


def in_column_type(value: Any, sqltype: TypeEngine | None, default_digits: int = 6) -> Any:
    """A value as the column keeps it: a time in the column's precision (a whole-second
    DATETIME finds the row a desk wrote only with whole seconds), a day for a DATE, a number
    for an integer column given a numeric text, a text for a text column given a number."""
    if sqltype is None or value is None:
        return value
    if isinstance(sqltype, sqltypes.DateTime):
        if isinstance(value, datetime):
            return _truncated(value, _time_digits(sqltype, default_digits))
        if isinstance(value, date):
            return datetime.combine(value, time())
        return value
    if isinstance(sqltype, sqltypes.Date) and isinstance(value, datetime):
        return value.date()
    if isinstance(sqltype, sqltypes.Integer) and isinstance(value, str) \
            and value.lstrip("-").isdigit():
        return int(value)
    if isinstance(sqltype, sqltypes.String) and isinstance(value, int | float) \
            and not isinstance(value, bool):
        return str(value)
    return value


def _time_digits(sqltype: TypeEngine, default_digits: int) -> int:
    digits = getattr(sqltype, "fsp", None)  # MySQL / MariaDB DATETIME(fsp)
    if digits is None:
        digits = getattr(sqltype, "precision", None)  # PostgreSQL, SQL Server DATETIME2(p)
    return min(6, default_digits if digits is None else digits)


def _truncated(value: datetime, digits: int) -> datetime:
    step = 10 ** (6 - digits)
    return value.replace(microsecond=value.microsecond - value.microsecond % step)


def column_renderer(bind: Engine | Connection):
    """(table, column, value) -> the value in that live column's type and precision."""
    digits = backend_of(bind.dialect).time_digits

    def render(dotted: str, col: str, value: Any) -> Any:
        return in_column_type(value, column_types(bind, dotted).get(col), digits)
    return render
