"""The `postgresql+pyodbc://` URL: SQLAlchemy's PostgreSQL dialect over pyodbc.

Polaris members run SQL Server and are reached with `mssql+pyodbc://`, which SQLAlchemy ships.
SQL Server cannot run here, so the Polaris-style schema is served by PostgreSQL and read
through the same ODBC stack (unixODBC, pyodbc) with the PostgreSQL ODBC driver. SQLAlchemy 2.0
has no PostgreSQL-over-pyodbc dialect; this is the small one it needs:

    postgresql+pyodbc://user:password@host:5432/database?driver=PostgreSQL+Unicode

Any other query argument is passed on as an ODBC connection attribute.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine import URL

DEFAULT_DRIVER = "PostgreSQL Unicode"

# psqlODBC prepares statements on the server by default, where PostgreSQL cannot infer the
# type of a bare `?` (SQLAlchemy's own reflection queries send some). Substituting values on
# the client lets PostgreSQL type them from context, as it does for literals.
DRIVER_DEFAULTS = {"UseServerSidePrepare": "0"}


class PGDialectPyODBC(PGDialect):
    driver = "pyodbc"
    supports_statement_cache = True
    default_paramstyle = "qmark"

    @classmethod
    def import_dbapi(cls):
        import pyodbc

        return pyodbc

    def create_connect_args(self, url: URL) -> tuple[list[Any], dict[str, Any]]:
        return [odbc_connection_string(url)], {}

    def connect(self, *cargs: Any, **cparams: Any):
        # circhub.connections.engines passes libpq's `connect_timeout`; pyodbc calls it `timeout`.
        timeout = cparams.pop("connect_timeout", None)
        if timeout is not None:
            cparams["timeout"] = int(timeout)
        # ...and libpq's `options` (statement_timeout, jit), which psqlODBC takes inside its
        # `pqopt` attribute (it has no ODBC query timeout: SQL_ATTR_QUERY_TIMEOUT is refused).
        options = cparams.pop("options", None)
        if options:
            cargs = (f"{cargs[0]};pqopt={_braced(f'options={options!r}')}", *cargs[1:])
        return super().connect(*cargs, **cparams)

    def get_isolation_level_values(self, dbapi_connection) -> list[str]:
        return [*super().get_isolation_level_values(dbapi_connection), "AUTOCOMMIT"]

    def set_isolation_level(self, dbapi_connection, level: str) -> None:
        dbapi_connection.autocommit = level == "AUTOCOMMIT"
        if level != "AUTOCOMMIT":
            super().set_isolation_level(dbapi_connection, level)


def odbc_connection_string(url: URL) -> str:
    query = {k: v if isinstance(v, str) else v[-1] for k, v in url.query.items()}
    attrs = {
        "DRIVER": _braced(query.pop("driver", DEFAULT_DRIVER)),
        "SERVER": url.host or "127.0.0.1",
        "PORT": str(url.port or 5432),
        "DATABASE": url.database or "",
        "UID": url.username or "",
    }
    if url.password:
        attrs["PWD"] = _braced(str(url.password))
    attrs.update({**DRIVER_DEFAULTS, **query})
    return ";".join(f"{k}={v}" for k, v in attrs.items())


def _braced(value: str) -> str:
    """An ODBC attribute value that may hold ; or = (braces quote it, }} escapes a brace)."""
    return "{" + value.replace("}", "}}") + "}"


def register() -> None:
    """Make `postgresql+pyodbc://` URLs resolve to this dialect (idempotent)."""
    registry.register("postgresql.pyodbc", __name__, "PGDialectPyODBC")


register()
