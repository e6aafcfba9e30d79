"""The central store: engine and schema upgrades that never drop data.

Each migration is a numbered step applied once and recorded in `schema_migrations`;
a later schema change is a new step (add a column, an index), never a rebuild.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Text,
    any_,
    bindparam,
    cast,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement

from domain.schema import metadata, schema_migrations


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


# (version, name, step). Append only; never edit a released step.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "baseline", _baseline),
    (2, "reader_accounts.registered_on", _reader_registered_on),
    (3, "outbox.next_attempt_at, outbox.outcome", _outbox_retry_columns),
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


def _insert_factories():
    from sqlalchemy.dialects import postgresql, sqlite

    return {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def upsert_insert(conn: Connection, table):
    """An INSERT that supports ON CONFLICT on the central store's dialect (PostgreSQL, SQLite)."""
    factories = _insert_factories()
    name = conn.dialect.name
    if name not in factories:
        raise RuntimeError(f"central store on {name} is not supported (PostgreSQL or SQLite)")
    return factories[name](table)


class one_of(ColumnElement):  # noqa: N801 - reads like the SQL it stands for
    """`column IN (values)`, compiled per dialect: on PostgreSQL one parameter instead of one
    placeholder per value, which psycopg parses slowly for thousands of keys: an array
    (`= ANY(:values)`), or for long lists one JSON text (`IN (SELECT
    json_array_elements_text(:values))`), since psycopg dumps a list element by element in
    Python (~0.6 µs a value) and `json.dumps` does it in C (~0.05 µs); elsewhere a plain
    expanding IN."""

    type = Boolean()
    inherit_cache = False
    _is_implicitly_boolean = True  # a predicate already: no "= 1" on SQLite

    def __init__(self, column, values):
        self.column = column
        self.values = list(values)


JSON_LIST_FROM = 1000  # values; below this an array parameter is as fast and plans better


@compiles(one_of)
def _one_of_default(element, compiler, **kw):
    return compiler.process(element.column.in_(element.values), **kw)


@compiles(one_of, "postgresql")
def _one_of_postgres(element, compiler, **kw):
    if len(element.values) >= JSON_LIST_FROM and all(type(v) is str for v in element.values):
        values = bindparam(None, json.dumps(element.values), type_=Text())
        listed = select(func.json_array_elements_text(cast(values, JSON))).scalar_subquery()
        return compiler.process(element.column.in_(listed), **kw)
    values = bindparam(None, element.values, type_=ARRAY(element.column.type))
    return compiler.process(element.column == any_(values), **kw)
