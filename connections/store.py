"""The central store: engine and schema upgrades that never drop data.

Each migration is a numbered step applied once and recorded in `schema_migrations`;
a later schema change is a new step (add a column, an index), never a rebuild.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    String,
    Text,
    bindparam,
    cast,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator

from circhub.connections.backends import backend_of
from circhub.domain.schema import metadata, schema_migrations


def _baseline(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


def _add_column(conn: Connection, table: str, column: Column) -> None:
    """ALTER TABLE ... ADD COLUMN, unless the column is there (a fresh baseline made it)."""
    if column.name in {c["name"] for c in inspect(conn).get_columns(table)}:
        return
    quote = conn.dialect.identifier_preparer.quote
    kind = column.type.compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column.name)} {kind}"))


def _reader_registered_on(conn: Connection) -> None:
    _add_column(conn, "reader_accounts", Column("registered_on", DateTime))


def _outbox_retry_columns(conn: Connection) -> None:
    _add_column(conn, "outbox", Column("next_attempt_at", DateTime))
    _add_column(conn, "outbox", Column("outcome", Text))


def _drop_items_owner_index(conn: Connection) -> None:
    # No query looks items up by owner (the reports group all of them); the index only cost
    # every catalogued book an insert (~0.7 µs of a backfill's ~10 per row).
    conn.execute(text("DROP INDEX IF EXISTS ix_items_owner"))


def _loans_reader_local_id(conn: Connection) -> None:
    _add_column(conn, "loans", Column("reader_local_id", String(64)))


# (version, name, step). Append only; never edit a released step.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "baseline", _baseline),
    (2, "reader_accounts.registered_on", _reader_registered_on),
    (3, "outbox.next_attempt_at, outbox.outcome", _outbox_retry_columns),
    (4, "drop items.owner index", _drop_items_owner_index),
    (5, "loans.reader_local_id", _loans_reader_local_id),
]


def upgrade(engine: Engine) -> list[str]:
    """Bring the central store to the newest schema; returns the steps applied now."""
    applied_now = []
    with engine.begin() as conn:
        schema_migrations.create(conn, checkfirst=True)
        done = set(conn.execute(select(schema_migrations.c.version)).scalars())
        for version, name, step in MIGRATIONS:
            if version in done:
                continue
            step(conn)
            conn.execute(
                schema_migrations.insert().values(
                    version=version, name=name, applied_at=datetime.now()
                )
            )
            applied_now.append(f"{version:03d} {name}")
        # Tables added to domain/schema.py later appear on any existing store; new columns
        # on existing tables need a numbered step above (ALTER TABLE ... ADD COLUMN).
        metadata.create_all(conn, checkfirst=True)
    return applied_now


def current_version(engine: Engine) -> int:
    if not inspect(engine).has_table("schema_migrations"):
        return 0
    with engine.connect() as conn:
        versions = conn.execute(select(schema_migrations.c.version)).scalars().all()
    return max(versions, default=0)


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
