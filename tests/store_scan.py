"""Read back everything a central store holds, as text, to search it for what must not be there.

Tables are reflected from the database itself, not taken from `circhub.domain.schema`, so a table
or a
column added by anyone later is scanned too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from sqlalchemy import Engine, MetaData, select


def store_texts(store: Engine) -> Iterator[tuple[str, str, str]]:
    """(table, column, value as text) for every non-null value of every table."""
    reflected = MetaData()
    reflected.reflect(store)
    with store.connect() as conn:
        for table in reflected.sorted_tables:
            for row in conn.execute(select(table)):
                for column, value in row._mapping.items():
                    if value is not None:
                        yield table.name, column, _text(value)


def _text(value) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
