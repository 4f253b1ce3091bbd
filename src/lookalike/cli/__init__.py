"""The `lookalike` command line: validate options, call one library function, show the result."""

from lookalike.cli import (  # noqa: F401  (registers commands, in the order --help lists them)
    evaluate_cmds,
    explain_cmds,
    model_cmds,
    scan_cmds,
)

# isort: split
from lookalike.cli import cleanup_cmds, web_cmds  # noqa: F401  (after scan's commands)
from lookalike.cli._app import app

__all__ = ["app"]
