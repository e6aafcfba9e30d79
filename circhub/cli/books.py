"""`circhub books`: where each member's books are now, how many were lent again away from
home, and how long they stay away (circhub.tasks.reporting.bookflow)."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.table import Table

from circhub.cli.common import ConfigOpt, JsonOpt

books_app = typer.Typer(help="Book-flow facts per owning member.")


@books_app.callback(invoke_without_command=True)
def books(config: str = ConfigOpt, top: int = typer.Option(3, help="Holders shown per owner."),
          as_json: bool = JsonOpt) -> None:
    """Per owning member: books at home, where the others are, lent again away, time away."""
    from circhub.cli.common import console, print_json, runtime, say_empty
    from circhub.tasks.reporting.bookflow import book_flow

    now = datetime.now()
    flows = book_flow(runtime(config).store)
    if as_json:
        print_json([{"owner": f.owner, "books": f.books, "at_home": f.at_home,
                     "away_now": f.away_now(), "held_at": dict(f.held_at),
                     "lent_again_away": f.lent_again_away, **f.days_away(now)}
                    for f in flows.values()])
        return
    if not flows:
        return say_empty("books in the central store yet")
    table = Table("owner", "books", "at home", "away now (where)", "lent again away",
                  "returned home", "median days away", "longest", "away now: median days")
    for f in flows.values():
        where = ", ".join(f"{m} {n}" for m, n in f.held_at.most_common(top))
        d = f.days_away(now)
        table.add_row(f.owner, str(f.books), str(f.at_home),
                      f"{f.away_now()}" + (f" ({where})" if where else ""),
                      str(f.lent_again_away), str(d["returned home"]),
                      *(str(v) if v is not None else "" for v in (
                          d["median days away"], d["longest days away"],
                          d["away now, median days so far"])))
    console.print(table)
