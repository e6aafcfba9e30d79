"""Merge: one central transaction per member batch.

Upserts what the member's ILS shows, appends the circulation events its rows imply, replays
every touched item, writes the outbox commands the new state causes, quarantines bad rows and
advances the watermarks. All of it commits together or none of it does, so a crash anywhere
leaves the watermark where the data is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, Engine, false, or_, select, update

from circhub.connections.bulk import bulk_upsert, python_columns
from circhub.connections.config import Consortium, Member
from circhub.connections.key_epochs import claim_key
from circhub.connections.store import in_chunks, one_of, upsert_insert
from circhub.domain.circulation import Event
from circhub.domain.events import loan_events, sighting_events
from circhub.domain.readers import account_flags
from circhub.domain.records import entities, spec
from circhub.domain.rowhash import with_row_hash, with_row_hashes
from circhub.domain.schema import (
    circulation_events,
    items,
    loans,
    mirror_table,
    quarantine,
    reader_accounts,
    readers,
    watermarks,
)
from circhub.tasks.circulation.conflicts import record_claims
from circhub.tasks.circulation.refresh import refresh_items
from circhub.tasks.readers.homes import refresh_homes
from circhub.tasks.readers.links import (
    flag_duplicate_accounts,
    link_waiting_loans,
    unknown_references,
)
from circhub.tasks.sync.extract import Extract
from circhub.tasks.sync.merge_items import members_of, merge_items
from circhub.tasks.sync.validate import BadRow, Validated, quarantined_row


@dataclass
class MergeReport:
    member: str
    merged: dict[str, int] = field(default_factory=dict)  # changed rows per entity
    events: int = 0
    commands: int = 0
    quarantined: int = 0
    released: int = 0
    touched: set[str] = field(default_factory=set, repr=False)


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain Python values: datetimes, None for missing (column-wise, not per cell)."""
    if frame.empty:
        return []
    columns = python_columns(frame)
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _upsert_mirror(conn: Connection, table, member_of, rows: list[dict],
                   values_of) -> list[dict]:
    """Upsert per-member mirror rows; returns the rows that were new or changed."""
    staged = [{"member": member_of(r), "local_id": str(r["local_id"]), **values_of(r),
               "row_hash": r["_hash"]} for r in rows]
    update = [c for c in staged[0] if c not in ("member", "local_id")] if staged else []
    written = set(bulk_upsert(conn, table, staged, ("member", "local_id"), update, "row_hash"))
    return [r for r, st in zip(rows, staged, strict=True)
            if (st["member"], st["local_id"]) in written]


def hash_good_rows(batches: Iterable[Validated]) -> None:
    """Give every member's good rows their content hash, in one call per entity for all of
    them (see circhub.domain.rowhash.with_row_hashes), before their merges."""
    batches = list(batches)
    for entity in entities():
        holders = [v for v in batches if entity in v.good]
        hashed = with_row_hashes(entity, [v.good[entity] for v in holders])
        for v, frame in zip(holders, hashed, strict=True):
            v.good[entity] = frame


def merge_batch(store: Engine, consortium: Consortium, member: Member, extract: Extract,
                validated: Validated) -> MergeReport:
    report = MergeReport(member.code)
    now = datetime.now()
    with store.begin() as conn:
        if extract.key_check is not None:  # the key may have been rotated since extraction
            claim_key(conn, extract.key_check)
        _quarantine(conn, member.code, validated, now, report)
        frames = {e: with_row_hash(e, validated.good.get(e, pd.DataFrame()))
                  for e in entities()}
        _merge_readers(conn, member, records(frames["readers"]), now, report)
        shelved = _merge_items(conn, consortium, member, frames["items"], report)
        _merge_loans(conn, member, records(frames["loans"]), now, report)
        _sightings(conn, member, frames["items"], shelved, now, report)
        for entity in entities():
            if spec(entity).merge == "mirror" and entity in validated.good:
                _merge_mirror(conn, member, entity, records(frames[entity]), report)
        report.touched |= record_claims(conn, consortium, member, validated, now)
        report.commands += refresh_items(conn, consortium, report.touched, now, member.code)
        _advance_marks(conn, member.code, extract, now)
    return report


def _hold(conn: Connection, member: str, bad_rows: list[BadRow], now: datetime,
          report: MergeReport) -> None:
    """Bad rows into quarantine (a row held before keeps its first sighting)."""
    for bad in bad_rows:
        stmt = upsert_insert(conn, quarantine).values(
            member=member, entity=bad.entity, row_key=bad.row_key, rules=list(bad.rules),
            row_masked=bad.row, first_seen_at=now, last_seen_at=now, released_at=None)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["member", "entity", "row_key"],
            set_={"rules": stmt.excluded.rules, "row_masked": stmt.excluded.row_masked,
                  "last_seen_at": now, "released_at": None}))
    report.quarantined += len(bad_rows)


