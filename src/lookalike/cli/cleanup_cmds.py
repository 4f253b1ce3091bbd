"""Commands that clean up after a scan: quarantine and restore."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from lookalike.cli._app import (
    EXIT_MACHINE,
    JSON_OPTION,
    SETTINGS,
    app,
    fail,
    print_json,
    stderr,
    stdout,
    user_errors,
)


@app.command("quarantine")
def quarantine_command(
    index: Path = typer.Argument(..., help="Index made by `lookalike scan`."),
    to: Path = typer.Option(..., "--to", help="Folder to move the duplicates into."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would move."),
    delete: bool = typer.Option(
        False, "--delete", help="Delete the duplicates instead of moving them (no undo)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Move every group's non-keepers into a folder (undo with `lookalike restore`)."""
    from lookalike.scan import quarantine

    with user_errors():
        outcome = quarantine(index, to, dry_run=dry_run, delete=delete)
    _print_moves(outcome, json_output, "would move" if dry_run else "moved")
    if outcome.manifest and not json_output:
        stdout().print(f"manifest: {outcome.manifest}  (undo: lookalike restore MANIFEST)")
    if outcome.stopped:
        raise fail(
            f"quarantine stopped: {outcome.stopped}; {len(outcome.done)} files moved (listed "
            f"in {outcome.manifest}), the others left in place; free some space or choose "
            "another --to, then run quarantine again",
            EXIT_MACHINE,
        )


@app.command()
def restore(
    manifest: Path = typer.Argument(..., help="Manifest written by `lookalike quarantine`."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Put every quarantined file back where it was, checking its SHA-256."""
    from lookalike.scan import restore as restore_files

    with user_errors():
        outcome = restore_files(manifest)
    _print_moves(outcome, json_output, "restored")
    if outcome.stopped:
        raise fail(
            f"restore stopped: {outcome.stopped}; {len(outcome.done)} files back in place, "
            "the others still in quarantine; free some space, then run restore again",
            EXIT_MACHINE,
        )


def _print_moves(outcome: Any, json_output: bool, verb: str) -> None:
    if json_output:
        from lookalike.report import quarantine_payload

        print_json(quarantine_payload(outcome))
        return
    out, err = stdout(), stderr()
    if SETTINGS.verbose or outcome.dry_run:
        for move in outcome.done:
            target = f" -> {move.dst}" if move.dst else " (delete)"
            out.print(f"{move.src}{target}", markup=False)
    for skipped in () if outcome.stopped else outcome.skipped:  # else one line says it all
        err.print(f"left as is: {skipped.path}: {skipped.reason}", markup=False)
    out.print(f"{verb} {len(outcome.done)} files, {len(outcome.skipped)} left as they were")
