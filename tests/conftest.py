"""Shared fixtures: real PostgreSQL and MariaDB databases per test, a real Prefect server.

Each database fixture creates a fresh database named circhub_test_<random> and drops it after
the test. The servers are the machine's own (`make test` starts them when they are down);
point CIRCHUB_TEST_PG_URL / CIRCHUB_TEST_MARIADB_URL elsewhere to use others.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

# The write-back tests' shared `koha` fixture (three Koha members on MariaDB, PostgreSQL store),
# and the check of every write-back statement reused from a kept shape.
pytest_plugins = ["tests.writeback", "tests.step_shapes_check"]

PG_ADMIN = os.environ.get("CIRCHUB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MARIADB_ADMIN = os.environ.get("CIRCHUB_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/")


def _new_name() -> str:
    return f"circhub_test_{uuid.uuid4().hex[:10]}"


class DatabaseFactory:
    """Creates databases on one server and drops them all at teardown."""

    def __init__(self, admin_url: str, quote: str):
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.base = make_url(admin_url)
        self.quote = quote
        self.created: list[str] = []

    def __call__(self) -> str:
        name = _new_name()
        with self.admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {self.quote}{name}{self.quote}"))
        self.created.append(name)
        return self.base.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        from circhub.connections.engines import engine_for

        engine_for.cache_clear()
        with self.admin.connect() as conn:
            for name in self.created:
                if self.quote == '"':
                    conn.execute(text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
                else:  # idle pooled sessions outlive the test: MariaDB ran out of connections
                    sessions = conn.execute(text(
                        "SELECT id FROM information_schema.processlist WHERE db = :n"),
                        {"n": name}).scalars().all()
                    for session in sessions:
                        with contextlib.suppress(DBAPIError):  # it may have just gone
                            conn.execute(text(f"KILL CONNECTION {int(session)}"))
                conn.execute(text(f"DROP DATABASE IF EXISTS {self.quote}{name}{self.quote}"))
        self.admin.dispose()


@pytest.fixture
def pg_db() -> Iterator[DatabaseFactory]:
    """Call it to get the URL of a fresh PostgreSQL database."""
    factory = DatabaseFactory(PG_ADMIN, '"')
    yield factory
    factory.drop_all()


@pytest.fixture
def mariadb_db() -> Iterator[DatabaseFactory]:
    """Call it to get the URL of a fresh MariaDB database."""
    factory = DatabaseFactory(MARIADB_ADMIN, "`")
    yield factory
    factory.drop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def central_engine(request, tmp_path):
    """A fresh central-store engine, once on SQLite (the demo's) and once on PostgreSQL."""
    url = (f"sqlite:///{tmp_path}/c.db" if request.param == "sqlite"
           else request.getfixturevalue("pg_db")())
    eng = create_engine(url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect API server (SQLite-backed, in a subprocess) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    # 180 s: on a shared two-core machine under load the server has been seen to need > 60 s.
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(autouse=True)
def _fresh_runtime_cache():
    """Runtimes are cached per config path; tests reuse paths, so start each one clean."""
    from circhub.connections.runtime import open_runtime

    open_runtime.cache_clear()
    yield
    open_runtime.cache_clear()
