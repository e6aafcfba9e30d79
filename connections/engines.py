"""Engines for members and the central store, and the secrets behind them.

A connection URL comes from the config in clear (demo, tests), from an environment variable,
or from a Prefect Secret block. Engines are cached per URL so one process keeps one pool per
database. Errors never print a URL (it may hold a password): they name the member instead.
"""

from __future__ import annotations

import os
import threading

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

import circhub.connections.odbc  # noqa: F401 - registers postgresql+pyodbc:// (Polaris-style)
from circhub.connections.config import Consortium, Member

DEMO_ID_KEY = b"circhub-demo-key-not-for-production"
ID_KEY_ENV = "CIRCHUB_ID_KEY"
ID_KEY_SECRET = "circhub-id-key"


class ConnectionSetupError(RuntimeError):
    """A member or the central store cannot be reached or is misconfigured."""


def _secret(block_name: str) -> str:
    from prefect.blocks.system import Secret  # only where a Secret block is named

    return Secret.load(block_name).get()


def _from_env(variable: str, whose: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise ConnectionSetupError(f"{whose}: environment variable {variable} is not set")
    return value


def member_url(member: Member) -> str:
    if member.connection:
        return member.connection
    if member.connection_env:
        return _from_env(member.connection_env, f"member {member.code}")
    try:
        return _secret(member.connection_secret)
    except Exception as exc:  # noqa: BLE001 - any failure to load is the same problem here
        raise ConnectionSetupError(
            f"member {member.code}: cannot load Secret block {member.connection_secret!r}: "
            f"{type(exc).__name__}"
        ) from None


def central_url(consortium: Consortium) -> str:
    if consortium.central_store_env:
        return _from_env(consortium.central_store_env, "central store")
    return consortium.central_store or "sqlite:///circhub.db"


def member_engine(member: Member) -> Engine:
    return engine_for(member_url(member))


# Per driver: how long to wait for a member that does not answer (a hung member must fail,
# not block the schedule). Looked up, never branched on.
CONNECT_ARGS = {
    "sqlite": {"timeout": 30},
    # A member that stops answering mid-read fails after 5 minutes instead of holding its run.
    "mysql": {"connect_timeout": 10, "read_timeout": 300, "write_timeout": 300},
    # JIT off: a merge statement over a fresh staging table (no statistics) looks costly
    # enough to the planner to JIT-compile, ~170 ms a statement that runs in ~200 ms.
    "postgresql": {"connect_timeout": 10, "options": "-c statement_timeout=300000 -c jit=off"},
    "mssql": {"timeout": 10},  # pyodbc: the login timeout
}
# SQL Server's per-statement limit is no connect argument: pyodbc sets it as the connection's
# `timeout` attribute (SQL_ATTR_QUERY_TIMEOUT). Not exercised here (no SQL Server); psqlODBC,
# which the tests reach Polaris-style members through, refuses the attribute and takes
# statement_timeout as the PostgreSQL connections do (circhub.connections.odbc).
QUERY_TIMEOUT_SECONDS = {"mssql": 300}


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def engine_for(url: str) -> Engine:
    """One engine (one pool) per database URL in this process."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _create_engine(url)
        return engine


def _dispose_engines() -> None:
    """Close every pool and forget the engines (tests drop their databases after this)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


engine_for.cache_clear = _dispose_engines  # the name callers and tests already use


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    pre_ping = backend != "sqlite"
    engine = create_engine(url, pool_pre_ping=pre_ping,
                           connect_args=dict(CONNECT_ARGS.get(backend, {})))
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if backend in QUERY_TIMEOUT_SECONDS:
        event.listen(engine, "connect", _query_timeout(QUERY_TIMEOUT_SECONDS[backend]))
    return engine


def _query_timeout(seconds: int):
    def on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.timeout = seconds
    return on_connect


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets the demo's parallel member syncs read while the central store writes.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def id_hash_key(consortium: Consortium) -> bytes:
    """The HMAC key for reader IDs. Outside the demo, no key means no start."""
    value = os.environ.get(ID_KEY_ENV)
    if value:
        return value.encode()
    if consortium.demo:
        return DEMO_ID_KEY
    try:
        return _secret(ID_KEY_SECRET).encode()
    except Exception:  # noqa: BLE001 - absent block, no server: both mean "no key here"
        pass
    raise ConnectionSetupError(
        f"no reader ID hash key: set {ID_KEY_ENV} or create the Prefect Secret block "
        f"{ID_KEY_SECRET!r}; circhub will not store reader IDs without it"
    )
