"""`circhub member ...`: one member's run history, and taking it out of the schedule for a while.

    circhub member history CODE [--limit 20] [--json]   its latest sync runs, newest first
    circhub member pause CODE --reason TEXT             sync and push pass it by
    circhub member resume CODE                          back in the schedule

A pause is kept in the central store (`member_pauses`), so every worker and the next person on
duty see it in `circhub status`; the config's `sync = false` is the permanent switch (a member
still onboarding), which needs the config redeployed.
"""

from __future__ import annotations

import typer
from rich.table import Table

from circhub.cli.common import ConfigOpt, JsonOpt

member_app = typer.Typer(no_args_is_help=True,
                         help="One member: its run history; pause and resume it.")


@member_app.command("history")
def history(code: str, config: str = ConfigOpt, limit: int = 20,
            as_json: bool = JsonOpt) -> None:
    """Its latest sync runs, newest first: when, how long, what was read, or the error."""
    from sqlalchemy import select

    from circhub.cli.common import console, known_member, print_json, runtime, say_empty
    from circhub.domain.schema import sync_runs

    rt = runtime(config)
    known_member(rt, code)
    with rt.store.connect() as conn:
        runs = conn.execute(select(sync_runs).where(sync_runs.c.member == code)
                            .order_by(sync_runs.c.id.desc()).limit(limit)).all()
    if as_json:
        print_json([{"started_at": r.started_at, "finished_at": r.finished_at,
                     "status": r.status, "counts": r.counts, "error": r.error} for r in runs])
        return
    if not runs:
        return say_empty(f"sync runs of {code} yet")
    table = Table("started", "took", "status", "read", "merged", "error",
                  title=f"{code} {rt.consortium.member(code).name}: latest sync runs")
    for r in runs:
        took = (r.finished_at - r.started_at).total_seconds() if r.finished_at else None
        counts = r.counts or {}
        table.add_row(f"{r.started_at:%Y-%m-%d %H:%M:%S}",
                      f"{took:.1f} s" if took is not None else "-",
                      r.status if r.status != "failed" else "[red]failed[/]",
                      _counts(counts.get("extracted")), _counts(counts.get("merged")),
                      r.error or "")
    console.print(table)


def _counts(per_entity: dict | None) -> str:
    return ", ".join(f"{e} {n}" for e, n in (per_entity or {}).items())


@member_app.command("pause")
def pause(code: str, reason: str = typer.Option(..., "--reason", help="Why, for the next "
                                                "person on duty (shown in `circhub status`)."),
          config: str = ConfigOpt) -> None:
    """Take a member out of the schedule: sync and push pass it by until it is resumed."""
    from circhub.cli.common import console, known_member, runtime, usage_error
    from circhub.tasks.sync.pauses import pause_member

    rt = runtime(config)
    known_member(rt, code)
    try:
        pause_member(rt.store, rt.consortium, code, reason)
    except ValueError as exc:
        usage_error(str(exc))
    console.print(f"{code} paused: {reason.strip()}; its write-backs wait pending; "
                  f"`circhub member resume {code}` puts it back", highlight=False)


@member_app.command("resume")
def resume(code: str, config: str = ConfigOpt) -> None:
    """Put a paused member back in the schedule (the next sync reads on from its watermark)."""
    from circhub.cli.common import console, known_member, runtime
    from circhub.tasks.sync.pauses import resume_member

    rt = runtime(config)
    known_member(rt, code)
    if resume_member(rt.store, rt.consortium, code):
        console.print(f"{code} resumed: the next sync reads on from where it stopped")
    else:
        console.print(f"{code} was not paused")
