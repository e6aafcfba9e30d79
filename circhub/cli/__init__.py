"""The `circhub` command line (`circhub.cli.app`)."""

from circhub.cli.app import app, main

__all__ = ["app", "main"]
