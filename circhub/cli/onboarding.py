"""Onboarding commands: `circhub prepare MEMBER` (what `circhub check` says is missing)."""

from __future__ import annotations

import typer

from circhub.cli.common import ConfigOpt, config_path, console, err

onboarding_app = typer.Typer()  # merged into the main app: top-level commands


@onboarding_app.command()
def prepare(member: str, config: str = ConfigOpt,
            dry_run: bool = typer.Option(False, "--dry-run",
                                         help="Only list what would be created.")) -> None:
    """Create in a member's ILS what its write-backs need (its profile's [[prepare]]): each
    object only when missing, so a second run creates nothing."""
    from sqlalchemy.exc import SQLAlchemyError

    from circhub.connections.config import ConfigError, load_config
    from circhub.connections.engines import ConnectionSetupError, id_hash_key, member_engine
    from circhub.connections.errors import driver_message
    from circhub.connections.profile import load_profile
    from circhub.flows.slots import ensure_limits, source_slots
    from circhub.tasks.onboarding.prepare import prepare_member
    from circhub.tasks.writeback.explain import explain
    from circhub.tasks.writeback.steps import StepFailed

    try:
        consortium = load_config(config_path(config))
        id_hash_key(consortium)  # the rule of every command: no reader-ID key, no start
        chosen = consortium.member(member)
        ensure_limits(consortium)
        with source_slots(member):  # never beside a sync or backfill of the same member
            report = prepare_member(consortium, chosen, member_engine(chosen), dry_run=dry_run)
    except (ConfigError, ConnectionSetupError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except TimeoutError as exc:
        err.print(f"[red]prepare not run:[/] {exc}")
        raise typer.Exit(1) from None
    except StepFailed as failed:
        err.print(f"[red]prepare failed, nothing created:[/] "
                  f"{explain(chosen, load_profile(chosen.profile), failed)}", soft_wrap=True)
        raise typer.Exit(1) from None
    except SQLAlchemyError as exc:
        err.print(f"[red]prepare failed, nothing created:[/] member {member}: "
                  f"{driver_message(exc)}", soft_wrap=True)
        raise typer.Exit(1) from None
    for line in report.lines():
        console.print(line, highlight=False, soft_wrap=True)


def exit_on_member_errors(rows) -> None:
    """`push` and `sync` exit 1 when a member needs a person (scripts must know), a refused
    write-back among them: each member's error printed whole on a line of its own (a table
    cell would cut it), naming the command, the step and what the ILS is missing."""
    failed = sorted((r for r in rows if r.get("error")), key=lambda r: r["member"])
    if not failed:
        return
    err.print(f"[red]{len(failed)} member(s) need a person:[/]")
    for r in failed:
        err.print(f"  {r['member']}: {r['error']}", highlight=False, soft_wrap=True,
                  markup=False)
    raise typer.Exit(1)