def _quarantine(conn: Connection, member: str, validated: Validated, now: datetime,
                report: MergeReport) -> None:
    _hold(conn, member, validated.bad, now, report)
    # A row that was quarantined and now arrives valid was fixed at the source: release it.
    held = _held_entities(conn, member)
    for entity, frame in validated.good.items():
        if entity not in held:
            continue  # nothing of this entity in quarantine: no key list to send
        keys = [str(k) for k in frame.get("local_id", [])]
        for part in in_chunks(keys):
            res = conn.execute(update(quarantine).where(
                quarantine.c.member == member, quarantine.c.entity == entity,
                one_of(quarantine.c.row_key, part), quarantine.c.released_at.is_(None),
            ).values(released_at=now))
            report.released += res.rowcount or 0


def _held_entities(conn: Connection, member: str) -> set[str]:
    return set(conn.execute(select(quarantine.c.entity).distinct().where(
        quarantine.c.member == member, quarantine.c.released_at.is_(None))).scalars())


def _merge_readers(conn: Connection, member: Member, rows: list[dict], now: datetime,
                   report: MergeReport) -> None:
    rows = [r for r in rows if r.get("reader_key")]
    # No birth date or sex beside the masked number: together they would rebuild it (the
    # hidden eight digits are the birth date). Account flags keep what a person must review.
    people = [dict(reader_key=r["reader_key"], id_masked=r["id_masked"],
                   id_status=r["id_status"], home_member=member.member_for_branch(r["branch"]),
                   first_seen_at=now) for r in rows]
    bulk_upsert(conn, readers, people, ("reader_key",))
    changed = _upsert_mirror(conn, reader_accounts, lambda r: member.code, rows, lambda r: dict(
        reader_key=r["reader_key"], card_masked=r["card_masked"],
        home_branch=member.member_for_branch(r["branch"]), flag=account_flags(r),
        registered_on=r.get("registered_on"), source_updated_at=r["updated_at"]))
    refresh_homes(conn, {r["reader_key"] for r in changed})
    link_waiting_loans(conn, member.code, [str(r["local_id"]) for r in changed])
    flag_duplicate_accounts(conn, member.code, {r["reader_key"] for r in changed})
    report.merged["readers"] = len(changed)


def _merge_mirror(conn: Connection, member: Member, entity: str, rows: list[dict],
                  report: MergeReport) -> None:
    """The generic merge rule: the member's rows of a declared entity, upserted into its
    mirror by (member, local id), unchanged rows skipped by their content hash."""
    s = spec(entity)
    table = mirror_table(s)
    names = [c.name for c in table.columns if c.name not in MIRROR_BOOKKEEPING]
    changed = _upsert_mirror(conn, table, lambda r: member.code, rows, lambda r: {
        **{n: r.get(n) for n in names}, "source_updated_at": r.get(s.cursor)})
    report.merged[entity] = len(changed)


MIRROR_BOOKKEEPING = ("member", "local_id", "row_hash", "source_updated_at")



def _merge_items(conn: Connection, consortium: Consortium, member: Member,
                 frame: pd.DataFrame, report: MergeReport) -> set[str]:
    """Returns the barcodes this merge catalogued on this member's shelf."""
    written = merge_items(conn, consortium, member, frame)
    report.touched.update(written.changed["barcode"])
    report.merged["items"] = len(written.changed)
    return written.shelved_here


def _merge_loans(conn: Connection, member: Member, rows: list[dict], now: datetime,
                 report: MergeReport) -> None:
    reader_of = _reader_keys(conn, member.code, {str(r["reader_local_id"]) for r in rows})
    broken = unknown_references(conn, member.code, rows, set(reader_of))
    if broken:  # never merged with a reference the member does not have
        _hold(conn, member.code, [quarantined_row("loans", rows[i], rules)
                                  for i, rules in broken.items()], now, report)
        rows = [r for i, r in enumerate(rows) if i not in broken]
    changed = _upsert_mirror(
        conn, loans, lambda r: member.member_for_branch(r["branch"]), rows, lambda r: dict(
            barcode=r["barcode"], reader_key=reader_of.get(str(r["reader_local_id"])),
            reader_local_id=_text_or_none(r["reader_local_id"]),
            issued_at=r["issued_at"], due_at=r["due_at"], renewals=int(r["renewals"] or 0),
            source_returned_at=r["returned_at"], source_updated_at=r["updated_at"]))
    report.merged["loans"] = len(changed)
    echoes = _closed_by_hub(conn, member, changed)
    events = [ev for ev in loan_events(changed, member.member_for_branch)
              if not (ev.kind == "returned" and ev.loan in echoes)]
    report.events += _insert_events(conn, events, now, report)


def _text_or_none(value) -> str | None:
    return None if value is None else str(value)


