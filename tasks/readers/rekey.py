"""Reader-ID key rotation: re-key every reader under a new HMAC key without losing any link.

Design choice: re-derive from the sources, keep no reversible ciphertext.
An HMAC cannot be re-keyed without the clear number. The hub could keep the number encrypted
under a second key, but then it would hold, for ~250 members' readers, exactly what PIPL Art. 28
calls sensitive and what it never needs for anything but this rare operation; the second key
would have to live next to the hub to be usable, and a leak of store + that key gives every
number back. The members' ILS databases already hold the clear number legitimately (the ID card
is the library card), so rotation reads it from there, only in memory, and only in this process:
- one central transaction: it first retires the current key's epoch row, which locks it, so a
  merge waits for the rotation and then refuses (``circhub.connections.key_epochs.claim_key``);
- every member that has accounts is read in full (all or nothing: one unreachable member aborts
  the rotation and nothing changes). For each source row, HMAC(old key) must equal the account's
  stored reader_key; then old -> HMAC(new key) is one entry of the mapping. An account whose
  source number changed since the last sync maps nothing (the next sync will re-link it);
- a reader that no source holds any more (deleted at every member) gets a key derived from its
  old key (``circhub.domain.readers.unlinkable_key``): its accounts and loans stay together, and no
  ID
  number can be matched to it again;
- the mapping is applied to `readers` and to every column named `reader_key` in the schema (or
  marked ``info={"reader_key": True}``): new reader rows are inserted, referrers repointed, old
  rows deleted, so foreign keys hold throughout; then no old key may remain, or it rolls back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Column, Connection, MetaData, String, Table, func, select, update

from circhub.connections.holds import MemberHold
from circhub.connections.key_epochs import current_epoch
from circhub.connections.runtime import Runtime
from circhub.connections.store import upsert_insert
from circhub.domain.readers import key_fingerprint, unlinkable_key
from circhub.domain.schema import metadata, reader_key_epochs, readers
from circhub.tasks.readers.rekey_sources import map_member, members_with_accounts

MIN_KEY_BYTES = 16


class RotationRefused(RuntimeError):
    """The rotation cannot run; nothing was changed."""


@dataclass
class RotationReport:
    fingerprint: str  # the new key's check value
    readers: int = 0
    accounts_matched: int = 0  # accounts whose source row confirmed their reader
    stale_accounts: int = 0  # source number changed since the last sync: re-linked next sync
    unlinkable: int = 0  # readers no source holds any more, kept together under a derived key
    rows_updated: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        tables = ", ".join(f"{t} {n}" for t, n in sorted(self.rows_updated.items()))
        return (f"{self.readers} readers re-keyed ({self.unlinkable} no longer at any source); "
                f"{self.accounts_matched} accounts confirmed at their source, "
                f"{self.stale_accounts} changed there since the last sync; rows: {tables}")


def reader_key_columns() -> list[Column]:
    """Every column outside `readers` that holds a reader key, by name or by marking."""
    return [c for t in metadata.sorted_tables if t is not readers for c in t.c
            if c.name == "reader_key" or c.info.get("reader_key")]


def rotate_reader_key(rt: Runtime, new_key: bytes, *, hold: MemberHold) -> RotationReport:
    """Re-key the whole central store from `rt.id_key` to `new_key`, in one transaction.

    Each member's readers are read under `hold(code)`: the caller's slot wrapper (the CLI
    passes `flows.slots.source_slots`), so the rotation never reads a member beside its sync."""
    if len(new_key) < MIN_KEY_BYTES:
        # A short key can be guessed, and then every reader key is brute-forceable like a plain
        # hash. Only new keys are held to this: an old short key must still start to rotate.
        raise RotationRefused(f"the new reader ID key must be at least {MIN_KEY_BYTES} bytes")
    old_fp, new_fp = key_fingerprint(rt.id_key), key_fingerprint(new_key)
    if new_fp == old_fp:
        raise RotationRefused("the new reader ID key is the current one")
    report = RotationReport(new_fp)
    with rt.store.begin() as conn:
        version = _retire(conn, old_fp)
        mapping = _mapping_table(conn)
        for code in members_with_accounts(conn):
            matched, stale = map_member(conn, rt.consortium, code, mapping, rt.id_key, new_key,
                                        hold)
            report.accounts_matched += matched
            report.stale_accounts += stale
        report.unlinkable = _map_the_rest(conn, mapping, new_key)
        report.readers, report.rows_updated = _apply(conn, mapping)
        _verify(conn, mapping)
        conn.execute(reader_key_epochs.insert().values(
            version=version + 1, fingerprint=new_fp, activated_at=datetime.now(),
            note=report.summary()))
        mapping.drop(conn)
    return report


def _retire(conn: Connection, old_fp: str) -> int:
    """Retire the current key first: the row lock makes concurrent merges wait, then refuse."""
    row = current_epoch(conn, lock=True)
    if row is None or row.fingerprint != old_fp:
        raise RotationRefused("the configured reader ID key is not the central store's key")
    conn.execute(update(reader_key_epochs).where(reader_key_epochs.c.version == row.version)
                 .values(retired_at=datetime.now()))
    return row.version


def _mapping_table(conn: Connection) -> Table:
    table = Table("circhub_rekey", MetaData(),
                  Column("old_key", String(64), primary_key=True),
                  Column("new_key", String(64), nullable=False, unique=True),
                  prefixes=["TEMPORARY"])
    table.create(conn)
    return table


def _map_the_rest(conn: Connection, mapping: Table, new_key: bytes) -> int:
    """Keys no source confirmed: derive their new key from the old one, so links survive."""
    unmapped = select(mapping.c.old_key)
    found = {}
    for col in [readers.c.reader_key, *reader_key_columns()]:
        q = select(col).where(col.is_not(None), col.not_in(unmapped)).distinct()
        found[col] = set(conn.execute(q).scalars())
    rest = set().union(*found.values())
    rows = [{"old_key": k, "new_key": unlinkable_key(k, new_key)} for k in sorted(rest)]
    if rows:
        conn.execute(upsert_insert(conn, mapping).on_conflict_do_nothing(
            index_elements=["old_key"]), rows)
    return len(found[readers.c.reader_key])


def _apply(conn: Connection, mapping: Table) -> tuple[int, dict[str, int]]:
    """New reader rows first, then every referrer, then the old rows: FKs hold all along."""
    old = readers.c.reader_key
    others = [c for c in readers.c if c.name != "reader_key"]
    copy = (select(mapping.c.new_key, *others)
            .join_from(readers, mapping, mapping.c.old_key == old))
    moved = conn.execute(select(func.count()).select_from(copy.subquery())).scalar()
    conn.execute(readers.insert().from_select(["reader_key", *[c.name for c in others]], copy))
    updated = {}
    for col in reader_key_columns():
        new = (select(mapping.c.new_key).where(mapping.c.old_key == col)
               .scalar_subquery())
        res = conn.execute(update(col.table).where(col.in_(select(mapping.c.old_key)))
                           .values({col.name: new}))
        updated[col.table.name] = res.rowcount
    conn.execute(readers.delete().where(old.in_(select(mapping.c.old_key))))
    return moved, updated


def _verify(conn: Connection, mapping: Table) -> None:
    for col in [readers.c.reader_key, *reader_key_columns()]:
        left = conn.execute(select(func.count()).select_from(col.table)
                            .where(col.in_(select(mapping.c.old_key)))).scalar()
        if left:
            raise RotationRefused(f"{left} rows of {col.table.name} still hold an old key")
