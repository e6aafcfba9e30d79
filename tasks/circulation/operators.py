"""What an operator does with the conflicts the hub held back: list them, release one.

Apart from `conflicts` (which the replay in `refresh` uses) so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Engine, select, update

from circhub.connections.config import Consortium
from circhub.domain.schema import circulation_exceptions as exc
from circhub.tasks.circulation.conflicts import ACTIVE, OPEN, RELEASED
from circhub.tasks.circulation.refresh import refresh_items


def list_exceptions(store: Engine, statuses: Iterable[str] = (OPEN,), barcode: str | None = None,
                    limit: int = 100) -> list:
    q = select(exc).where(exc.c.status.in_(list(statuses))).order_by(exc.c.id).limit(limit)
    if barcode:
        q = q.where(exc.c.barcode == barcode)
    with store.connect() as conn:
        return conn.execute(q).all()


def release(store: Engine, consortium: Consortium, exception_id: int, note: str,
            now: datetime | None = None):
    """Let the hub's rule through for one exception, and replay its item at once."""
    now = now or datetime.now()
    with store.begin() as conn:
        row = conn.execute(select(exc).where(exc.c.id == exception_id)).one_or_none()
        if row is None or row.status not in ACTIVE:
            raise ValueError(f"no waiting or open exception #{exception_id}")
        conn.execute(update(exc).where(exc.c.id == exception_id).values(
            status=RELEASED, resolved_at=now, note=note))
        refresh_items(conn, consortium, [row.barcode], now)
    return row
