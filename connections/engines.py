"""Engines for members and the central store, and the secrets behind them.

A connection URL comes from the config in clear (demo, tests), from an environment variable,
or from a Prefect Secret block. Engines are cached per URL so one process keeps one pool per
database. Errors never print a URL (it may hold a password): they name the member instead.
"""

from __future__ import annotations

import os
import threading

from sqlalchemy import Engine, create_engine, event

import circhub.connections.odbc  # noqa: F401 - registers postgresql+pyodbc:// (Polaris-style)
from circhub.connections.backends import backend_of_url
from circhub.connections.config import Consortium, Member
from circhub.connections.holds import handed_out, require_slot

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
    """The member's database URL, only to code holding its slot (`connections.holds`)."""
    require_slot(member.code)
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
    return consortium.central_store  # the config's default when neither is given


def member_engine(member: Member) -> Engine:
    """The member's engine, only to code holding its slot; its idle connections are closed
    when the slot is given back."""
    return handed_out(member.code, engine_for(member_url(member)))


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


def bulk_read_engine(url: str) -> Engine:
    """An engine for a backfill's reader process: its backend's `bulk_read_args` added (values
    the driver may leave to `coerce_types`). Only for reading rows that `coerce_types` types;
    never for write-backs, whose code reads values back as the driver types them."""
    key = f"bulk-read:{url}"
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            bulk = backend_of_url(url).bulk_read_args
            engine = _engines[key] = _create_engine(url, bulk() if bulk else {})
        return engine


def _create_engine(url: str, extra_args=None) -> Engine:
    """An engine made as its backend's record says (`circhub.connections.backends`)."""
    backend = backend_of_url(url)
    engine = create_engine(url, pool_pre_ping=backend.pool_pre_ping,
                           connect_args={**backend.connect_args, **(extra_args or {})})
    for on_connect in backend.on_connect:
        event.listen(engine, "connect", on_connect)
    return engine


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
