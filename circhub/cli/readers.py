"""`circhub reader ...`: recognise a reader, review contradicting accounts, reader figures, and
rotate the reader-ID key.

Secrets (an ID number, a new key) are never taken as command-line arguments, which shells keep
in their history and `ps` shows to everyone: they come from a hidden prompt, stdin or an
environment variable, and are never printed back.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime

import typer
from rich.table import Table

from circhub.cli.common import ConfigOpt, JsonOpt

reader_app = typer.Typer(no_args_is_help=True,
                         help="Readers across members: lookup, review, stats, key rotation.")
NEW_KEY_ENV = "CIRCHUB_NEW_ID_KEY"


def _ui():
    from circhub.cli.common import console, err, runtime

    return runtime, console, err


def _read_hidden(label: str) -> str:
    """From a hidden prompt at a terminal, else the first line of stdin; never echoed."""
    if sys.stdin.isatty():
        return typer.prompt(label, hide_input=True)
    return sys.stdin.readline().strip()


@reader_app.command("lookup")
def lookup(config: str = ConfigOpt) -> None:
    """Is the holder of an ID number a consortium reader: home, accounts, loans anywhere.

    The number is read from a hidden prompt (or stdin) and shown masked only.
    """
    from circhub.tasks.readers.lookup import recognise

    runtime, console, _ = _ui()
    rt = runtime(config)  # no key, no start: before anything is read
    found = recognise(rt.store, rt.id_key, _read_hidden("ID number (not shown)"))
    names = {m.code: m.name for m in rt.consortium.members}
    console.print(f"ID {found.id_masked}: {found.id_status}"
                  + (f" ({found.rule})" if found.rule else ""))
    if not found.is_reader:
        console.print("not a consortium reader")
        raise typer.Exit(0 if found.id_status in ("valid", "permit") else 1)
    home = found.home_member
    console.print(f"consortium reader; home member {home} {names.get(home, '')}".rstrip())
    for a in found.accounts:
        flag = f"  [yellow]flag: {a.flag}[/]" if a.flag else ""
        console.print(f"  account at {a.member} {names.get(a.member, '')}: card "
                      f"{a.card_masked or '-'}{flag}")
    console.print(f"on loan anywhere: {len(found.on_loan)}")
    for ln in found.on_loan:
        due = f"{ln.due_at:%Y-%m-%d}" if ln.due_at else "-"
        console.print(f"  {ln.barcode} lent by {ln.member}, owner {ln.owner}, due {due}")


@reader_app.command("review")
def review(config: str = ConfigOpt, member: str = typer.Option(None, "--member", "-m"),
           limit: int = 100) -> None:
    """Accounts whose birth date or sex contradicts their ID number, for a person to check."""
    from circhub.tasks.readers.lookup import flagged_accounts

    runtime, console, _ = _ui()
    rt = runtime(config)
    table = Table("member", "local id", "card", "ID", "flag", "reader's home")
    for f in flagged_accounts(rt.store, member, limit):
        table.add_row(f.member, f.local_id, f.card_masked or "", f.id_masked, f.flag,
                      f.home_member or "")
    console.print(table)


@reader_app.command("stats")
def stats(config: str = ConfigOpt,
          since: str = typer.Option(None, help="Loans issued from (ISO date/time)."),
          until: str = typer.Option(None, help="Loans issued before (ISO date/time)."),
          as_json: bool = JsonOpt) -> None:
    """Readers who borrowed across members, cross loans per reader."""
    from dataclasses import asdict

    from circhub.cli.common import print_json, usage_error
    from circhub.tasks.readers.stats import reader_stats

    runtime, console, _ = _ui()
    rt = runtime(config)
    try:
        window = [datetime.fromisoformat(v) if v else None for v in (since, until)]
    except ValueError as exc:
        usage_error(f"--since/--until: {exc} (give an ISO date, e.g. 2026-01-01)")
    found = reader_stats(rt.store, *window)
    if as_json:
        print_json({**asdict(found), "cross_loans_per_reader": found.cross_loans_per_reader})
    else:
        console.print(found.line())


@reader_app.command("rotate-key")
def rotate_key(config: str = ConfigOpt,
               new_key_env: str = typer.Option(NEW_KEY_ENV, help="Environment variable "
                                               "holding the new key (else a hidden prompt)."),
               write_secret: bool = typer.Option(False, help="Store the new key in the Prefect "
                                                 "Secret block 'circhub-id-key' afterwards.")
               ) -> None:
    """Re-key every reader under a new key, re-reading the ID numbers from every member."""
    from circhub.flows.slots import ensure_limits, source_slots
    from circhub.tasks.readers.rekey import RotationRefused, rotate_reader_key
    from circhub.tasks.sync.extract import SourceUnavailable

    runtime, console, err = _ui()
    rt = runtime(config)
    new_key = os.environ.get(new_key_env) or _prompt_key(new_key_env, err)
    ensure_limits(rt.consortium)
    try:  # each member's readers read under its slot, never beside its sync
        report = rotate_reader_key(rt, new_key.encode(), hold=source_slots)
    except (RotationRefused, SourceUnavailable, TimeoutError) as exc:
        err.print(f"[red]key rotation refused:[/] {exc}")
        raise typer.Exit(1) from None
    console.print(f"rotated to the key with check value {report.fingerprint}: "
                  f"{report.summary()}")
    if write_secret:
        _write_secret(new_key)
        console.print("Secret block 'circhub-id-key' now holds the new key")
    console.print("Every process must now run with the new key (CIRCHUB_ID_KEY or the Secret "
                  "block); one still on the old key refuses to start.")


def _prompt_key(variable: str, err) -> str:
    if not sys.stdin.isatty():
        err.print(f"[red]error:[/] set {variable} to the new key (or run at a terminal)")
        raise typer.Exit(2)
    return typer.prompt("new reader ID key (not shown)", hide_input=True,
                        confirmation_prompt=True)


def _write_secret(value: str) -> None:
    from prefect.blocks.system import Secret

    from circhub.connections.engines import ID_KEY_SECRET

    Secret(value=value).save(ID_KEY_SECRET, overwrite=True)
