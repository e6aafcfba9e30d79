"""One capability record per backend (`circhub.connections.backends`): each URL the hub meets
finds its record, engines are made as the record says, and no shared code asks which dialect
it is talking to (it reads the record's flags instead).

The paths the flags choose (COPY, one JSON parameter, executemany, ON CONFLICT) are exercised
by the store and merge tests on SQLite and PostgreSQL.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.dialects import mssql

from circhub.connections import backends
from circhub.connections.backends import backend_named, backend_of, backend_of_url
from circhub.connections.engines import engine_for

ROOT = Path(__file__).resolve().parents[1]
SHARED_CODE = ("circhub", "connections", "tasks", "flows", "domain", "simulator", "bench")
# Where a per-backend table is the point: the records themselves, and the bench's peer script,
# which runs in .venv-peer without circhub and so without its records.
RECORD_KEEPERS = {ROOT / "connections" / "backends.py", ROOT / "bench" / "peer_dlt.py"}


@pytest.mark.parametrize(("url", "record"), [
    ("sqlite:///x.db", backends.SQLITE),
    ("postgresql+psycopg://u@h/db", backends.POSTGRESQL),
    ("postgresql://u@h/db", backends.POSTGRESQL),
    ("postgresql+pyodbc://u@h/db?driver=PostgreSQL+Unicode", backends.POSTGRESQL_ODBC),
    ("mysql+pymysql://u@h/db", backends.MYSQL_PYMYSQL),
    ("mariadb+pymysql://u@h/db", backends.MYSQL_PYMYSQL),  # had no timeouts before the records
    ("mysql+mysqldb://u@h/db", backends.MYSQL),
    ("mssql+pyodbc://u@h/db?driver=ODBC+Driver+18+for+SQL+Server", backends.MSSQL),
    ("oracle+oracledb://u@h/db", backends.OTHER),
])
def test_every_url_the_hub_meets_finds_its_record(url, record):
    assert backend_of_url(url) is record


def test_a_connection_finds_the_same_record_as_its_url(tmp_path, pg_db, mariadb_db):
    for url in (f"sqlite:///{tmp_path}/x.db", pg_db(), mariadb_db()):
        with engine_for(url).connect() as conn:
            assert backend_of(conn.dialect) is backend_of_url(url)
    assert backend_of(mssql.pyodbc.dialect()) is backends.MSSQL  # compiled against, never run


def test_only_the_central_stores_backends_can_upsert():
    can = {b.name for b in backends.BACKENDS if b.upsert_insert is not None}
    assert can == {"sqlite", "postgresql", "postgresql over pyodbc"}
    assert backend_named("postgresql", "pyodbc").copy_from is False  # COPY is psycopg's


def test_a_sqlite_store_gets_its_pragmas_from_the_record(tmp_path):
    with engine_for(f"sqlite:///{tmp_path}/store.db").connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000


def test_the_records_cannot_be_changed_by_a_caller():
    with pytest.raises(TypeError):
        backends.MYSQL.connect_args["read_timeout"] = 0
    engine = create_engine("sqlite://", connect_args=dict(backends.SQLITE.connect_args))
    assert engine.dialect.name == "sqlite"


def _dialect_questions(path: Path) -> list[str]:
    """`x.dialect.name == ...`, `... in {...}`, `d[x.dialect.name]`, `get_backend_name()`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        asked = None
        if isinstance(node, ast.Compare):
            asked = [node.left, *node.comparators]
        elif isinstance(node, ast.Subscript):
            asked = [node.slice]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "get":
            asked = node.args[:1]
        if asked and any(_is_dialect_name(a) for a in asked):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        if isinstance(node, ast.Attribute) and node.attr == "get_backend_name":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def _is_dialect_name(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "name"
            and isinstance(node.value, ast.Attribute) and node.value.attr == "dialect")


def test_no_shared_code_branches_on_the_dialect():
    """Per-backend differences are the records' flags (DESIGN.md: never `if dialect == ...`)."""
    sources = [p for package in SHARED_CODE for p in (ROOT / package).rglob("*.py")
               if p not in RECORD_KEEPERS]
    assert [q for p in sources for q in _dialect_questions(p)] == []
