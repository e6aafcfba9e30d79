"""Compare what the hub believes, and what each ILS shows, with where the books really are."""

from __future__ import annotations

from sqlalchemy import Engine, select

from circhub.domain.schema import items
from circhub.simulator.world import World


def central_differences(world: World, store: Engine) -> list[str]:
    """Books whose central state (holder, lending member) differs from the simulated truth."""
    with store.connect() as conn:
        state = {r.barcode: r for r in conn.execute(select(items))}
    diffs = []
    for book in world.books.values():
        row = state.get(book.barcode)
        if row is None:
            diffs.append(f"{book.barcode}: missing from the central store")
            continue
        lender = book.loan[0] if book.loan else None
        if (row.holder, row.lent_by) != (book.at, lender):
            diffs.append(f"{book.barcode}: central says holder {row.holder} lent by "
                         f"{row.lent_by}; truth is at {book.at} lent by {lender}")
    return diffs


def ils_differences(world: World) -> list[str]:
    """Owner ILS rows that do not show the book's real holder, and loans open in the wrong ILS."""
    diffs = []
    for book in world.books.values():
        view = world.desks[book.owner].item_view(book.barcode)
        if view["holding"] != book.at or bool(view["onloan"]) != bool(book.loan):
            diffs.append(f"{book.barcode}: owner {book.owner} shows {view['holding']} "
                         f"onloan={view['onloan']}; truth {book.at} on loan={bool(book.loan)}")
        open_here = view["open_loan"]
        lent_by_owner = book.loan is not None and book.loan[0] == book.owner
        if bool(open_here) != lent_by_owner:
            diffs.append(f"{book.barcode}: owner {book.owner} has loan open={open_here}; "
                         f"truth lent by owner={lent_by_owner}")
    return diffs
