"""Commands that show why the model scores a pair as it does: explain."""

from __future__ import annotations

from pathlib import Path

import typer

from lookalike.cli._app import (
    EXIT_MACHINE,
    EXIT_USAGE,
    JSON_OPTION,
    MODEL_OPTION,
    SETTINGS,
    app,
    fail,
    load_model_option,
    print_json,
    stdout,
    user_errors,
)
from lookalike.index import describe_fault


@app.command()
def explain(
    a: Path = typer.Argument(..., help="First image."),
    b: Path = typer.Argument(..., help="Second image."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the PNGs (created if needed)."),
    model: Path | None = MODEL_OPTION,
    method: str = typer.Option("gradcam", "--method", help="gradcam or gradcam++."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Show which regions drive a pair's similarity: heatmap overlays and a side-by-side panel.

    Writes both overlays and the panel as PNGs into --out, never over an existing file.
    Exit 0 either way, 1 if an image is unreadable.
    """
    from lookalike.explain import METHODS, decided_by, explain_pair, write_explanation
    from lookalike.report import explanation_payload

    if method not in METHODS:
        raise fail(f"--method must be one of {', '.join(METHODS)}")
    if out.exists() and not out.is_dir():
        raise fail(f"--out must be a folder, and {out} is a file")
    with user_errors():
        loaded = load_model_option(model)
        result = explain_pair(a, b, loaded, method=method)
    try:
        *overlays, panel_path = write_explanation(result, out, (a.stem, b.stem))
    except FileExistsError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        fault = describe_fault(exc)
        advice = f"; {fault[2]} (--out)" if fault else ""
        code = EXIT_MACHINE if fault else EXIT_USAGE
        raise fail(f"cannot write to {out}: {exc.strerror or exc}{advice}", code) from None
    if json_output:
        print_json(explanation_payload(result, decided_by(result), overlays, panel_path))
        return
    console = stdout()
    if not SETTINGS.quiet:
        verdict = "duplicate" if result.duplicate else "not a duplicate"
        console.print(
            f"similarity {result.similarity:.4f}  ->  {verdict}  "
            f"(min_similarity {result.min_similarity:.4f}, {result.method}, model {result.model})"
        )
        console.print(decided_by(result), markup=False)
    for path in (*overlays, panel_path):
        console.print(str(path), markup=False)
