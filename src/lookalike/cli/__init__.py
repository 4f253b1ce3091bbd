"""The `lookalike` command line: validate options, call one library function, show the result."""

from lookalike.cli import evaluate_cmds, model_cmds, scan_cmds  # noqa: F401  (registers commands)
from lookalike.cli._app import app

__all__ = ["app"]
