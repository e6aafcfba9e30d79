"""`python -m circhub` runs the command line."""

from circhub.cli import app

app()
