"""Reconcile: find rows a cursor poll cannot see, by key and by content.

A cursor poll misses hard deletes, rows written behind the watermark, and rows changed without
their cursor moving (a foreign-key action such as Koha's `ON DELETE SET NULL` on old_issues,
an edit outside the desk). Reconcile reads every row of an entity at the member (streamed in
chunks, never all at once), gives each the content hash the merge stores (`domain.rowhash`,
over the same prepared columns), and compares key by key with the member's mirror: keys the
hub lacks are *missing*, keys the source no longer has are *extra*, keys whose content differs
are *changed*. Keys are compared as the canonical text the merge stores, so they need not be
integers. Rows held in quarantine are known to the hub and are not missing, and rows whose
cursor is within the next poll's reach (at or past the watermark less the lookback) are the
next sync's to read (the hub's own write-backs among them), not drift.

Missing and changed rows are merged again through the normal validate and merge stages, from
the rows already read (no second query by key); extra rows are removed from the mirror. Each
is recorded in `drift`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from circhub.connections.config import Member
from circhub.connections.engines import member_engine, member_url
from circhub.connections.runtime import Runtime
from circhub.domain.records import spec
from circhub.domain.rowhash import with_row_hash
from circhub.domain.rowhash_legacy import LEGACY_MARK, legacy_row_hashes
from circhub.domain.schema import drift, mirror_table, quarantine
from circhub.tasks.loads.member_rows import MemberRows
from circhub.tasks.sync.extract import (
    CHUNK_ROWS,
    Extract,
    SourceUnavailable,
    entity_query,
    mapped_entities,
    prepare_frame,
    read_marks,
)
from circhub.tasks.sync.merge import merge_batch
from circhub.tasks.sync.validate import validate_extract

log = logging.getLogger(__name__)

# Reconcile reads through the member's driver, not the Arrow reader, for now: it reads in the
# flow's own process, and connectorx sets no client-side read timeout, so a member lost
# mid-read would hold the reconcile and the member's slot until TCP keepalive gave up (two
# hours). A backfill reads in a process of its own, which a watchdog stops
# (`read_process.SILENCE_SECONDS`). The Arrow read gives the same drift (tests/test_arrow_reader).
ARROW = False

MISSING, EXTRA, CHANGED = "missing", "extra", "changed"
ACTIONS = {MISSING: "re-extracted", CHANGED: "re-extracted", EXTRA: "removed from mirror"}


@dataclass
class EntityDrift:
    entity: str
    rows_checked: int = 0
    missing: list[str] = field(default_factory=list)  # at the source, not in the hub
    extra: list[str] = field(default_factory=list)  # in the hub, gone from the source
    changed: list[str] = field(default_factory=list)  # both, with different content
    reload: pd.DataFrame | None = field(default=None, repr=False)  # missing + changed rows
    # Keys whose stored hash was made the old way (Alembic revision 0002) and matches the row:
    # the row's new hash, stored by `repair` (no drift: the content is what the hub has).
    rehashed: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.changed)


def _hub_hashes(rt: Runtime, member: Member, table: Table) -> dict[str, str]:
    # A shared instance's rows are filed under their own member: all of this member's own.
    with rt.store.connect() as conn:
        return dict(conn.execute(select(table.c.local_id, table.c.row_hash).where(
            table.c.member == member.code)).all())


def _held(rt: Runtime, member: Member, entity: str) -> set[str]:
    """Keys in quarantine: the hub knows them and holds them back on purpose."""
    with rt.store.connect() as conn:
        return set(conn.execute(select(quarantine.c.row_key).where(
            quarantine.c.member == member.code, quarantine.c.entity == entity,
            quarantine.c.released_at.is_(None))).scalars())


def compare_entity(rt: Runtime, member: Member, entity: str) -> EntityDrift:
    s = spec(entity)
    hub = _hub_hashes(rt, member, mirror_table(s))
    held = _held(rt, member, entity)
    mark = read_marks(rt.store, member.code)[entity].cursor
    if mark is not None:  # the next poll re-reads a lookback before the watermark anyway
        mark -= timedelta(seconds=rt.consortium.lookback_seconds)
    found, seen, reload = EntityDrift(entity), set(), []
    query = entity_query(member, entity, None).order_by(None)
    source = MemberRows(member, member_url(member), entity, CHUNK_ROWS,
                        lambda: member_engine(member),
                        arrow=ARROW and rt.consortium.bulk_reader == "arrow", warn=log.warning)
    for chunk in source.chunks(query, "for reconcile", ordered=False):
        rows = with_row_hash(entity, prepare_frame(entity, chunk, rt.id_key))
        keys = rows[s.key].astype(str)
        stored = _recognise_legacy(entity, rows, keys, keys.map(hub), found.rehashed)
        polled = _behind(rows[s.cursor], mark)  # what a poll should have brought
        missing = polled & stored.isna() & ~keys.isin(held)
        changed = polled & stored.notna() & (stored != rows["_hash"])
        found.rows_checked += len(rows)
        found.missing += keys[missing].tolist()
        found.changed += keys[changed].tolist()
        seen.update(keys)
        if (missing | changed).any():
            reload.append(rows[missing | changed].drop(columns="_hash"))
    found.extra = sorted(set(hub) - seen)
    found.missing.sort()
    found.changed.sort()
    found.reload = pd.concat(reload, ignore_index=True) if reload else None
    return found


def _recognise_legacy(entity: str, rows: pd.DataFrame, keys: pd.Series, stored: pd.Series,
                      rehashed: dict[str, str]) -> pd.Series:
    """The stored hashes, with each one marked as made the old way that matches the old hash
    of the row read now replaced by the row's new hash (and noted in `rehashed`)."""
    # object: with nothing stored yet (a member never synced) `stored` is all NaN, a float
    # column that has no .str
    legacy = stored.astype(object).str.startswith(LEGACY_MARK, na=False).astype(bool)
    if not legacy.any():
        return stored
    old = pd.Series(legacy_row_hashes(entity, rows[legacy]), index=rows.index[legacy])
    same = legacy & (stored == LEGACY_MARK + old.reindex(rows.index, fill_value=""))
    rehashed.update(zip(keys[same], rows.loc[same, "_hash"], strict=True))
    return stored.mask(same, rows["_hash"])


