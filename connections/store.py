"""The central store's SQL helpers: upserts on its backend and key lists in one parameter.

Its schema versions are Alembic's (`circhub.connections.migrations`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    Text,
    bindparam,
    cast,
    func,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator

from circhub.connections.backends import backend_of


def upsert_insert(conn: Connection, table):
    """An INSERT that supports ON CONFLICT on the central store's backend (PostgreSQL, SQLite)."""
    insert = backend_of(conn.dialect).upsert_insert
    if insert is None:
        raise RuntimeError(f"central store on {conn.dialect.name} is not supported "
                           f"(PostgreSQL or SQLite)")
    return insert(table)


class _JSONList(TypeDecorator):
    """A list bound as one JSON text (json.dumps runs in C; psycopg dumps an array element
    by element in Python, ~0.6 µs a value)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return json.dumps(list(value))


IN_CHUNK = 20_000  # keys per `one_of` query (one JSON parameter on PostgreSQL)


def in_chunks(values: list, size: int = IN_CHUNK) -> Iterator[list]:
    """The values in runs of at most `size`, one `one_of` query each."""
    for i in range(0, len(values), size):
        yield values[i : i + size]


class one_of(ColumnElement):  # noqa: N801 - reads like the SQL it stands for
    """`column IN (values)`, compiled per dialect: on PostgreSQL the values travel as one JSON
    parameter (`IN (SELECT json_array_elements_text(:values))`) instead of one placeholder
    per value, which psycopg parses slowly for thousands of keys; elsewhere a plain expanding
    IN. The values are a bound parameter of the statement, so SQLAlchemy caches its
    compiled form like any other (compiling a statement anew costs ~1 ms)."""

    type = Boolean()
    inherit_cache = True
    _is_implicitly_boolean = True  # a predicate already: no "= 1" on SQLite
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),
                           ("values", InternalTraversal.dp_clauseelement)]

    def __init__(self, column, values):
        self.column = column
        self.values = bindparam(None, list(values), expanding=True, type_=column.type)


@compiles(one_of)
def _one_of_default(element, compiler, **kw):
    return compiler.process(element.column.in_(element.values), **kw)


@compiles(one_of, "postgresql")
def _one_of_postgres(element, compiler, **kw):
    # A clone of the statement's own parameter (so a cached statement binds the new values),
    # typed to travel as JSON text.
    values = element.values._with_binary_element_type(_JSONList())
    values.expanding = False
    listed = select(cast(func.json_array_elements_text(cast(values, JSON)),
                         element.column.type)).scalar_subquery()
    return compiler.process(element.column.in_(listed), **kw)