def _closed_by_hub(conn: Connection, member: Member, rows: list[dict]) -> set[tuple[str, str]]:
    """Loans whose return the hub itself wrote into this ILS: their rows are an echo.

    The central store derived the return (returned elsewhere) and the write-back set the same
    time at the source; reading it back is no new check-in and must add no event. A close the
    hub derived from the lender's own shelf (the book seen back home while the loan's row had
    not yet been read, as when the lender's clock stamped it behind the loans' watermark) has
    no echo: the lender's desk checked the book in, its row is that check-in, and its event.
    """
    returned = {(member.member_for_branch(r["branch"]), str(r["local_id"])): r["returned_at"]
                for r in rows if r["returned_at"] is not None}
    echoes = set()
    for part in in_chunks(sorted(returned)):
        q = select(loans.c.member, loans.c.local_id, loans.c.pushed_returned_at,
                   loans.c.return_member).where(
            loans.c.member.in_({k[0] for k in part}),
            one_of(loans.c.local_id, [k[1] for k in part]),
            loans.c.pushed_returned_at.is_not(None))
        for r in conn.execute(q):
            key = (r.member, r.local_id)
            if (key in returned and r.return_member != r.member
                    and _same_second(r.pushed_returned_at, returned[key])):
                echoes.add(key)
    return echoes


def _same_second(a: datetime, b: datetime) -> bool:
    return a.replace(microsecond=0) == b.replace(microsecond=0)


def _reader_keys(conn: Connection, member: str, local_ids: set[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in in_chunks(sorted(local_ids)):
        q = select(reader_accounts.c.local_id, reader_accounts.c.reader_key).where(
            reader_accounts.c.member == member, one_of(reader_accounts.c.local_id, part))
        found.update(dict(conn.execute(q).all()))
    return found


def _insert_events(conn: Connection, events: list[Event], now: datetime,
                   report: MergeReport) -> int:
    """Append events; one already recorded (same source event) is not added again."""
    rows = [dict(event_key=ev.event_key, barcode=ev.barcode, kind=ev.kind, member=ev.member,
                 at=ev.at, loan_member=ev.loan[0] if ev.loan else None,
                 loan_local_id=ev.loan[1] if ev.loan else None, due_at=ev.due_at,
                 recorded_at=now) for ev in events]
    added = {k for (k,) in bulk_upsert(conn, circulation_events, rows, ("event_key",))}
    report.touched.update(ev.barcode for ev in events if ev.event_key in added)
    return len(added)


def _sightings(conn: Connection, member: Member, item_rows: pd.DataFrame, shelved: set[str],
               now: datetime, report: MergeReport) -> None:
    """Sighting events, looked for only where one can be: an item touched by this batch,
    shelved here, not on loan, and not already on this member's shelf centrally (`shelved`:
    catalogued there by this very merge, which an initial load does for every item)."""
    pending = report.touched - shelved  # an initial load leaves nothing here
    if item_rows.empty or not pending:
        return
    rows = item_rows[item_rows["barcode"].isin(pending) & item_rows["last_seen"].notna()
                     & item_rows["on_loan_due"].isna()]
    candidates = rows[members_of(member, rows["holding_branch"]) == member.code]
    if candidates.empty:
        return
    away = _not_on_shelf_at(conn, member.code, sorted(set(candidates["barcode"])))
    candidates = candidates[candidates["barcode"].isin(away)]
    events = sighting_events(records(candidates), member.code, member.member_for_branch)
    report.events += _insert_events(conn, events, now, report)


def _not_on_shelf_at(conn: Connection, member: str, barcodes: list[str]) -> set[str]:
    """The barcodes the central state does not have on this member's shelf (held elsewhere,
    on loan, or not catalogued yet)."""
    return set(barcodes) - _on_shelf_at(conn, member, barcodes)


def _on_shelf_at(conn: Connection, member: str, barcodes: list[str]) -> set[str]:
    """The barcodes the central state has on this member's shelf, not on loan."""
    found: set[str] = set()
    for part in in_chunks(barcodes):
        found.update(conn.execute(select(items.c.barcode).where(
            one_of(items.c.barcode, part), items.c.holder == member,
            or_(items.c.on_loan.is_(None), items.c.on_loan == false()))).scalars())
    return found


def _advance_marks(conn: Connection, member: str, extract: Extract, now: datetime) -> None:
    """Move each entity's watermark to the newest cursor read, never backwards: one statement
    for all of them (an upsert is compiled afresh at each execution: SQLAlchemy 2.0 cannot
    cache ON CONFLICT, so one per member rather than one per entity)."""
    marks = []
    for entity, frame in extract.frames.items():
        cursor = frame[spec(entity).cursor] if not frame.empty else None
        if cursor is None or cursor.isna().all():
            continue
        newest = cursor.max().to_pydatetime()
        old = extract.marks[entity].cursor
        if old is None or newest > old:
            marks.append(dict(member=member, entity=entity, cursor_value=newest,
                              updated_at=now))
    if not marks:
        return
    stmt = upsert_insert(conn, watermarks)
    # Guarded in SQL too: a backfill and a sync of the same member never move it back.
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["member", "entity"],
        set_={c: stmt.excluded[c] for c in ("cursor_value", "updated_at")},
        where=watermarks.c.cursor_value.is_(None)
        | (watermarks.c.cursor_value < stmt.excluded.cursor_value)), marks)
