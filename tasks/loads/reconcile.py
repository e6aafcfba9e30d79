"""Reconcile: find rows a cursor poll cannot see (hard deletes, rows that slipped past it).

Both sides are summarised per key range in SQL (count, sum of the keys, and sum of a hash of
each key), so only three numbers per range cross the network. Count and sum alone miss a set
swapped for another of equal size and sum ({1, 5, 6} for {2, 3, 7} keeps even the sum of
squares); the hash term tells them apart. Only the ranges that differ are listed key by
key. Keys missing centrally are re-extracted through the normal validate and merge stages;
keys the source no longer has are removed from the member's mirror and recorded as drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from sqlalchemy import BigInteger, Numeric, cast, delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from circhub.connections.config import Member
from circhub.connections.engines import member_engine
from circhub.connections.runtime import Runtime
from circhub.domain.records import ENTITIES
from circhub.domain.schema import drift, loans, member_items, reader_accounts
from circhub.tasks.sync.extract import Extract, SourceUnavailable, entity_query, prepare_frame
from circhub.tasks.sync.merge import merge_batch
from circhub.tasks.sync.validate import validate_extract

MIRRORS = {"readers": reader_accounts, "items": member_items, "loans": loans}
RANGE = 10_000  # keys per range: a range that differs costs one key listing of this size


@dataclass
class EntityDrift:
    entity: str
    ranges_checked: int = 0
    ranges_differing: int = 0
    missing: list[str] = field(default_factory=list)  # at the source, not in the hub
    extra: list[str] = field(default_factory=list)  # in the hub, gone from the source

    @property
    def clean(self) -> bool:
        return not self.missing and not self.extra


def _source_keys(member: Member, entity: str):
    """The source's key column, as a subquery over every row of the entity (no cursor)."""
    q = entity_query(member, entity, None).order_by(None).subquery("src")
    return cast(q.c.local_id, BigInteger), q


def _mirror_key(member: Member, entity: str):
    table = MIRRORS[entity]
    # A shared instance's loans are keyed by lending member: all of this member's own.
    return cast(table.c.local_id, BigInteger), table, table.c.member == member.code


# A key's hash in integer SQL that every backend runs alike (SQLite has neither md5 nor XOR):
# a multiplicative round modulo the prime 2^31 - 1, squared, every product under 2^62 so it
# stays within BIGINT everywhere.
PRIME = 2_147_483_647
MIX = 1_103_515_245


def key_hash(key):
    mixed = (key % PRIME) * MIX % PRIME
    return mixed * mixed % PRIME


def _fingerprints(conn, key, frm, where=None) -> dict[int, tuple]:
    bucket = (key - key % RANGE).label("bucket")
    wide = cast(key, Numeric(38, 0))
    q = select(bucket, func.count(), func.sum(wide), func.sum(key_hash(key))).select_from(frm)
    if where is not None:
        q = q.where(where)
    return {int(r[0]): (int(r[1]), int(r[2] or 0), int(r[3] or 0))
            for r in conn.execute(q.group_by(bucket))}


def _keys_in(conn, key, frm, lows: list[int], where=None) -> set[str]:
    found: set[str] = set()
    for low in lows:
        q = select(key).select_from(frm).where(key >= low, key < low + RANGE)
        if where is not None:
            q = q.where(where)
        found.update(str(k) for k in conn.execute(q).scalars())
    return found


def compare_entity(rt: Runtime, member: Member, entity: str) -> EntityDrift:
    src_key, src = _source_keys(member, entity)
    hub_key, hub, hub_where = _mirror_key(member, entity)
    with member_engine(member).connect() as sconn, rt.store.connect() as hconn:
        at_source = _fingerprints(sconn, src_key, src)
        at_hub = _fingerprints(hconn, hub_key, hub, hub_where)
        differing = sorted(b for b in at_source.keys() | at_hub.keys()
                           if at_source.get(b) != at_hub.get(b))
        source_keys = _keys_in(sconn, src_key, src, differing)
        hub_keys = _keys_in(hconn, hub_key, hub, differing, hub_where)
    return EntityDrift(entity, len(at_source.keys() | at_hub.keys()), len(differing),
                       sorted(source_keys - hub_keys, key=int),
                       sorted(hub_keys - source_keys, key=int))


def repair(rt: Runtime, member: Member, found: EntityDrift) -> None:
    now = datetime.now()
    if found.missing:
        _reload(rt, member, found.entity, found.missing)
    table = MIRRORS[found.entity]
    with rt.store.begin() as conn:
        for key in found.extra:
            conn.execute(delete(table).where(table.c.member == member.code,
                                             table.c.local_id == key))
        rows = [dict(member=member.code, entity=found.entity, local_id=k, kind=kind,
                     found_at=now, action=action)
                for kind, keys, action in (("missing", found.missing, "re-extracted"),
                                           ("extra", found.extra, "removed from mirror"))
                for k in keys]
        if rows:
            conn.execute(insert(drift), rows)


def _reload(rt: Runtime, member: Member, entity: str, keys: list[str]) -> None:
    """Fetch the given rows by key and merge them like any delta (validation included)."""
    engine = member_engine(member)
    q = entity_query(member, entity, None).order_by(None).subquery("src")
    frames = []
    with engine.connect() as conn:
        for i in range(0, len(keys), 1000):
            part = [int(k) for k in keys[i : i + 1000]]
            rows = conn.execute(select(q).where(cast(q.c.local_id, BigInteger).in_(part)))
            frames.append(pd.DataFrame.from_records(rows.all(), columns=list(q.c.keys())))
    frame = prepare_frame(entity, pd.concat(frames, ignore_index=True), rt.id_key)
    val = validate_extract(member.code, {entity: frame}, rt.member_view(member),
                           rt.consortium.max_bad_share)
    # No frames on the Extract: these rows say nothing about how far the cursor has read, so
    # the watermark must not move (it could skip deltas not yet polled).
    merge_batch(rt.store, rt.consortium, member, Extract(member.code, {}, {}), val)


def reconcile_member(rt: Runtime, member: Member, fix: bool = True) -> list[EntityDrift]:
    try:
        results = [compare_entity(rt, member, e) for e in ENTITIES]
        if fix:
            for found in results:
                if not found.clean:
                    repair(rt, member, found)
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        raise SourceUnavailable(f"member {member.code}: reconcile stopped: "
                                f"{type(orig).__name__}: {str(orig).splitlines()[0]}") from None
    return results
