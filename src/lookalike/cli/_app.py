"""The Typer app, the options every command shares, and error-to-exit-code handling."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from lookalike import __version__

EXIT_OK = 0
EXIT_FOUND = 1
EXIT_UNREADABLE = 1
EXIT_USAGE = 2

GLOBAL_FLAGS = frozenset({"-q", "--quiet", "-v", "--verbose"})
GLOBAL_VALUED = frozenset({"--threads"})


def hoist_global_options(args: list[str]) -> list[str]:
    """Move global options written after the command (`lookalike scan -q DIR`) before it,
    where Click looks for them (`lookalike -q scan DIR`). Nothing after `--` moves."""
    command = next((k for k, a in enumerate(args) if not a.startswith("-")), None)
    if command is None:
        return args
    front, rest, moved = args[:command], [args[command]], []
    tail = iter(args[command + 1 :])
    for arg in tail:
        if arg == "--":
            rest += [arg, *tail]
            break
        if arg in GLOBAL_FLAGS or arg.split("=", 1)[0] in GLOBAL_VALUED:
            moved.append(arg)
            if arg in GLOBAL_VALUED:
                moved.append(next(tail, ""))
        else:
            rest.append(arg)
    return front + moved + rest


class _Commands(TyperGroup):
    """The command group, accepting the global options after the command too."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))


app = typer.Typer(
    name="lookalike",
    cls=_Commands,
    help="Find replicated images: edited, cropped, recoloured or re-compressed copies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: `[ray]` is an extra's name, not markup
)


@dataclass
class Settings:
    """Options shared by every command."""

    quiet: bool = False
    verbose: bool = False
    threads: int | None = None


SETTINGS = Settings()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lookalike {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print results and errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print more detail."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="CPU threads for the model (default: all cores)."
    ),
) -> None:
    """Find replicated images with a Siamese CNN."""
    SETTINGS.quiet, SETTINGS.verbose, SETTINGS.threads = quiet, verbose, threads
    if threads:
        import torch

        torch.set_num_threads(threads)


def stdout() -> Console:
    """Console for results (plain when piped)."""
    return Console(highlight=False, soft_wrap=True)


def stderr() -> Console:
    """Console for progress, notes and errors (a message stays on one line when piped)."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def show_progress(json_output: bool = False) -> bool:
    """Progress bars only on an interactive terminal, never with --json or --quiet."""
    return not (json_output or SETTINGS.quiet) and sys.stderr.isatty()


def print_json(payload: dict[str, Any]) -> None:
    """One JSON object on stdout."""
    typer.echo(json.dumps(payload, ensure_ascii=False))


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print one clear line on stderr and return the Exit to raise.

    `message` is plain text: brackets in file names are printed as they are, not as markup.
    """
    stderr().print(Text.assemble(("error:", "red"), " ", message))
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn lookalike's typed errors into one line on stderr and an exit code."""
    from lookalike.io import UnreadableImage
    from lookalike.model import CheckpointError

    try:
        yield
    except UnreadableImage as exc:
        raise fail(f"cannot read {exc.path}: {exc.reason}", EXIT_UNREADABLE) from None
    except CheckpointError as exc:
        raise fail(str(exc), EXIT_USAGE) from None


def load_model_option(model: Path | None) -> Any:
    """Load --model PATH or the bundled default, with a clear error."""
    from lookalike.model import load_model

    return load_model(model)


def existing(path: Path, what: str = "path") -> Path:
    """Refuse a missing path with exit code 2."""
    if not path.exists():
        raise fail(f"{what} not found: {path}")
    return path


Command = Callable[..., Any]
