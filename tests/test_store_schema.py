"""`circhub db upgrade`: creates the central store on SQLite and PostgreSQL, and a later
schema step is applied without dropping data."""

from __future__ import annotations

from sqlalchemy import inspect, select, text

from circhub.connections import store
from circhub.domain.schema import members, metadata


def test_upgrade_creates_every_table_and_is_a_no_op_the_second_time(central_engine):
    steps = [f"{version:03d} {name}" for version, name, _ in store.MIGRATIONS]
    assert store.upgrade(central_engine) == steps
    assert set(metadata.tables) <= set(inspect(central_engine).get_table_names())
    assert store.upgrade(central_engine) == []
    assert store.current_version(central_engine) == store.MIGRATIONS[-1][0]


def test_a_later_schema_step_keeps_the_rows_already_there(central_engine, monkeypatch):
    store.upgrade(central_engine)
    with central_engine.begin() as conn:
        conn.execute(members.insert().values(code="CD001", name="Chengdu", region="Chengdu",
                                             profile="koha", sync_enabled=True,
                                             writeback_enabled=True))

    def add_column(conn):
        conn.execute(text("ALTER TABLE members ADD COLUMN website VARCHAR(200)"))

    later = store.MIGRATIONS[-1][0] + 1
    steps = [*store.MIGRATIONS, (later, "members website", add_column)]
    monkeypatch.setattr(store, "MIGRATIONS", steps)
    assert store.upgrade(central_engine) == [f"{later:03d} members website"]

    with central_engine.connect() as conn:
        assert conn.execute(select(members.c.name)).scalars().all() == ["Chengdu"]
        assert conn.execute(text("SELECT website FROM members")).scalar() is None
    assert store.current_version(central_engine) == later
