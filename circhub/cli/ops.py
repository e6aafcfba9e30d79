"""Operations commands: `circhub serve`, `circhub status`, `circhub report`.

Registered on the main `app` by one import at the end of `circhub/cli.py`.
"""

from __future__ import annotations

import signal
import sys
from datetime import datetime, timedelta
from pathlib import Path

import typer
from rich.table import Table

from circhub.cli.common import (
    PREFECT_HOME,
    ConfigOpt,
    JsonOpt,
    config_path,
    console,
    err,
    print_json,
    runtime,
)

ops_app = typer.Typer()  # merged into the main app: top-level commands

SERVE_HOME = PREFECT_HOME  # the one Prefect home (common.py): the demo's runs show here
SERVE_DEMO = Path("var/serve")


@ops_app.command()
def status(config: str = ConfigOpt,
           interval: int = typer.Option(None, help="Sync interval in seconds (default 300, "
                                        "or CIRCHUB_SYNC_INTERVAL_SECONDS)."),
           stale_after: int = typer.Option(None, help="Intervals without a good sync before "
                                           "a member is stale (default 3)."),
           as_json: bool = JsonOpt) -> None:
    """Per member, problems first: last good sync, lag, last error, write-backs, quarantine.

    Exits 1 when something needs a person: a member whose last run failed or that is stale,
    dead-lettered or failing write-backs.
    """
    from circhub.tasks.reporting.status import (
        Staleness,
        member_statuses,
        needs_attention,
        problems_first,
    )

    rt = runtime(config)
    base = Staleness.from_env()
    rule = Staleness(interval or base.interval_seconds, stale_after or base.intervals,
                     base.failures)
    rows = problems_first(member_statuses(rt.store, rt.consortium), rule)
    attention = needs_attention(rows, rule)
    if as_json:
        print_json({"consortium": rt.consortium.name, "needs_a_person": len(attention),
                    "members": [s.to_json(rule) for s in rows]})
    else:
        _print_status(rows, attention, rule, rt.consortium.name)
    if attention:
        raise typer.Exit(1)


def _print_status(rows, attention, rule, title: str) -> None:
    console.print(_status_table(rows, rule, title))
    paused = [s.code for s in rows if s.paused]
    note = f"; {len(paused)} paused: {', '.join(paused)}" if paused else ""
    if attention:
        err.print(f"[red]{len(attention)} of {len(rows)} member(s) need a person:[/] "
                  + "; ".join(f"{s.code}: {', '.join(s.problems(rule))}" for s in attention)
                  + note, highlight=False, soft_wrap=True)
    else:
        console.print(f"all {len(rows)} members fresh (stale after {rule.limit}), "
                      f"no failed runs, no dead or failing write-backs{note}", highlight=False)


def _status_table(rows, rule, title: str) -> Table:
    table = Table("member", "name", "last good sync", "lag", "last run", "pending", "dead",
                  "quarantined", "needs a person", title=f"{title}: member status")
    for s in rows:
        problems = s.problems(rule)
        last = s.last_status or "-"
        table.add_row(
            s.code, s.name,
            f"{s.last_good_sync:%m-%d %H:%M}" if s.last_good_sync else "never",
            _lag(s.lag), f"[red]{last}[/]" if last == "failed" else last, str(s.pending),
            f"[red]{s.dead}[/]" if s.dead else "0", str(s.quarantined),
            f"[red]{'; '.join(problems)}[/]" if problems
            else f"[yellow]paused: {s.paused}[/]" if s.paused else "")
    return table


def _lag(lag: timedelta | None) -> str:
    if lag is None:
        return "-"
    minutes = int(lag.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


@ops_app.command()
def report(config: str = ConfigOpt, days: int = 30,
           out: Path = typer.Option(None, help="Folder for the plots (default: reports/ next "
                                    "to the config).")) -> None:
    """Run the daily report now: plots in a folder and a `daily-report` artifact."""
    from circhub.flows.report import daily_report

    runtime(config)
    state = daily_report(config=config_path(config), days=days,
                         out_dir=str(out) if out else None, return_state=True)
    if not state.is_completed():
        err.print(f"[red]report failed:[/] {state.message}")
        raise typer.Exit(1)
    result = state.result()
    for line in result["headline"]:  # the flow's own lines: one definition of each figure
        console.print(f"  {line}", highlight=False)
    console.print(f"  plots: {result['folder']}", highlight=False)


@ops_app.command()
def serve(config: str = ConfigOpt, port: int = 4200,
          alert_webhook: str = typer.Option(None, envvar="CIRCHUB_ALERT_WEBHOOK",
                                            help="Webhook URL for the circhub-alerts block."),
          worker: bool = typer.Option(True, help="Start a worker on the circhub pool.")) -> None:
    """Local Prefect server and UI with circhub's deployments and a worker running them.

    The server keeps its SQLite database under var/prefect, telemetry off; the work pool,
    concurrency limits and automations are created, prefect.yaml applied, and a process
    worker started. Ctrl-C stops it all.
    """
    from circhub.deployments import serve as stack

    config = _serve_config(config)
    rt = runtime(config)
    api_url = f"http://127.0.0.1:{port}/api"
    env = stack.prefect_env(api_url, SERVE_HOME.resolve(), config)
    server = None
    if stack.healthy(api_url):
        console.print(f"a Prefect server already answers at {api_url}: using it")
    else:
        console.print(f"starting Prefect server on {api_url} (log: {SERVE_HOME}/server.log)")
        server = stack.start_server(env, port, SERVE_HOME / "server.log")
    try:
        _apply(stack, env, rt, alert_webhook)
        console.print(f"Prefect UI: [bold]http://127.0.0.1:{port}[/]   config: {config}")
        if worker:
            _run_worker(stack, env)
    finally:
        stack.stop(server)


def _serve_config(config: str | None) -> str:
    """The given config; without one and no ./consortium.toml, a simulated consortium."""
    if config or Path(config_path(None)).exists():
        return config_path(config)
    from circhub.demo import DemoSize, build_world

    size = DemoSize()
    world, path = build_world(SERVE_DEMO, size)
    world.play(size.days, size.actions)
    console.print(f"no consortium.toml here: serving a simulated {size.members}-member "
                  f"consortium ({path})")
    return str(path)


def _apply(stack, env: dict, rt, alert_webhook: str | None) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
        stack.prepare(rt.consortium, alert_webhook)
    ready, missing = stack.deployable()
    stack.apply_deployments(env, ready)
    console.print(f"deployments applied: {', '.join(ready)}")
    if missing:
        err.print(f"[yellow]not deployed (flow module missing):[/] {', '.join(missing)}")


def _run_worker(stack, env: dict) -> None:
    log = SERVE_HOME / "worker.log"
    proc = stack.start_worker(env, log)
    console.print(f"worker polling pool '{stack.POOL}' (log: {log}); Ctrl-C stops everything")
    # `kill` (SIGTERM) stops the stack as cleanly as Ctrl-C: worker first, then the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        proc.wait()
    except KeyboardInterrupt:
        console.print(f"stopping at {datetime.now():%H:%M:%S}")
    finally:
        stack.stop(proc)
