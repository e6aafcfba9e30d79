"""The `circhub` command line: what a data engineer types next to the Prefect UI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.table import Table

from circhub.cli.books import books_app
from circhub.cli.common import (
    ConfigOpt,
    JsonOpt,
    config_path,
    console,
    err,
    known_member,
    print_json,
    runtime,
    say_empty,
    usage_error,
    use_one_prefect_home,
)
from circhub.cli.members import member_app
from circhub.cli.onboarding import onboarding_app
from circhub.cli.ops import ops_app
from circhub.cli.outbox import outbox_app
from circhub.cli.readers import reader_app

use_one_prefect_home()
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no outbound network
os.environ.setdefault("DO_NOT_TRACK", "1")

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="circhub: the circulation data hub of a library consortium.")
db_app = typer.Typer(no_args_is_help=True, help="Central store schema.")
app.add_typer(db_app, name="db")
app.add_typer(reader_app, name="reader")
app.add_typer(outbox_app, name="outbox")
app.add_typer(books_app, name="books")
app.add_typer(ops_app)  # serve, status, report: top-level commands
app.add_typer(onboarding_app)  # prepare: a top-level command
app.add_typer(member_app, name="member")


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import version

        console.print(f"circhub {version('circhub')}")
        raise typer.Exit()


@app.callback()
def _main(show_version: bool = typer.Option(False, "--version", callback=_version,
                                            is_eager=True, help="Show the version and exit.")
          ) -> None:
    """circhub: the circulation data hub of a library consortium."""


@app.command()
def demo(folder: Path = typer.Option(Path("demo"), help="Where the demo's databases go."),
         members: int = 12, seed: int = 7) -> None:
    """Simulate a small consortium on SQLite and sync it with the real flows."""
    # The story is printed below; the flow and task logs still go to the Prefect API / UI.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "ERROR")
    # The ephemeral server's own services retry SQLite lock contention on a busy machine and
    # log each retry with a traceback; the demo's reader wants the story, not those.
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
    from circhub.demo import DemoSize, tell

    tell(console, folder, DemoSize(members=members, seed=seed))


@app.command()
def simulate(out: Path = typer.Option(Path("sim"), help="Folder for the member databases."),
             members: int = 12, readers: int = 40, items: int = 120, days: int = 14,
             actions: int = 40, seed: int = 7, bad_readers: int = 3) -> None:
    """Create simulated member ILS databases (SQLite) and play circulation on them."""
    from circhub.demo import DemoSize, build_world

    size = DemoSize(members, readers, items, days, actions, seed)
    world, config = build_world(out, size)
    world.play(days, actions)
    s = world.stats
    console.print(f"{members} members under {out}/members; config {config}")
    console.print(f"{s.loans} loans, {s.returns} returns ({s.cross_returns} cross returns), "
                  f"{s.secondary_loans} secondary loans, {s.renewals} renewals")


def _store_engine(config: str):
    """The central store's engine, after the checks every command makes (config, key)."""
    from circhub.connections.config import ConfigError, load_config
    from circhub.connections.engines import (
        ConnectionSetupError,
        central_url,
        engine_for,
        id_hash_key,
    )

    try:
        consortium = load_config(config_path(config))
        id_hash_key(consortium)  # the rule of every command: no reader-ID key, no start
        return engine_for(central_url(consortium))
    except (ConfigError, ConnectionSetupError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


@db_app.command("upgrade")
def db_upgrade(config: str = ConfigOpt) -> None:
    """Create or upgrade the central store schema (never drops data)."""
    from circhub.connections.migrations import status, upgrade

    engine = _store_engine(config)
    done = upgrade(engine)
    console.print(f"central store at revision {status(engine).current}"
                  + (f"; {', '.join(done)}" if done else "; already current"))


@db_app.command("status")
def db_status(config: str = ConfigOpt) -> None:
    """The central store's schema revision beside the code's; exit 1 when it is behind."""
    from circhub.connections.migrations import UPGRADE_COMMAND, status

    version = status(_store_engine(config))
    if version.behind:
        console.print(f"{version.describe()}: run `{UPGRADE_COMMAND} -c {config_path(config)}`")
        raise typer.Exit(1)
    console.print(f"central store at revision {version.current} (head)")


@app.command()
def sync(config: str = ConfigOpt,
         member: list[str] = typer.Option(None, "--member", "-m",
                                          help="Only these members (repeatable).")) -> None:
    """Run the consortium sync flow (or one member's) now.

    Exits 1 when a member failed (the run may still be Completed: its message names them),
    2 for an unknown member code (before anything runs).
    """
    from circhub.flows.sync import sync_consortium

    rt = runtime(config)
    for code in member or ():
        known_member(rt, code)
    _run_flow(sync_consortium, "sync", config, members=member or None)


@app.command()
def push(config: str = ConfigOpt) -> None:
    """Apply pending write-backs to the members owed them."""
    from circhub.flows.push import push_writebacks

    _run_flow(push_writebacks, "push", config)


def _run_flow(flow_fn, what: str, config: str | None, **params) -> None:
    """Run a flow now, print its per-member table, exit non-zero when it failed."""
    runtime(config)
    from circhub.flows.summary import run_rows

    state = flow_fn(config=config_path(config), return_state=True, **params)
    rows = run_rows(state)
    if isinstance(rows, dict):
        _print_rows(rows.values())
    if not state.is_completed():
        err.print(f"[red]{what} failed:[/] {state.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(state.message or f"{what} done", highlight=False, soft_wrap=True)
    if isinstance(rows, dict):
        from circhub.cli.onboarding import exit_on_member_errors

        exit_on_member_errors(rows.values())  # Completed, but a member needs a person: exit 1


@app.command()
def check(member: str, config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Onboarding check: profile vs live schema, sampled validation, backfill size, verdict."""
    from circhub.connections.config import ConfigError, load_config
    from circhub.connections.engines import ConnectionSetupError, id_hash_key
    from circhub.flows.slots import ensure_limits, source_slots
    from circhub.tasks.onboarding.check import check_member

    try:
        consortium = load_config(config_path(config))
        id_hash_key(consortium)  # samples use a throwaway key, but no command starts keyless
        consortium.member(member)  # an unknown code is an error by name, before any work
        ensure_limits(consortium)
        with source_slots(member):  # never beside a sync or backfill of the same member
            report = check_member(consortium, member)
    except (ConfigError, ConnectionSetupError) as exc:
        usage_error(str(exc))
    except TimeoutError as exc:
        err.print(f"[red]check not run:[/] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        print_json({"member": report.member, "profile": report.profile,
                    "ready": report.ready, "reasons": report.reasons,
                    "warnings": report.warnings, "schema_problems": report.schema_problems,
                    "samples": {e: {"rows": x.rows, "failed": x.failed, "rules": x.rules}
                                for e, x in report.samples.items()},
                    "backfill_rows": report.backfill_rows})
    else:
        for line in report.lines():
            console.print(line, highlight=False, soft_wrap=True)
    if not report.ready:
        raise typer.Exit(1)


@app.command("backfill")
def backfill_cmd(member: str, entity: str,
                 since: str = typer.Option(..., help="First cursor value, ISO date/time."),
                 until: str = typer.Option(None, help="End (exclusive); default now."),
                 window_hours: int = 24, config: str = ConfigOpt) -> None:
    """Load one entity of one member over a date range; rerun to resume after a crash."""
    from circhub.tasks.loads.backfill import backfill_range

    try:  # checked before anything starts: no Prefect server, no flow, no Data Docs folder
        backfill_range(entity, since, until, window_hours)
    except ValueError as exc:
        usage_error(f"backfill: {exc}")
    rt = runtime(config)
    known_member(rt, member)
    from circhub.flows.backfill import backfill

    state = backfill(member=member, entity=entity, since=since, until=until,
                     window_hours=window_hours, config=config_path(config), show_progress=True,
                     return_state=True)
    if not state.is_completed():
        err.print(f"[red]backfill failed:[/] {state.message}", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(1)
    console.print(state.result()["summary"], highlight=False, soft_wrap=True)


@app.command("quarantine")
def quarantine_list(config: str = ConfigOpt, limit: int = 50,
                    member: str = typer.Option(None, "--member", "-m"),
                    by_rule: bool = typer.Option(False, "--by-rule", help="Rows per rule "
                                                 "broken (the daily report's figure)."),
                    as_json: bool = JsonOpt) -> None:
    """Rows held back by validation, with the rules they broke (masked values)."""
    from sqlalchemy import select

    from circhub.domain.schema import quarantine

    rt = runtime(config)
    query = select(quarantine).where(quarantine.c.released_at.is_(None))
    if member:
        known_member(rt, member)
        query = query.where(quarantine.c.member == member)
    if by_rule:
        return _quarantine_by_rule(rt, member, as_json)
    with rt.store.connect() as conn:
        rows = conn.execute(query.order_by(quarantine.c.member, quarantine.c.entity)
                            .limit(limit)).all()
    if as_json:
        print_json([{"member": r.member, "entity": r.entity, "row_key": r.row_key,
                     "rules": list(r.rules), "row_masked": r.row_masked} for r in rows])
        return
    if not rows:
        return say_empty("rows in quarantine")
    table = Table("member", "entity", "row key", "rules", "row (masked)")
    for r in rows:
        table.add_row(r.member, r.entity, r.row_key, ", ".join(r.rules),
                      ", ".join(f"{k}={v}" for k, v in r.row_masked.items() if v is not None))
    console.print(table)


def _quarantine_by_rule(rt, member: str | None, as_json: bool) -> None:
    from circhub.tasks.reporting.report import quarantine_by_rule

    held = quarantine_by_rule(rt.store, member)
    if as_json:
        return print_json({"rows": held.rows, "rows_breaking_several": held.several,
                           "by_rule": dict(held.top(len(held.by_rule)))})
    if not held.rows:
        return say_empty("rows in quarantine")
    table = Table("rule broken", "rows", title=f"{held.rows} rows in quarantine"
                  + (f"; {held.several} broke several rules and count under each"
                     if held.several else ""))
    for rule, n in held.top(len(held.by_rule)):
        table.add_row(rule, str(n))
    console.print(table)


def _print_rows(rows) -> None:
    rows = list(rows)
    if not rows:
        return
    table = Table(*rows[0].keys())
    for row in sorted(rows, key=lambda r: r["member"]):
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
