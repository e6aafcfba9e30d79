"""`circhub outbox ...`: the write-backs owed to member ILS, and the conflicts held back.

    circhub outbox list [--status dead] [--member CODE]   commands by status (dry runs marked)
    circhub outbox retry ID... | --member CODE            dead or unsupported → pending again
    circhub outbox resolve ID... --note TEXT              settled by hand: never applied
    circhub outbox transfer BARCODE...                     the owner asks its books home
    circhub outbox exceptions [--all] [--barcode B]       conflicts listed with their reason
    circhub outbox release ID --note TEXT                 let the hub's rule through
"""

from __future__ import annotations

import typer
from rich.table import Table

from circhub.cli.common import ConfigOpt, JsonOpt

outbox_app = typer.Typer(no_args_is_help=True,
                         help="Write-backs owed to member ILS: list, retry, resolve; "
                              "transfers home; circulation exceptions.")
NoteOpt = typer.Option(..., "--note", help="What was decided, for the record.")


def _ui():
    from circhub.cli.common import console, err, runtime

    return runtime, console, err


@outbox_app.command("list")
def list_commands(config: str = ConfigOpt, status: str = "pending",
                  member: str = typer.Option(None, "--member", "-m"),
                  limit: int = 50, as_json: bool = JsonOpt) -> None:
    """Commands by status: pending, applied, superseded, dead, resolved, unsupported."""
    from circhub.cli.common import known_member, one_of, print_json, say_empty
    from circhub.tasks.writeback.outbox import STATUSES
    from circhub.tasks.writeback.outbox import list_commands as rows_of

    runtime, console, _ = _ui()
    one_of("--status", status, STATUSES)
    rt = runtime(config)
    if member:
        known_member(rt, member)
    dry = {m.code for m in rt.consortium.members if not m.writeback}
    rows = rows_of(rt.store, status, member, limit)
    if as_json:
        print_json([_command_json(r, dry) for r in rows])
        return
    if not rows:
        return say_empty(f"{status} write-backs" + (f" for {member}" if member else ""))
    table = Table("id", "member", "kind", "barcode", "holder", "due", "attempts",
                  "next attempt", "outcome / last error")
    for r in rows:
        table.add_row(str(r.id), r.target, r.kind, r.barcode, r.payload.get("holder", ""),
                      r.payload.get("due_at") or "", str(r.attempts),
                      f"{r.next_attempt_at:%Y-%m-%d %H:%M:%S}" if r.next_attempt_at else "",
                      _mode(r, dry) or r.last_error or r.outcome or "")
    console.print(table)


def _mode(r, dry: set[str]) -> str:
    return "dry run (write-back off)" if r.target in dry and r.status == "pending" else ""


def _command_json(r, dry: set[str]) -> dict:
    return {"id": r.id, "member": r.target, "kind": r.kind, "barcode": r.barcode,
            "status": r.status, "payload": r.payload, "attempts": r.attempts,
            "next_attempt_at": r.next_attempt_at, "last_error": r.last_error,
            "outcome": r.outcome, "dry_run": bool(_mode(r, dry))}


def _known_ids(store, ids: list[int]) -> None:
    """Unknown command ids are an error (exit 2) naming them."""
    from circhub.cli.common import usage_error
    from circhub.tasks.writeback.outbox import existing_ids

    missing = sorted(set(ids) - existing_ids(store, ids))
    if missing:
        usage_error(f"no write-back command with id {', '.join(map(str, missing))}; "
                    "`circhub outbox list --status dead` lists the ones to retry or resolve")


@outbox_app.command("retry")
def retry(ids: list[int] = typer.Argument(None),
          member: str = typer.Option(None, "--member", "-m",
                                     help="Every dead command of this member."),
          config: str = ConfigOpt) -> None:
    """Dead (or unsupported) commands back to pending, with a fresh attempt budget."""
    from circhub.cli.common import known_member, usage_error
    from circhub.tasks.writeback.outbox import retry_commands

    runtime, console, err = _ui()
    if not ids and not member:
        usage_error("name the command ids or --member")
    rt = runtime(config)
    if member:
        known_member(rt, member)
    _known_ids(rt.store, ids or [])
    n = retry_commands(rt.store, ids or (), member)
    if not n:
        err.print("nothing to retry: only dead or unsupported commands are retried")
        raise typer.Exit(1)
    console.print(f"{n} command(s) pending again; `circhub push` applies them")


@outbox_app.command("resolve")
def resolve(ids: list[int], note: str = NoteOpt, config: str = ConfigOpt) -> None:
    """Dead (or unsupported) commands settled by hand at the ILS: the hub never applies them."""
    from circhub.tasks.writeback.outbox import resolve_commands

    runtime, console, err = _ui()
    rt = runtime(config)
    _known_ids(rt.store, ids)
    n = resolve_commands(rt.store, ids, note)
    if not n:
        err.print("nothing to resolve: only dead or unsupported commands are resolved")
        raise typer.Exit(1)
    console.print(f"{n} command(s) resolved")


@outbox_app.command("transfer")
def transfer(barcodes: list[str], config: str = ConfigOpt) -> None:
    """The owner asks for its books back: the member holding each gets a transfer."""
    from circhub.tasks.circulation.transfers import TransferRefused, request_transfer

    runtime, console, err = _ui()
    rt = runtime(config)
    refused = 0
    for barcode in barcodes:
        try:
            t = request_transfer(rt.store, rt.consortium, barcode)
        except TransferRefused as exc:
            err.print(f"[yellow]refused:[/] {exc}")
            refused += 1
            continue
        where = f"on loan at {t.holder}" if t.on_loan else f"on the shelf at {t.holder}"
        console.print(f"{barcode}: asked home to {t.owner}; {where}; {t.commands} command(s)")
    if refused:
        raise typer.Exit(1)


@outbox_app.command("exceptions")
def exceptions(config: str = ConfigOpt,
               all_: bool = typer.Option(False, "--all", help="Also waiting, released, "
                                         "cleared."),
               barcode: str = typer.Option(None), limit: int = 100) -> None:
    """Circulation conflicts held back from write-back, with the reason."""
    from circhub.tasks.circulation.conflicts import CLEARED, OPEN, RELEASED, WAITING
    from circhub.tasks.circulation.operators import list_exceptions

    runtime, console, _ = _ui()
    statuses = (WAITING, OPEN, RELEASED, CLEARED) if all_ else (OPEN,)
    table = Table("id", "barcode", "reason", "status", "members", "detail", "since")
    for r in list_exceptions(runtime(config).store, statuses, barcode, limit):
        table.add_row(str(r.id), r.barcode, r.reason, r.status, ", ".join(r.members),
                      r.detail + (f" (waiting on {r.waiting_on})" if r.status == WAITING
                                  else ""), f"{r.first_seen_at:%Y-%m-%d %H:%M}")
    console.print(table)


@outbox_app.command("release")
def release(exception_id: int, note: str = NoteOpt, config: str = ConfigOpt) -> None:
    """Let the hub's rule through for one exception (the event counts, the write-back goes)."""
    from circhub.tasks.circulation.operators import release as release_one

    runtime, console, err = _ui()
    rt = runtime(config)
    try:
        row = release_one(rt.store, rt.consortium, exception_id, note)
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    console.print(f"exception #{row.id} ({row.reason}, {row.barcode}) released; "
                  "`circhub push` applies what it held back")
