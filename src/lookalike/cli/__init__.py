"""The `lookalike` command line: validate options, call one library function, show the result."""

from lookalike.cli import (  # noqa: F401  (registers commands)
    evaluate_cmds,
    explain_cmds,
    model_cmds,
    scan_cmds,
    web_cmds,
)
from lookalike.cli._app import app

__all__ = ["app"]
