"""A Prefect server on PostgreSQL for the cycle benchmark, as circhub runs in production
(`make cluster`, docs/scaling.md): the temporary SQLite server Prefect starts by itself
serialises every write, and at 251 members its lock, not circhub, sets the pace."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.servers import fresh_postgres


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_backed_server() -> Iterator[dict]:
    """Start one; yields the environment a process needs to use it (PREFECT_API_URL...)."""
    from circhub.deployments.serve import prefect_env, start_server, stop

    db = fresh_postgres("prefect")
    port = _free_port()
    home = Path(tempfile.mkdtemp(prefix="circhub-bench-prefect-"))
    env = prefect_env(f"http://127.0.0.1:{port}/api", home)
    env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = db.replace("+psycopg", "+asyncpg")
    env["PREFECT_SERVER_LOGGING_LEVEL"] = "WARNING"
    proc = start_server(env, port, home / "server.log", timeout=180)
    try:
        yield env
    finally:
        stop(proc)
