"""What every `circhub` command shares: the consoles, the config option, the runtime."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console()
err = Console(stderr=True)

ConfigOpt = typer.Option(None, "--config", "-c", envvar="CIRCHUB_CONFIG",
                         help="Consortium config (TOML). Default: ./consortium.toml")


def config_path(path: str | None) -> str:
    return path or "consortium.toml"


def runtime(path: str | None):
    from circhub.connections.config import ConfigError
    from circhub.connections.engines import ConnectionSetupError
    from circhub.connections.runtime import open_runtime

    try:
        return open_runtime(config_path(path))
    except (ConfigError, ConnectionSetupError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
