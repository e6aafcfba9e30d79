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
    from circhub.tasks.onboarding.prepare import prepare_member
    from circhub.tasks.writeback.explain import StepFailed, explain

    try:
        consortium = load_config(config_path(config))
        id_hash_key(consortium)  # the rule of every command: no reader-ID key, no start
        chosen = consortium.member(member)
        report = prepare_member(consortium, chosen, member_engine(chosen), dry_run=dry_run)
    except (ConfigError, ConnectionSetupError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
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


def exit_on_failed_writebacks(rows) -> None:
    """`push` and `sync`: a write-back the ILS refused is never silent (exit 1), each member
    named with its first error (the outbox keeps every command's: `circhub outbox list`)."""
    failed = [r for r in rows if r.get("push_failed")]
    if not failed:
        return
    total = sum(r["push_failed"] for r in failed)
    err.print(f"[red]{total} write-back(s) failed[/] at {len(failed)} member(s):", soft_wrap=True)
    for r in sorted(failed, key=lambda r: r["member"]):
        err.print(f"  {r['error']}", highlight=False, soft_wrap=True, markup=False)
    raise typer.Exit(1)
