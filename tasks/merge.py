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
from sqlalchemy import Connection, Engine, bindparam, select, update

from connections.bulk import bulk_upsert
from connections.config import Consortium, Member
from connections.store import upsert_insert
from domain.circulation import (
    HOME,
    Event,
    MirrorRow,
    OpenLoanAtSource,
    commands_for,
    replay,
)
from domain.events import _py, loan_events, sighting_events
from domain.schema import (
    circulation_events,
    items,
    loans,
    member_items,
    outbox,
    quarantine,
    reader_accounts,
    readers,
    watermarks,
)
from tasks.extract import Extract
from tasks.validate import Validated

IN_CHUNK = 2_000
HASHED = {
    "readers": ["reader_key", "card_masked", "branch", "birth_date", "id_status"],
    "items": ["barcode", "home_branch", "holding_branch", "on_loan_due", "last_seen", "item_type"],
    "loans": ["reader_local_id", "barcode", "branch", "issued_at", "due_at", "returned_at",
              "return_branch", "renewals"],
}


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
    """Rows as plain Python values: datetimes, None for missing."""
    if frame.empty:
        return []
    out = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for row in out:
        for k, v in row.items():
            if isinstance(v, pd.Timestamp):
                row[k] = v.to_pydatetime()
    return out


def with_row_hash(entity: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Add `_hash`, a content hash of the business columns, computed for the whole frame at
    once. The cursor is left out: a row re-read with a new timestamp but the same facts is no
    change."""
    out = frame.copy()
    if out.empty:
        out["_hash"] = pd.Series(dtype=object)
        return out
    hashes = pd.util.hash_pandas_object(out[HASHED[entity]].astype(str), index=False)
    out["_hash"] = [format(h, "016x") for h in hashes]
    return out


def _chunks(values: list, size: int = IN_CHUNK) -> Iterable[list]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _upsert_mirror(conn: Connection, table, member_of, rows: list[dict],
                   values_of) -> list[dict]:
    """Upsert per-member mirror rows; returns the rows that were new or changed."""
    staged = [{"member": member_of(r), "local_id": str(r["local_id"]), **values_of(r),
               "row_hash": r["_hash"]} for r in rows]
    update = [c for c in staged[0] if c not in ("member", "local_id")] if staged else []
    written = set(bulk_upsert(conn, table, staged, ("member", "local_id"), update, "row_hash"))
    return [r for r, st in zip(rows, staged, strict=True)
            if (st["member"], st["local_id"]) in written]


def merge_batch(store: Engine, consortium: Consortium, member: Member, extract: Extract,
                validated: Validated) -> MergeReport:
    report = MergeReport(member.code)
    now = datetime.now()
    with store.begin() as conn:
        _quarantine(conn, member.code, validated, now, report)
        frames = {e: with_row_hash(e, validated.good.get(e, pd.DataFrame()))
                  for e in ("readers", "items", "loans")}
        _merge_readers(conn, member, records(frames["readers"]), now, report)
        item_rows = records(frames["items"])
        _merge_items(conn, consortium, member, item_rows, report)
        _merge_loans(conn, member, records(frames["loans"]), now, report)
        _sightings(conn, member, item_rows, now, report)
        _refresh_items(conn, consortium, report, now)
        _advance_marks(conn, member.code, extract, now)
    return report


def _quarantine(conn: Connection, member: str, validated: Validated, now: datetime,
                report: MergeReport) -> None:
    for bad in validated.bad:
        stmt = upsert_insert(conn, quarantine).values(
            member=member, entity=bad.entity, row_key=bad.row_key, rules=list(bad.rules),
            row_masked=bad.row, first_seen_at=now, last_seen_at=now, released_at=None)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["member", "entity", "row_key"],
            set_={"rules": stmt.excluded.rules, "row_masked": stmt.excluded.row_masked,
                  "last_seen_at": now, "released_at": None}))
    report.quarantined = len(validated.bad)
    # A row that was quarantined and now arrives valid was fixed at the source: release it.
    for entity, frame in validated.good.items():
        keys = [str(k) for k in frame.get("local_id", [])]
        for part in _chunks(keys):
            res = conn.execute(update(quarantine).where(
                quarantine.c.member == member, quarantine.c.entity == entity,
                quarantine.c.row_key.in_(part), quarantine.c.released_at.is_(None),
            ).values(released_at=now))
            report.released += res.rowcount or 0


def _merge_readers(conn: Connection, member: Member, rows: list[dict], now: datetime,
                   report: MergeReport) -> None:
    rows = [r for r in rows if r.get("reader_key")]
    people = [dict(reader_key=r["reader_key"], id_masked=r["id_masked"],
                   id_status=r["id_status"], birth_date=_as_datetime(r.get("id_birth_date")),
                   sex=r.get("id_sex"), home_member=member.member_for_branch(r["branch"]),
                   first_seen_at=now) for r in rows]
    bulk_upsert(conn, readers, people, ("reader_key",))
    changed = _upsert_mirror(conn, reader_accounts, lambda r: member.code, rows, lambda r: dict(
        reader_key=r["reader_key"], card_masked=r["card_masked"],
        home_branch=member.member_for_branch(r["branch"]), flag=_birth_flag(r),
        source_updated_at=r["updated_at"]))
    report.merged["readers"] = len(changed)


def _as_datetime(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime(value.year, value.month, value.day)


def _birth_flag(row: dict) -> str | None:
    """The ILS's birth date contradicts the ID number: flag it, never merge blindly."""
    stored, from_id = row.get("birth_date"), row.get("id_birth_date")
    if stored is None or from_id is None:
        return None
    return None if stored.date() == from_id else "birth_date_mismatch"


def _merge_items(conn: Connection, consortium: Consortium, member: Member, rows: list[dict],
                 report: MergeReport) -> None:
    changed = _upsert_mirror(conn, member_items, lambda r: member.code, rows, lambda r: dict(
        barcode=r["barcode"], is_copy=bool(r["is_copy"]),
        holding_member=member.member_for_branch(r["holding_branch"]),
        on_loan_due=r["on_loan_due"], last_seen=r["last_seen"],
        source_updated_at=r["updated_at"]))
    catalog = []
    for r in changed:
        owner = consortium.owner_of_barcode(r["barcode"])
        holder = owner if r["is_copy"] else member.member_for_branch(r["holding_branch"])
        catalog.append(dict(barcode=r["barcode"], owner=owner, holder=holder,
                            status=HOME if holder == owner else "away", on_loan=False))
        report.touched.add(r["barcode"])
    bulk_upsert(conn, items, catalog, ("barcode",))
    report.merged["items"] = len(changed)


def _merge_loans(conn: Connection, member: Member, rows: list[dict], now: datetime,
                 report: MergeReport) -> None:
    reader_of = _reader_keys(conn, member.code, {str(r["reader_local_id"]) for r in rows})
    changed = _upsert_mirror(
        conn, loans, lambda r: member.member_for_branch(r["branch"]), rows, lambda r: dict(
            barcode=r["barcode"], reader_key=reader_of.get(str(r["reader_local_id"])),
            issued_at=r["issued_at"], due_at=r["due_at"], renewals=int(r["renewals"] or 0),
            source_returned_at=r["returned_at"], source_updated_at=r["updated_at"]))
    report.merged["loans"] = len(changed)
    echoes = _closed_by_hub(conn, member, changed)
    events = [ev for ev in loan_events(changed, member.member_for_branch)
              if not (ev.kind == "returned" and ev.loan in echoes)]
    report.events += _insert_events(conn, events, now, report)


def _closed_by_hub(conn: Connection, member: Member, rows: list[dict]) -> set[tuple[str, str]]:
    """Loans whose return the hub itself wrote into this ILS: their rows are an echo.

    The central store derived the return (returned elsewhere) and the write-back set the same
    time at the source; reading it back is no new check-in and must add no event.
    """
    returned = {(member.member_for_branch(r["branch"]), str(r["local_id"])): r["returned_at"]
                for r in rows if r["returned_at"] is not None}
    echoes = set()
    for part in _chunks(sorted(returned)):
        q = select(loans.c.member, loans.c.local_id, loans.c.pushed_returned_at).where(
            loans.c.member.in_({k[0] for k in part}), loans.c.local_id.in_([k[1] for k in part]),
            loans.c.pushed_returned_at.is_not(None))
        for r in conn.execute(q):
            key = (r.member, r.local_id)
            if key in returned and _same_second(r.pushed_returned_at, returned[key]):
                echoes.add(key)
    return echoes


def _same_second(a: datetime, b: datetime) -> bool:
    return a.replace(microsecond=0) == b.replace(microsecond=0)


def _reader_keys(conn: Connection, member: str, local_ids: set[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in _chunks(sorted(local_ids)):
        q = select(reader_accounts.c.local_id, reader_accounts.c.reader_key).where(
            reader_accounts.c.member == member, reader_accounts.c.local_id.in_(part))
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


def _sightings(conn: Connection, member: Member, item_rows: list[dict], now: datetime,
               report: MergeReport) -> None:
    candidates = [r for r in item_rows if r["barcode"] in report.touched]
    state = _item_states(conn, sorted({r["barcode"] for r in candidates}))

    def already_there(barcode: str) -> bool:
        s = state.get(barcode)
        return s is not None and s.holder == member.code and not s.on_loan

    events = sighting_events(candidates, member.code, member.member_for_branch, already_there)
    report.events += _insert_events(conn, events, now, report)


def _item_states(conn: Connection, barcodes: list[str]) -> dict:
    found = {}
    for part in _chunks(barcodes):
        for row in conn.execute(select(items).where(items.c.barcode.in_(part))):
            found[row.barcode] = row
    return found


def _refresh_items(conn: Connection, consortium: Consortium, report: MergeReport,
                   now: datetime) -> None:
    """Replay every touched item, store its state and loan closures, and queue commands."""
    for part in _chunks(sorted(report.touched)):
        history = _events_by_barcode(conn, part)
        mirrors = _mirrors(conn, part)
        open_loans = _open_at_source(conn, part)
        states = {b: replay(consortium.owner_of_barcode(b), history[b])
                  for b in part if b in history}
        _store_states(conn, states)
        for barcode, state in states.items():
            cmds = commands_for(barcode, state, mirrors.get(barcode, []),
                                open_loans.get(barcode, []))
            report.commands += _queue(conn, cmds, now)
            _supersede_stale(conn, barcode, {(c.target, c.command_key) for c in cmds})


def _supersede_stale(conn: Connection, barcode: str, wanted: set[tuple[str, str]]) -> None:
    """Pending commands for this item that the new state no longer asks for are out of date:
    applying them later would regress newer state (the item moved on in the meantime)."""
    q = select(outbox.c.id, outbox.c.target, outbox.c.command_key).where(
        outbox.c.barcode == barcode, outbox.c.status == "pending")
    stale = [r.id for r in conn.execute(q) if (r.target, r.command_key) not in wanted]
    if stale:
        conn.execute(update(outbox).where(outbox.c.id.in_(stale)).values(status="superseded"))


def _events_by_barcode(conn: Connection, barcodes: list[str]) -> dict[str, list[Event]]:
    found: dict[str, list[Event]] = {}
    q = select(circulation_events).where(circulation_events.c.barcode.in_(barcodes))
    for r in conn.execute(q):
        loan = (r.loan_member, r.loan_local_id) if r.loan_member else None
        found.setdefault(r.barcode, []).append(
            Event(r.event_key, r.barcode, r.kind, r.member, r.at, loan, r.due_at))
    return found


def _mirrors(conn: Connection, barcodes: list[str]) -> dict[str, list[MirrorRow]]:
    found: dict[str, list[MirrorRow]] = {}
    q = select(member_items).where(member_items.c.barcode.in_(barcodes))
    for r in conn.execute(q):
        found.setdefault(r.barcode, []).append(
            MirrorRow(r.member, r.holding_member, _py(r.on_loan_due)))
    return found


def _open_at_source(conn: Connection, barcodes: list[str]) -> dict[str, list[OpenLoanAtSource]]:
    found: dict[str, list[OpenLoanAtSource]] = {}
    q = select(loans.c.member, loans.c.local_id, loans.c.barcode).where(
        loans.c.barcode.in_(barcodes), loans.c.source_returned_at.is_(None))
    for r in conn.execute(q):
        found.setdefault(r.barcode, []).append(OpenLoanAtSource((r.member, r.local_id)))
    return found


def _store_states(conn: Connection, states: dict) -> None:
    rows = [dict(barcode=b, owner=s.owner, holder=s.holder, status=s.status,
                 on_loan=s.open_loan is not None, due=s.due, lent_by=s.lent_by,
                 state_at=s.state_at) for b, s in states.items()]
    bulk_upsert(conn, items, rows, ("barcode",),
                ("owner", "holder", "status", "on_loan", "due", "lent_by", "state_at"))
    closures = [dict(m=m, lid=lid, at=c.returned_at, where=c.return_member)
                for s in states.values() for (m, lid), c in s.closures.items()]
    if closures:
        conn.execute(update(loans).where(
            loans.c.member == bindparam("m"), loans.c.local_id == bindparam("lid"),
        ).values(returned_at=bindparam("at"), return_member=bindparam("where")), closures)


def _queue(conn: Connection, commands, now: datetime) -> int:
    added = 0
    for cmd in commands:
        stmt = upsert_insert(conn, outbox).values(
            target=cmd.target, command_key=cmd.command_key, kind=cmd.kind, barcode=cmd.barcode,
            payload=cmd.payload, status="pending", attempts=0, created_at=now)
        res = conn.execute(stmt.on_conflict_do_nothing(index_elements=["target", "command_key"]))
        if not res.rowcount:
            continue
        added += 1
    return added


def _advance_marks(conn: Connection, member: str, extract: Extract, now: datetime) -> None:
    """Move each entity's watermark to the newest cursor read, never backwards."""
    for entity, frame in extract.frames.items():
        if frame.empty or frame["updated_at"].isna().all():
            continue
        newest = frame["updated_at"].max().to_pydatetime()
        last_key = str(frame.loc[frame["updated_at"] == frame["updated_at"].max(),
                                 "local_id"].iloc[-1])
        old = extract.marks[entity].cursor
        if old is not None and newest <= old:
            continue
        stmt = upsert_insert(conn, watermarks).values(
            member=member, entity=entity, cursor_value=newest, last_key=last_key, updated_at=now)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["member", "entity"],
            set_={"cursor_value": newest, "last_key": last_key, "updated_at": now}))

