"""The outbox's retry columns reach a central store made before they existed, keeping its rows
(SQLite and real PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, inspect, select, text

from circhub.connections import store
from circhub.domain.schema import outbox, schema_migrations


def test_a_store_from_before_the_retry_columns_gets_them_and_keeps_its_commands(central_engine):
    store.upgrade(central_engine)
    with central_engine.begin() as conn:  # as the store was before step 3
        conn.execute(text("ALTER TABLE outbox DROP COLUMN next_attempt_at"))
        conn.execute(text("ALTER TABLE outbox DROP COLUMN outcome"))
        conn.execute(delete(schema_migrations).where(schema_migrations.c.version == 3))
        conn.execute(text(
            "INSERT INTO outbox (target, command_key, kind, barcode, payload, status, attempts, "
            "created_at) VALUES ('SC001', 'k1', 'set_item', 'SC0010000001', '{}', 'dead', 5, "
            ":now)"), {"now": datetime(2026, 11, 1)})

    assert store.upgrade(central_engine) == ["003 outbox.next_attempt_at, outbox.outcome"]

    columns = {c["name"] for c in inspect(central_engine).get_columns("outbox")}
    assert {"next_attempt_at", "outcome"} <= columns
    with central_engine.begin() as conn:
        row = conn.execute(select(outbox)).one()
        assert (row.status, row.attempts, row.next_attempt_at, row.outcome) == ("dead", 5, None,
                                                                                None)
        conn.execute(insert(outbox).values(target="SC001", command_key="k2", kind="set_item",
                                           barcode="B", payload={}, status="pending",
                                           attempts=0, created_at=datetime(2026, 11, 2),
                                           next_attempt_at=datetime(2026, 11, 3)))
