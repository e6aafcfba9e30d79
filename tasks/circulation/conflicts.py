"""The exceptions list: circulation conflicts the hub will not settle by itself.

Each conflict (see circhub.domain.conflicts) is one row per (barcode, reason, subject):

- waiting: a member whose data may still explain it has not synced since; held, not shown.
  That member's next merge looks at it again (it cannot be explained by anyone else).
- open: shown to operators; what it concerns stays held back.
- released: an operator let the hub's rule through (`circhub outbox release`).
- cleared: data that arrived later explained it, or the member fixed its row.

Replay conflicts are found again on every replay of their item, so one that is no longer found
is cleared. Two-owner claims come from validation (a member's own item carrying another
member's barcode prefix is quarantined) and clear when that row arrives valid.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, insert, select, update

from circhub.connections.config import Consortium, Member
from circhub.connections.profile import load_profile
from circhub.connections.store import in_chunks, one_of
from circhub.domain.circulation import Conflict
from circhub.domain.conflicts import TWO_OWNERS, Decisions
from circhub.domain.schema import circulation_exceptions as exc

if TYPE_CHECKING:
    from circhub.tasks.sync.validate import Validated

WAITING, OPEN, RELEASED, CLEARED = "waiting", "open", "released", "cleared"
REPLAY, QUARANTINE = "replay", "quarantine"
ACTIVE = (WAITING, OPEN)


def known(conn: Connection, barcodes: list[str]) -> dict[str, list]:
    found: dict[str, list] = {}
    for r in conn.execute(select(exc).where(one_of(exc.c.barcode, barcodes))):
        found.setdefault(r.barcode, []).append(r)
    return found


def decisions(rows: list) -> Decisions:
    released = frozenset(f"{r.reason}:{r.subject}" for r in rows if r.status == RELEASED)
    claims = {r.subject.split(":")[0]: f"{r.reason}:{r.subject}" for r in rows
              if r.source == QUARANTINE and r.status != CLEARED}
    return Decisions(released, claims)


def waiting_barcodes(conn: Connection, member: str | None) -> set[str]:
    """Items whose conflicts wait for this member's data: its merge replays them again."""
    if member is None:
        return set()
    q = select(exc.c.barcode).where(exc.c.status == WAITING, exc.c.waiting_on == member)
    return set(conn.execute(q).scalars())


def record(conn: Connection, barcode: str, conflicts: list[Conflict], rows: list,
           merging: str | None, now: datetime) -> None:
    """Store what one replay of an item found; clear what it no longer finds."""
    old = {(r.reason, r.subject): r for r in rows}
    for c in conflicts:
        # Waiting until the member that may explain it has merged: this merge, or a later one.
        status = WAITING if c.waiting_on and c.waiting_on != merging else OPEN
        _upsert(conn, barcode, c, REPLAY, status, old.get((c.reason, c.subject)), now)
    found = {(c.reason, c.subject) for c in conflicts}
    gone = [r.id for r in rows if r.source == REPLAY and r.status in ACTIVE
            and (r.reason, r.subject) not in found]
    if gone:
        conn.execute(update(exc).where(exc.c.id.in_(gone)).values(
            status=CLEARED, resolved_at=now, note="explained by data that arrived later"))


def _upsert(conn: Connection, barcode: str, c: Conflict, source: str, status: str, row,
            now: datetime) -> None:
    if row is None:
        conn.execute(insert(exc).values(
            barcode=barcode, reason=c.reason, subject=c.subject, source=source,
            detail=c.detail, members=list(c.members), waiting_on=c.waiting_on, status=status,
            first_seen_at=now, last_seen_at=now))
        return
    values = {"last_seen_at": now, "detail": c.detail}
    if row.status in (WAITING, CLEARED):
        values.update(status=status, waiting_on=c.waiting_on, resolved_at=None, note=None)
    conn.execute(update(exc).where(exc.c.id == row.id).values(**values))


def record_claims(conn: Connection, consortium: Consortium, member: Member,
                  validated: Validated, now: datetime) -> set[str]:
    """A member's own item carrying another member's barcode prefix: one barcode, two owners.

    Validation quarantined the row; the claim keeps that member's loans of its own book out
    of the owner's book's history. Returns the barcodes whose conflicts changed.
    """
    copy_type = load_profile(member.profile).copy_item_type
    touched = set()
    for bad in validated.bad:
        barcode = bad.row.get("barcode")
        owner = consortium.owner_of_barcode(barcode)
        if (bad.entity != "items" or "barcode_matches_owner" not in bad.rules
                or owner in (None, member.code) or bad.row.get("item_type") == copy_type):
            continue
        claim = Conflict(TWO_OWNERS, f"{member.code}:{bad.row_key}",
                         f"{member.code} catalogues {barcode} as its own item (its local id "
                         f"{bad.row_key}), but the barcode's prefix belongs to {owner}",
                         (owner, member.code))
        row = known(conn, [barcode]).get(barcode, [])
        same = next((r for r in row if (r.reason, r.subject) == (claim.reason, claim.subject)),
                    None)
        _upsert(conn, barcode, claim, QUARANTINE, OPEN, same, now)
        touched.add(barcode)
    return touched | _claims_fixed(conn, member, validated, now)


def _claims_fixed(conn: Connection, member: Member, validated: Validated,
                  now: datetime) -> set[str]:
    """The member's row arrived valid (a consortium copy after all, or a new barcode)."""
    frame = validated.good.get("items")
    if frame is None or frame.empty or not _claims_open(conn, member.code):
        return set()  # nothing held against this member: no key list to send
    subjects = [f"{member.code}:{k}" for k in frame["local_id"].astype(str)]
    touched: set[str] = set()
    for part in in_chunks(subjects):
        q = select(exc.c.id, exc.c.barcode).where(
            exc.c.source == QUARANTINE, exc.c.status.in_(ACTIVE), one_of(exc.c.subject, part))
        rows = conn.execute(q).all()
        if rows:
            conn.execute(update(exc).where(exc.c.id.in_([r.id for r in rows])).values(
                status=CLEARED, resolved_at=now, note=f"{member.code}'s row arrived valid"))
            touched.update(r.barcode for r in rows)
    return touched


def _claims_open(conn: Connection, member: str) -> bool:
    """Whether any two-owner claim against one of this member's rows is still active."""
    q = select(exc.c.id).where(exc.c.source == QUARANTINE, exc.c.status.in_(ACTIVE),
                               exc.c.subject.startswith(f"{member}:", autoescape=True)).limit(1)
    return conn.execute(q).first() is not None
