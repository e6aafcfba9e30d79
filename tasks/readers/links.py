"""Readers and the rows that name them, kept right inside the merge's transaction.

- A loan names its reader by the member's local account id. A loan whose account the hub
  holds in quarantine (a typo in the ID number, say) is merged without a reader, since the book
  is on loan all the same, and keeps its `reader_local_id`; when the account arrives valid and
  is merged, `link_waiting_loans` gives those loans the reader in the same transaction.
- A loan whose account the member does not have at all, or whose book it does not have, is
  not merged with a missing reference: `unknown_references` names the rule each breaks, and
  the merge quarantines it (`reader_known`, `item_known`) until the data explains it.
- One person with two accounts at one member (a legacy 15-digit card and its 18-digit
  successor, two cards issued by mistake) is one reader: both accounts stay linked to the
  person, and `flag_duplicate_accounts` flags both (`duplicate_account`) for
  `circhub reader review`, across batches, not only within one.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, and_, select, update

from circhub.connections.store import in_chunks, one_of
from circhub.domain.schema import items, loans, member_items, quarantine, reader_accounts

DUPLICATE_ACCOUNT = "duplicate_account"
READER_KNOWN, ITEM_KNOWN = "reader_known", "item_known"


def held_keys(conn: Connection, member: str, entity: str, keys: Iterable[str]) -> set[str]:
    """Which of these keys the hub holds in quarantine for this member."""
    found: set[str] = set()
    for part in in_chunks(sorted(set(keys))):
        found.update(conn.execute(select(quarantine.c.row_key).where(
            quarantine.c.member == member, quarantine.c.entity == entity,
            one_of(quarantine.c.row_key, part), quarantine.c.released_at.is_(None))).scalars())
    return found


def unknown_references(conn: Connection, member: str, rows: list[dict],
                       readers_known: set[str]) -> dict[int, list[str]]:
    """Row index -> the reference rules a loan row breaks: an open loan whose account is
    neither at the hub (`readers_known`) nor held in quarantine; a loan whose book is neither
    in the consortium's catalogue, nor at this member, nor held. A returned loan may have lost
    its reader on purpose (Koha moves anonymised history to its AnonymousPatron or to NULL; a
    deleted patron's history goes NULL by foreign-key action): it is history, merged unlinked."""
    open_rows = [r for r in rows if r.get("returned_at") is None]
    accounts = {_reader(r) for r in open_rows} - readers_known - {None}
    held_readers = held_keys(conn, member, "readers", accounts) if accounts else set()
    barcodes = {r["barcode"] for r in rows if r.get("barcode")}
    known_books = _known_barcodes(conn, member, barcodes)
    broken: dict[int, list[str]] = {}
    for i, r in enumerate(rows):
        reader = _reader(r)
        if r.get("returned_at") is None and reader not in readers_known | held_readers:
            broken.setdefault(i, []).append(READER_KNOWN)
        if r.get("barcode") and r["barcode"] not in known_books:
            broken.setdefault(i, []).append(ITEM_KNOWN)
    return broken


def _reader(row: dict) -> str | None:
    value = row.get("reader_local_id")
    return None if value is None else str(value)


def _known_barcodes(conn: Connection, member: str, barcodes: set[str]) -> set[str]:
    found: set[str] = set()
    for part in in_chunks(sorted(barcodes)):
        found.update(conn.execute(select(items.c.barcode).where(
            one_of(items.c.barcode, part))).scalars())
        found.update(conn.execute(select(member_items.c.barcode).where(
            member_items.c.member == member, one_of(member_items.c.barcode, part))).scalars())
    missing = barcodes - found
    if missing:  # a book whose own row waits in quarantine: its loan waits with it
        found |= _held_barcodes(conn, member, missing)
    return found


def _held_barcodes(conn: Connection, member: str, barcodes: set[str]) -> set[str]:
    rows = conn.execute(select(quarantine.c.row_masked).where(
        quarantine.c.member == member, quarantine.c.entity == "items",
        quarantine.c.released_at.is_(None))).scalars()
    return {r.get("barcode") for r in rows} & barcodes


def link_waiting_loans(conn: Connection, member: str, local_ids: Iterable[str]) -> int:
    """Loans of this member that wait for these accounts get their reader; returns how many."""
    linked = 0
    for part in in_chunks(sorted(set(local_ids))):
        account = select(reader_accounts.c.reader_key).where(
            reader_accounts.c.member == member,
            reader_accounts.c.local_id == loans.c.reader_local_id).scalar_subquery()
        res = conn.execute(update(loans).where(
            loans.c.member == member, loans.c.reader_key.is_(None),
            one_of(loans.c.reader_local_id, part)).values(reader_key=account))
        linked += res.rowcount or 0
    return linked


def flag_duplicate_accounts(conn: Connection, member: str, keys: Iterable[str]) -> int:
    """Accounts of one person (one reader key) at this member beyond the first: both the
    older and the newer are flagged `duplicate_account`; returns the accounts flagged now."""
    flagged = 0
    for part in in_chunks(sorted(set(keys))):
        twin = reader_accounts.alias("twin")
        pairs = select(reader_accounts.c.local_id, reader_accounts.c.flag).where(
            reader_accounts.c.member == member, one_of(reader_accounts.c.reader_key, part),
            select(twin.c.local_id).where(and_(
                twin.c.member == member, twin.c.reader_key == reader_accounts.c.reader_key,
                twin.c.local_id != reader_accounts.c.local_id)).exists())
        for local_id, flag in conn.execute(pairs).all():
            if DUPLICATE_ACCOUNT in (flag or "").split(","):
                continue
            conn.execute(update(reader_accounts).where(
                reader_accounts.c.member == member, reader_accounts.c.local_id == local_id,
            ).values(flag=",".join(f for f in (flag, DUPLICATE_ACCOUNT) if f)))
            flagged += 1
    return flagged
