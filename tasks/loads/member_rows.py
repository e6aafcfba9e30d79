"""A member's rows in bulk, for the loads that read whole ranges (a backfill's windows, a
reconcile's full pass): through connectorx into Arrow where the member's backend allows
(`circhub.connections.arrow_read`), else through the member's driver (`iter_chunks`).

A read connectorx fails, midway or at once, is read again whole through the driver (chunks
handed over already are handed over again: a backfill merges them again unchanged, a
reconcile compares them again), and the same reader's later reads go through the driver
too, since they would fail alike. Each such fall-back is said once, with its reason.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import Engine, Select

from circhub.connections.arrow_read import (
    ArrowReadFailed,
    arrow_backend,
    arrow_frames,
    arrow_query,
    literal_sql,
)
from circhub.connections.config import Member
from circhub.connections.profile import load_profile
from circhub.domain.records import field_names
from circhub.tasks.sync.extract import iter_chunks


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class MemberRows:
    """One member's entity, read query by query."""

    member: Member
    url: str  # the member's database URL, password included (never logged)
    entity: str
    chunk_rows: int
    driver_engine: Callable[[], Engine]  # the driver path's engine, made when first needed
    arrow: bool = True  # False: the driver only (config `bulk_reader`, or after a failure)
    warn: Callable[[str], None] = field(default=_to_stderr)

    def chunks(self, query: Select, what: str, ordered: bool = True) -> Iterator[pd.DataFrame]:
        """The query's rows as untyped frames of at most `chunk_rows`. `what` names the read
        in a fall-back's message ("from 2026-01-01 00:00"); `ordered`: keep the profile's
        order (cursor, key), which a backfill's chunks follow and a reconcile needs not."""
        backend = arrow_backend(self.url) if self.arrow else None
        if backend is not None:
            try:
                yield from self._arrow_chunks(backend, query, ordered)
                return
            except ArrowReadFailed as exc:
                self.arrow = False
                self.warn(f"member {self.member.code}: the Arrow reader could not read "
                          f"{self.entity} {what} ({exc}); reading it and what follows through "
                          "the driver")
        yield from iter_chunks(self.driver_engine(), query, self.entity, self.chunk_rows)

    def _arrow_chunks(self, backend, query: Select, ordered: bool) -> Iterator[pd.DataFrame]:
        mapping = load_profile(self.member.profile).entities[self.entity]
        order = (mapping.cursor, mapping.key) if ordered else ()
        query = arrow_query(query, order, backend.arrow_text_casts)
        sql = literal_sql(query, self.driver_engine().dialect)
        yield from arrow_frames(self.url, backend, sql, field_names(self.entity),
                                self.chunk_rows)
