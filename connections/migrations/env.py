"""Alembic's environment for the central store: run by `circhub.connections.migrations`, which
hands it an open connection (`config.attributes["connection"]`); there is no alembic.ini and
no URL here (a URL may hold a password)."""

from __future__ import annotations

from alembic import context

from circhub.domain.schema import metadata

# A store made before Alembic kept its own step list; adoption leaves that table alone.
LEGACY_TABLES = {"schema_migrations"}


def _include(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "table" and name in LEGACY_TABLES)


def run_migrations() -> None:
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=metadata,
                      include_object=_include, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("circhub's migrations run online, through `circhub db upgrade`")
run_migrations()
