"""What every `circhub` command shares: the consoles, the config option, the runtime, and how a
command answers a script (`--json`, exit codes).

Exit codes, the same in every command: 0 all well, 1 something needs a person (a failed
member, a dead write-back, a refused check), 2 the command was used wrongly (an unknown member
code, outbox id or option value; the message lists what is valid).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

# One Prefect home for every circhub command, `circhub demo` and `make serve`: the demo's runs
# (its ephemeral server keeps them in $PREFECT_HOME/prefect.db) are then in the history of the
# UI that `make serve` starts on the same database. Set before Prefect is first imported.
PREFECT_HOME = Path("var/prefect")


def use_one_prefect_home() -> None:
    if "prefect" not in sys.modules:
        os.environ.setdefault("PREFECT_HOME", str(PREFECT_HOME.resolve()))
    # Prefect makes its home without parents: on a fresh clone `var/` is not there yet, the
    # home is not made, and the ephemeral server then fails to start (a bare timeout).
    Path(os.environ.get("PREFECT_HOME", PREFECT_HOME)).expanduser().mkdir(parents=True,
                                                                         exist_ok=True)
    # A new home's ephemeral server first builds its database: on a fresh clone of this 2-core
    # machine that took longer than Prefect's default 20 s, and `make demo` failed.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


# Piped output keeps the table's width: rich falls back to 80 columns when stdout is not a
# terminal, which cuts a member table mid-word in `circhub status | less` or a cron mail.
PIPED_WIDTH = 250


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=PIPED_WIDTH if piped else None)


console = _console()
err = _console(stderr=True)

ConfigOpt = typer.Option(None, "--config", "-c", envvar="CIRCHUB_CONFIG",
                         help="Consortium config (TOML). Default: ./consortium.toml")
JsonOpt = typer.Option(False, "--json", help="JSON on stdout, for scripts.")


def config_path(path: str | None) -> str:
    return path or "consortium.toml"


def runtime(path: str | None):
    from circhub.connections.config import ConfigError
    from circhub.connections.engines import ConnectionSetupError
    from circhub.connections.runtime import open_runtime

    try:
        return open_runtime(config_path(path))
    except (ConfigError, ConnectionSetupError) as exc:
        usage_error(str(exc))


def usage_error(message: str) -> NoReturn:
    """The command was used wrongly: the message says how, exit 2."""
    err.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def known_member(rt, code: str) -> None:
    """An unknown member code is an error (exit 2) that lists the known ones."""
    from circhub.connections.config import ConfigError

    try:
        rt.consortium.member(code)
    except ConfigError as exc:
        usage_error(str(exc))


def one_of(option: str, value: str | None, valid: Iterable[str]) -> None:
    """An option value outside its choices is an error (exit 2) that lists them."""
    valid = list(valid)
    if value is not None and value not in valid:
        usage_error(f"{option} {value!r} is not one of: {', '.join(valid)}")


def print_json(data: Any) -> None:
    """JSON for scripts, on stdout as is (no rich markup, no wrapping)."""
    sys.stdout.write(json.dumps(data, default=str, ensure_ascii=False, indent=1) + "\n")


def say_empty(what: str) -> None:
    """An empty result says so, instead of printing a table with no rows."""
    console.print(f"no {what}", highlight=False)
