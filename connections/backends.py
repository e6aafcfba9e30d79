"""One capability record per database backend: what shared code reads instead of asking which
dialect it is talking to (SQLMesh's way: differences are data, never `if dialect == ...`).

A record says how engines to it are made (connect arguments, pre-ping, what runs on each new
connection) and what the central store's bulk paths may use (INSERT ... ON CONFLICT, COPY, a
batch of rows as one JSON parameter). `backend_of` finds the record of a SQLAlchemy dialect,
`backend_of_url` that of a URL: the record naming the dialect and its driver first, then the
one naming the dialect alone, then `OTHER`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url

OnConnect = Callable[[Any, Any], None]  # (DBAPI connection, pool record), a "connect" event


@dataclass(frozen=True)
class Backend:
    name: str
    dialects: tuple[str, ...]  # SQLAlchemy dialect names served (`Dialect.name`)
    driver: str | None = None  # only this DBAPI driver of them; None: any driver
    # Passed to the DBAPI's connect(): how long to wait for a database that does not answer
    # (a hung member must fail, not block the schedule), and statement limits where the
    # driver takes them at connect time.
    connect_args: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    pool_pre_ping: bool = True  # test a pooled connection before use (servers drop idle ones)
    on_connect: tuple[OnConnect, ...] = ()  # run on each new DBAPI connection
    # `insert(table)` with on_conflict_do_update / do_nothing: the central store's upsert.
    # None: this backend cannot be the central store.
    upsert_insert: Callable | None = None
    copy_from: bool = False  # psycopg's COPY ... FROM STDIN: large batches staged or loaded
    json_rows: bool = False  # a batch of rows as one JSON parameter (json_populate_recordset)
    # Fraction-of-second digits a time column keeps when its type names none (MySQL DATETIME
    # and TIMESTAMP: whole seconds; SQL Server DATETIME: about 3; PostgreSQL: microseconds).
    time_digits: int = 6
    # Extra connect arguments for a backfill's bulk reader only (`engines.bulk_read_engine`):
    # how the driver may hand values over more cheaply when `coerce_types` types them anyway.
    bulk_read_args: Callable[[], Mapping[str, Any]] | None = None
    # connectorx's URL scheme for this backend's members: a backfill reads them into Arrow
    # (`circhub.connections.arrow_read`). None: the driver path only.
    arrow_scheme: str | None = None
    # Times and untyped NULLs read by connectorx as text, typed by `coerce_types` (MySQL:
    # connectorx cannot hold a zero date, which Koha's tables carry, nor a bare NULL column).
    arrow_text_casts: bool = False
    # Run by connectorx on its connection before the query (it takes no connect arguments).
    arrow_setup: tuple[str, ...] = ()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets the demo's parallel member syncs read while the central store writes.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _query_timeout(seconds: int) -> OnConnect:
    def on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.timeout = seconds
    return on_connect


def _frozen(**args: Any) -> Mapping[str, Any]:
    return MappingProxyType(args)


# A member that stops answering mid-read fails after 5 minutes instead of holding its run.
STATEMENT_TIMEOUT_SECONDS = 300

SQLITE = Backend(
    "sqlite", ("sqlite",), connect_args=_frozen(timeout=30), pool_pre_ping=False,
    on_connect=(_sqlite_pragmas,), upsert_insert=sqlite.insert)

# JIT off: a merge statement over a fresh staging table (no statistics) looks costly enough to
# the planner to JIT-compile, ~170 ms a statement that runs in ~200 ms.
_PG_CONNECT = _frozen(connect_timeout=10, options=f"-c statement_timeout="
                      f"{STATEMENT_TIMEOUT_SECONDS * 1000} -c jit=off")

POSTGRESQL = Backend(
    "postgresql", ("postgresql",), connect_args=_PG_CONNECT,
    upsert_insert=postgresql.insert, copy_from=True, json_rows=True,
    arrow_scheme="postgresql",
    arrow_setup=(f"SET statement_timeout = {STATEMENT_TIMEOUT_SECONDS * 1000}",))

# Polaris-style members in the tests (circhub.connections.odbc): the same connect arguments,
# which that dialect hands to psqlODBC (`timeout`, and `options` inside `pqopt`); COPY and the
# JSON batch are psycopg's, not ODBC's.
POSTGRESQL_ODBC = Backend(
    "postgresql over pyodbc", ("postgresql",), driver="pyodbc", connect_args=_PG_CONNECT,
    upsert_insert=postgresql.insert)

_MYSQL_CONNECT = _frozen(connect_timeout=10, read_timeout=STATEMENT_TIMEOUT_SECONDS,
                        write_timeout=STATEMENT_TIMEOUT_SECONDS)

MYSQL = Backend("mysql/mariadb", ("mysql", "mariadb"), time_digits=0,
                connect_args=_MYSQL_CONNECT, arrow_scheme="mysql", arrow_text_casts=True)


def _pymysql_times_as_text() -> Mapping[str, Any]:
    """pymysql's converters with DATE, DATETIME and TIMESTAMP left as the text the server sent
    ('2026-01-01 08:00:00'). pymysql parses each in Python (a regular expression and a
    datetime() a value: 22 % of a backfill reader's time, and the reader bounds a backfill);
    `coerce_types` then parses the whole column at once in pandas' C code, to the same values.
    A zero date ('0000-00-00') was text from pymysql already, and becomes NaT either way."""
    from pymysql import converters
    from pymysql.constants import FIELD_TYPE

    conv = dict(converters.conversions)
    for kind in (FIELD_TYPE.DATE, FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP):
        conv[kind] = converters.through
    return _frozen(conv=conv)


MYSQL_PYMYSQL = Backend("mysql/mariadb over pymysql", ("mysql", "mariadb"), driver="pymysql",
                        time_digits=0, connect_args=_MYSQL_CONNECT,
                        bulk_read_args=_pymysql_times_as_text, arrow_scheme="mysql",
                        arrow_text_casts=True)

# SQL Server's per-statement limit is no connect argument: pyodbc sets it as the connection's
# `timeout` attribute (SQL_ATTR_QUERY_TIMEOUT). Not exercised here (no SQL Server); psqlODBC,
# which the tests reach Polaris-style members through, refuses the attribute and takes
# statement_timeout as the PostgreSQL connections do.
MSSQL = Backend(
    "mssql", ("mssql",), time_digits=3,
    connect_args=_frozen(timeout=10),  # pyodbc: the login timeout
    on_connect=(_query_timeout(STATEMENT_TIMEOUT_SECONDS),))

OTHER = Backend("other", ())  # any other dialect: SQLAlchemy's defaults, portable paths only

BACKENDS = (SQLITE, POSTGRESQL, POSTGRESQL_ODBC, MYSQL, MYSQL_PYMYSQL, MSSQL)
_BY_DIALECT: dict[tuple[str, str | None], Backend] = {
    (dialect, b.driver): b for b in BACKENDS for dialect in b.dialects}


def backend_named(dialect: str, driver: str | None = None) -> Backend:
    """The record of a dialect (and driver): the one naming both, else the dialect's."""
    return _BY_DIALECT.get((dialect, driver)) or _BY_DIALECT.get((dialect, None), OTHER)


def backend_of(dialect: Dialect) -> Backend:
    return backend_named(dialect.name, dialect.driver)


def backend_of_url(url: str) -> Backend:
    parsed = make_url(url)
    return backend_named(parsed.get_backend_name(), parsed.get_driver_name())
