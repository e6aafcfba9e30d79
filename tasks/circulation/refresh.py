"""Replay touched items inside a merge's central transaction: their state, their loans'
closures, their conflicts and the outbox commands the new state causes.

Runs on the connection of the caller's transaction (a member's merge, a transfer request, an
exception released), so the commands commit together with the data that caused them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, select, update

from circhub.connections.bulk import bulk_upsert
from circhub.connections.config import Consortium
from circhub.connections.store import in_chunks, one_of
from circhub.domain.circulation import Event, ItemState, MirrorRow, OpenLoanAtSource, Siblings
from circhub.domain.conflicts import assess_item
from circhub.domain.events import _py
from circhub.domain.schema import circulation_events, items, loans, member_items, watermarks
from circhub.tasks.circulation import conflicts as exceptions
from circhub.tasks.writeback.outbox import queue_commands

# Above this many items (a backfill chunk), the ones without any circulation are dropped with
# one query first: most of a load never circulated, and sorting and chunking 50,000 barcodes
# to find that out cost ~0.5 µs each.
PREFILTER_FROM = 1000


def refresh_items(conn: Connection, consortium: Consortium, barcodes: Iterable[str],
                  now: datetime, merging: str | None = None) -> int:
    """Replay the items; returns how many commands were queued. `merging` is the member whose
    data this transaction brings (conflicts waiting on it are looked at again)."""
    todo = set(barcodes) | exceptions.waiting_barcodes(conn, merging)
    if len(todo) > PREFILTER_FROM:
        todo = _with_history(conn, todo)
    todo = sorted(todo)
    synced = set(conn.execute(select(watermarks.c.member).where(
        watermarks.c.entity == "items")).scalars())
    ctx = _Context(synced, _siblings(consortium), now, merging)
    added = 0
    for part in in_chunks(todo):
        added += _refresh_part(conn, consortium, part, ctx)
    return added


def _with_history(conn: Connection, barcodes: set[str]) -> set[str]:
    q = select(circulation_events.c.barcode).distinct().where(
        one_of(circulation_events.c.barcode, list(barcodes)))
    return set(conn.execute(q).scalars())


@dataclass(frozen=True)
class _Context:
    synced: set[str]  # members whose items have been read at least once
    siblings: Siblings
    now: datetime
    merging: str | None


def _siblings(consortium: Consortium) -> Siblings:
    groups: dict[str, set[str]] = {}
    for m in consortium.members:
        if m.instance:
            groups.setdefault(m.instance, set()).add(m.code)
    return frozenset(frozenset(g) for g in groups.values() if len(g) > 1)


def _refresh_part(conn: Connection, consortium: Consortium, part: list[str],
                  ctx: _Context) -> int:
    history = _events_by_barcode(conn, part)
    # Catalogued, never circulated: nothing to replay, so nothing more to read for them.
    part = [b for b in part if b in history]
    if not part:
        return 0
    mirrors = _mirrors(conn, part)
    open_loans = _open_at_source(conn, part)
    known = exceptions.known(conn, part)
    states: dict[str, ItemState] = {}
    commands: dict[str, list] = {}
    for barcode in part:
        if barcode not in history:
            continue  # catalogued, never circulated: its item row says all there is
        owner = consortium.owner_of_barcode(barcode)
        rows = known.get(barcode, [])
        found = assess_item(barcode, owner, history[barcode], mirrors.get(barcode, []),
                            open_loans.get(barcode, []), exceptions.decisions(rows),
                            owner in ctx.synced, ctx.siblings)
        exceptions.record(conn, barcode, found.conflicts, rows, ctx.merging, ctx.now)
        if found.state is None:
            continue  # no owner: no state to keep, nothing to write anywhere
        states[barcode] = found.state
        commands[barcode] = found.commands
    added = queue_commands(conn, commands, ctx.now)
    _store_states(conn, states)
    return added


def _events_by_barcode(conn: Connection, barcodes: list[str]) -> dict[str, list[Event]]:
    found: dict[str, list[Event]] = {}
    q = select(circulation_events).where(one_of(circulation_events.c.barcode, barcodes))
    for r in conn.execute(q):
        loan = (r.loan_member, r.loan_local_id) if r.loan_member else None
        found.setdefault(r.barcode, []).append(
            Event(r.event_key, r.barcode, r.kind, r.member, r.at, loan, r.due_at))
    return found


def _mirrors(conn: Connection, barcodes: list[str]) -> dict[str, list[MirrorRow]]:
    found: dict[str, list[MirrorRow]] = {}
    q = select(member_items).where(one_of(member_items.c.barcode, barcodes))
    for r in conn.execute(q):
        found.setdefault(r.barcode, []).append(
            MirrorRow(r.member, r.holding_member, _py(r.on_loan_due), bool(r.is_copy)))
    return found


def _open_at_source(conn: Connection, barcodes: list[str]) -> dict[str, list[OpenLoanAtSource]]:
    found: dict[str, list[OpenLoanAtSource]] = {}
    q = select(loans.c.member, loans.c.local_id, loans.c.barcode).where(
        one_of(loans.c.barcode, barcodes), loans.c.source_returned_at.is_(None))
    for r in conn.execute(q):
        found.setdefault(r.barcode, []).append(OpenLoanAtSource((r.member, r.local_id)))
    return found


def _store_states(conn: Connection, states: dict[str, ItemState]) -> None:
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
