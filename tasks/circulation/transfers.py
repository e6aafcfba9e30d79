"""Return home: an owner asks for its books back.

The request is a circulation event of its own ('transfer_requested', made by the hub), so the
replay decides what it means like any other: a transfer command to the member whose shelf
holds the book (Koha: a `branchtransfers` row, reason ReturnToHome), and, once the owner's own
desk has the book in hand, a 'transfer_arrived' command to every member that was asked.
Event, state and commands commit in one central transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from circhub.connections.config import Consortium
from circhub.connections.store import upsert_insert
from circhub.domain.circulation import TRANSFER_REQUESTED
from circhub.domain.schema import circulation_events, items
from circhub.tasks.circulation.refresh import refresh_items


class TransferRefused(ValueError):
    """The book cannot be asked home: unknown, or already there."""


@dataclass(frozen=True)
class TransferRequest:
    barcode: str
    owner: str
    holder: str
    on_loan: bool
    commands: int  # queued now (0 while on loan: the desk it is returned to is asked then)


def request_transfer(store: Engine, consortium: Consortium, barcode: str,
                     at: datetime | None = None) -> TransferRequest:
    at = (at or datetime.now()).replace(microsecond=0)
    owner = consortium.owner_of_barcode(barcode)
    with store.begin() as conn:
        item = conn.execute(select(items).where(items.c.barcode == barcode)).one_or_none()
        if item is None or owner is None:
            raise TransferRefused(f"{barcode}: not a book the hub knows")
        if item.holder == owner:
            raise TransferRefused(f"{barcode}: already at its owner {owner}")
        stmt = upsert_insert(conn, circulation_events).values(
            event_key=f"{owner}:transfer:{barcode}:{at.isoformat(sep=' ')}", barcode=barcode,
            kind=TRANSFER_REQUESTED, member=owner, at=at, recorded_at=datetime.now())
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["event_key"]))
        queued = refresh_items(conn, consortium, [barcode], datetime.now())
    return TransferRequest(barcode, owner, item.holder, bool(item.on_loan), queued)
