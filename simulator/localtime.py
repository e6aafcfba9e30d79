"""Datetimes as the hub and the simulator compare them: naive, in the machine's local time."""

from __future__ import annotations

from datetime import datetime


def naive_local(value: datetime | None) -> datetime | None:
    """A timestamptz read back from PostgreSQL arrives aware; desks hand out naive times."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone().replace(tzinfo=None)