def _behind(cursor: pd.Series, mark: datetime | None) -> pd.Series:
    """Rows a poll up to `mark` should have read: a cursor before it, or none at all (a poll
    never selects a NULL cursor)."""
    if mark is None:
        return pd.Series(False, index=cursor.index)
    return (cursor.isna() | (cursor < mark)).astype(bool)


def repair(rt: Runtime, member: Member, found: EntityDrift) -> None:
    now = datetime.now()
    if found.reload is not None:
        _merge_again(rt, member, found.entity, found.reload)
    table = mirror_table(spec(found.entity))
    with rt.store.begin() as conn:
        _store_rehashed(conn, table, member.code, found)
        for key in found.extra:
            conn.execute(delete(table).where(table.c.member == member.code,
                                             table.c.local_id == key))
        rows = [dict(member=member.code, entity=found.entity, local_id=k, kind=kind,
                     found_at=now, action=ACTIONS[kind])
                for kind, keys in ((MISSING, found.missing), (EXTRA, found.extra),
                                   (CHANGED, found.changed))
                for k in keys]
        if rows:
            conn.execute(insert(drift), rows)


def _store_rehashed(conn, table: Table, member: str, found: EntityDrift) -> None:
    """New hashes for rows whose old-style hash matched (a reloaded row got its own)."""
    reloaded = set(found.missing) | set(found.changed) | set(found.extra)
    rows = [{"k": k, "h": h} for k, h in found.rehashed.items() if k not in reloaded]
    if rows:
        conn.execute(update(table).where(
            table.c.member == member, table.c.local_id == bindparam("k"),
            table.c.row_hash.startswith(LEGACY_MARK)).values(row_hash=bindparam("h")), rows)


def _merge_again(rt: Runtime, member: Member, entity: str, frame: pd.DataFrame) -> None:
    """Merge rows read by reconcile like any delta (validation included)."""
    val = validate_extract(member.code, {entity: frame}, rt.member_view(member),
                           rt.consortium.max_bad_share)
    # No frames on the Extract: these rows say nothing about how far the cursor has read, so
    # the watermark must not move (it could skip deltas not yet polled).
    merge_batch(rt.store, rt.consortium, member, Extract(member.code, {}, {}), val)


def reconcile_member(rt: Runtime, member: Member, fix: bool = True) -> list[EntityDrift]:
    try:
        results = [compare_entity(rt, member, e) for e in mapped_entities(member)]
        if fix:
            for found in results:
                if not found.clean or found.rehashed:
                    repair(rt, member, found)
    except SQLAlchemyError as exc:
        raise SourceUnavailable.from_error(f"member {member.code}: reconcile stopped",
                                           exc) from None
    return results
