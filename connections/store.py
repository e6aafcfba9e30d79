"""The central store: engine and schema upgrades that never drop data.

Each migration is a numbered step applied once and recorded in `schema_migrations`;
a later schema change is a new step (add a column, an index), never a rebuild.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection, Engine, inspect, select

from domain.schema import metadata, schema_migrations


def _baseline(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


# (version, name, step). Append only; never edit a released step.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "baseline", _baseline),
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
