"""Fresh benchmark databases on the machine's own PostgreSQL and MariaDB."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG = os.environ.get("CIRCHUB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MARIADB = os.environ.get("CIRCHUB_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/")


def _fresh(admin_url: str, name: str, quote: str) -> str:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if quote == '"':
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
        conn.execute(text(f"DROP DATABASE IF EXISTS {quote}{name}{quote}"))
        conn.execute(text(f"CREATE DATABASE {quote}{name}{quote}"))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def fresh_postgres(tag: str) -> str:
    return _fresh(PG, f"circhub_bench_{tag}", '"')


def fresh_mariadb(tag: str) -> str:
    return _fresh(MARIADB, f"circhub_bench_{tag}", "`")
