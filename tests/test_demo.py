"""`circhub demo`'s story, at a small size, on a real Prefect server."""

from __future__ import annotations

import pytest
from rich.console import Console

from circhub.demo import DemoSize, tell

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_the_demo_tells_the_story_and_its_last_sync_changes_nothing(tmp_path):
    console = Console(record=True, width=200)

    tell(console, tmp_path / "demo", DemoSize(members=4, readers=10, items=20, days=5,
                                              actions=20, seed=3))

    text = console.export_text()
    assert "4/4 members synced" in text
    assert "sync 3 (nothing new at the desks): 0 events, 0 write-backs" in text
    assert "one book's journey" in text and "lent at" in text
    # counted by rule, the rule's specific reason beside it (the report's own definition)
    assert "quarantined rows: 3 (id_number_valid: id_check_digit ×3)" in text
    assert "in the central store: cross loans to date" in text
    assert "0 pending, 0 dead" in text


def test_two_checkouts_demo_databases_never_touch_each_other(tmp_path, monkeypatch):
    """`make demo` in two checkouts against one PostgreSQL: each drops and recreates only its
    own databases, and a connection open to the other's survives."""
    from sqlalchemy import create_engine, text

    from circhub.demo import PREFIX_ENV, DemoSize, database_prefix, member_databases

    monkeypatch.delenv(PREFIX_ENV, raising=False)
    size = DemoSize(members=12)
    mine, theirs = tmp_path / "a" / "demo" / "members", tmp_path / "b" / "demo" / "members"
    for folder in (mine, theirs):
        folder.mkdir(parents=True)
    assert database_prefix(mine) != database_prefix(theirs)
    theirs_urls = [url for kind, url in member_databases(theirs, size)[0] if kind != "koha"]
    if not theirs_urls:
        pytest.skip("no local PostgreSQL: the demo's members are all SQLite files")
    mine_urls: list[str] = []
    their_db = create_engine(theirs_urls[0].replace("postgresql+pyodbc", "postgresql+psycopg")
                             .split("?")[0])
    try:
        held = their_db.connect()
        held.execute(text("CREATE TABLE left_by_b (x int)"))
        held.commit()

        mine_urls = [url for kind, url in member_databases(mine, size)[0] if kind != "koha"]
        member_databases(mine, size)  # run again: only its own are dropped and recreated

        assert not set(mine_urls) & set(theirs_urls)
        assert held.execute(text("SELECT count(*) FROM left_by_b")).scalar() == 0
        held.close()
    finally:
        their_db.dispose()
        _drop(mine_urls, theirs_urls)


def _drop(*url_lists) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from circhub.demo import DEMO_PG

    admin = create_engine(DEMO_PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for urls in url_lists:
            for url in urls or ():
                conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" '
                                  "WITH (FORCE)"))
    admin.dispose()
