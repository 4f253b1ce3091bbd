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
from lookalike.errors import LookalikeError
from lookalike.index import StoreFault, describe_fault

EXIT_OK = 0
EXIT_FOUND = 1
EXIT_UNREADABLE = 1
EXIT_USAGE = 2
EXIT_MACHINE = 3
"""The machine refused: a full disk, a read-only place, no permission, a vanished folder."""

_PLACES = {
    "scan": "--index, --html-out, --json-out, --csv-out, --list-out",
    "leaks": "--index, --json-out",
    "quarantine": "--to",
    "explain": "--out",
    "demo": "the demo folder",
}


GLOBAL_FLAGS = frozenset({"-q", "--quiet", "-v", "--verbose"})
GLOBAL_VALUED = frozenset({"--threads"})


def hoist_global_options(args: list[str]) -> list[str]:
    """Move global options written after the command (`lookalike scan -q DIR`) before it,
    where Click looks for them (`lookalike -q scan DIR`). Nothing after `--` moves."""
    command = _command_index(args)
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


def _command_index(args: list[str]) -> int | None:
    """Where the command's name is: the first word that is neither an option nor a global
    option's value (`lookalike --threads 2 scan ...`)."""
    skip = False
    for k, arg in enumerate(args):
        if skip:
            skip = False
        elif arg in GLOBAL_VALUED:
            skip = True
        elif not arg.startswith("-"):
            return k
    return None


def machine_fault(exc: BaseException, args: list[str]) -> str | None:
    """One line for a fault of the machine (full disk, read-only place, no permission),
    naming the path and what to do; None for any other error. `args` are the command
    line after the program name (to name the command, and the index when SQLite does not
    say which file failed)."""
    fault = describe_fault(exc)
    if fault is None:
        return None
    path, reason, advice = fault
    if isinstance(exc, StoreFault):
        path = _option_value(args, "--index") or path
    at = _command_index(args)
    command = args[at] if at is not None else ""
    if command in _PLACES:
        advice += f" ({_PLACES[command]})"
    if command == "scan":
        advice += "; run the scan again then: it resumes where it stopped, embedding nothing twice"
    return f"{path}: {reason}; {advice} (-v shows the traceback)"


def _option_value(args: list[str], name: str) -> str | None:
    for k, arg in enumerate(args):
        if arg == name and k + 1 < len(args):
            return args[k + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


class _Commands(TyperGroup):
    """The command group: global options may also follow the command, and a fault of the
    machine becomes one line and EXIT_MACHINE (with -v, the traceback too)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta["lookalike.args"] = list(args)
        return super().parse_args(ctx, hoist_global_options(args))

    def invoke(self, ctx: Any) -> Any:
        args = ctx.meta.get("lookalike.args", [])
        try:
            return super().invoke(ctx)
        except (OSError, StoreFault) as exc:
            message = machine_fault(exc, args)
            if message is None:
                raise
            if SETTINGS.verbose:
                import traceback

                traceback.print_exc()
            raise fail(message, EXIT_MACHINE) from None


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

MODEL_OPTION = typer.Option(None, "--model", "-m", help="Checkpoint file (default: bundled).")
JSON_OPTION = typer.Option(False, "--json", help="Print one JSON object.")
MIN_SIMILARITY_OPTION = typer.Option(
    None,
    "--min-similarity",
    min=0.0,
    max=1.0,
    help="Duplicates at similarity >= this (default: the model's calibrated value).",
)
VERIFY_NEAREST_OPTION = typer.Option(
    None,
    "--verify-nearest",
    min=1,
    help="Verify each picture's N nearest neighbours first, its further ones (up to the "
    "model's 10) only where either picture has a copy: faster where copies are few, but "
    "a lone copy beyond its original's N nearest is missed (default: all at once).",
)


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
    """Turn any of lookalike's errors (`LookalikeError`) into one line on stderr and its
    exit code; a file that exists where a new one was to be written too (exit 2)."""
    from lookalike.io import UnreadableImage

    try:
        yield
    except UnreadableImage as exc:
        raise fail(f"cannot read {exc.path}: {exc.reason}", exc.exit_code) from None
    except LookalikeError as exc:
        raise fail(str(exc), exc.exit_code) from None
    except FileExistsError as exc:
        raise fail(str(exc), EXIT_USAGE) from None


def load_model_option(model: Path | None, verify_nearest: int | None = None) -> Any:
    """Load --model PATH or the bundled default, with a clear error; with
    --verify-nearest N, verifying each picture's N nearest first (`Model.verifying_nearest`)."""
    from lookalike.model import load_model

    loaded = load_model(model)
    if verify_nearest is None:
        return loaded
    try:
        return loaded.verifying_nearest(verify_nearest)
    except ValueError as exc:
        raise fail(f"--verify-nearest: {exc}") from None


def existing(path: Path, what: str = "path") -> Path:
    """Refuse a missing path with exit code 2."""
    if not path.exists():
        raise fail(f"{what} not found: {path}")
    return path


Command = Callable[..., Any]
