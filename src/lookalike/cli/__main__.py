"""`python -m lookalike.cli` runs the command line."""

from lookalike.cli import app

app()
