"""Member databases for the profile tests, from conftest's per-test database factories.

An ILS runs on one of three servers: MariaDB (Koha), PostgreSQL (Evergreen, and the central
store), or PostgreSQL reached through pyodbc (the Polaris-style schema; SQL Server cannot run
here). Each database is fresh, named circhub_test_*, and dropped after the test.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url

from circhub.connections.config import parse_config
from circhub.connections.engines import DEMO_ID_KEY, engine_for
from circhub.connections.migrations import upgrade
from circhub.connections.runtime import Runtime

SERVERS = ("mariadb", "postgresql", "odbc")


def member_database(request, server: str) -> str:
    """The URL of a fresh database on `server`, dropped when the test ends."""
    if server == "mariadb":
        return request.getfixturevalue("mariadb_db")()
    url = make_url(request.getfixturevalue("pg_db")())
    if server == "odbc":
        url = url.set(drivername="postgresql+pyodbc", query={"driver": "PostgreSQL Unicode"})
    return url.render_as_string(hide_password=False)


def make_runtime(central_url: str, members: list[dict], lookback_seconds: int = 0,
                 **settings) -> Runtime:
    """A runtime on a fresh central store. Lookback 0: a change must move the cursor itself.
    `settings`: more of the `[consortium]` table."""
    consortium = parse_config({
        "consortium": {"name": "test", "central_store": central_url, "demo": True,
                       "lookback_seconds": lookback_seconds, **settings},
        "members": members,
    })
    store = engine_for(central_url)
    upgrade(store)
    return Runtime(consortium, store, DEMO_ID_KEY)
