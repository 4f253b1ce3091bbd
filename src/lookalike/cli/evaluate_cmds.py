"""Commands that measure: make-benchmark, evaluate."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lookalike.cli._app import (
    SETTINGS,
    app,
    existing,
    fail,
    load_model_option,
    print_json,
    show_progress,
    stderr,
    stdout,
    user_errors,
)
from lookalike.records import Evaluation, Metrics, Truth

JSON_SCHEMA = 1

METRIC_KEYS = (
    "tp",
    "fp",
    "fn",
    "tn",
    "precision",
    "recall",
    "f1",
    "recall_by_family",
    "positives_by_family",
    "recall_at_p99",
    "recall_at_p999",
    "recall_by_family_at_p99",
    "pr_auc",
    "roc_auc",
    "seconds",
    "images_per_s",
    "cpu_util",
    "peak_rss_mb",
    "sibling_pairs",
    "sibling_fp",
)
"""Fixed keys of every system in `evaluate --json` (the metrics' `extra` follow them)."""


def _progress(json_output: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr(),
        disable=not show_progress(json_output),
    )


def _advancer(progress: Progress, task: Any) -> Callable[[int], None]:
    return lambda n: progress.advance(task, n)


def _split(values: str | None) -> list[str]:
    return [v.strip() for v in (values or "").split(",") if v.strip()]


@app.command("make-benchmark")
def make_benchmark_command(
    photo_dir: Path = typer.Argument(..., help="Folder of photos to build the set from."),
    out: Path = typer.Argument(..., help="New (or empty) folder for images/ and truth.json."),
    originals: int = typer.Option(50, "--originals", min=0, help="Photos that get edits."),
    distractors: int = typer.Option(
        50, "--distractors", min=0, help="Other photos used as unrelated images."
    ),
    seed: int = typer.Option(0, "--seed", help="Same seed, same set."),
    tiles: int = typer.Option(
        0, "--tiles", min=0, help="Cut each distractor photo into up to K non-overlapping tiles."
    ),
    more_distractors: Path | None = typer.Option(
        None, "--more-distractors", help="Every image in this folder is a distractor photo too."
    ),
    photos_list: Path | None = typer.Option(
        None, "--photos-list", help="Only use the photos named in this file (one per line)."
    ),
    composites: int = typer.Option(
        0,
        "--composites",
        min=0,
        help="Backgrounds given 3 different pasted subjects each: photos of one place, "
        "not copies (hard negatives, reported on their own line by evaluate).",
    ),
    composite_photos: Path | None = typer.Option(
        None,
        "--composite-photos",
        help="Draw the composites' backgrounds and subjects from this folder only "
        "(default: photos left over, then --more-distractors).",
    ),
    families: str | None = typer.Option(
        None, "--families", help="Comma-separated edit families (default: all 16)."
    ),
    edits_per_original: int | None = typer.Option(
        None,
        "--edits-per-original",
        min=1,
        help="Give each original this many of the families, drawn at random "
        "(default: one copy per family).",
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Processes (default: one per core)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Build a benchmark set: originals, one edited copy per family, distractors, truth.json."""
    from lookalike.augment import FAMILIES
    from lookalike.evaluate import make_benchmark, read_photo_list

    existing(photo_dir, "photo folder")
    chosen = _split(families) or list(FAMILIES)
    progress = _progress(json_output)
    with user_errors(), progress:
        names = read_photo_list(photos_list) if photos_list else None
        task = progress.add_task("building", total=None)
        truth = make_benchmark(
            photo_dir,
            out,
            originals=originals,
            distractors=distractors,
            seed=seed,
            tiles=tiles,
            more_distractors=more_distractors,
            composites=composites,
            composite_photos=composite_photos,
            families=chosen,
            edits_per_original=edits_per_original,
            photo_names=names,
            workers=workers,
            on_progress=_advancer(progress, task),
        )
    counts = benchmark_counts(truth)
    if json_output:
        print_json({"schema_version": JSON_SCHEMA, "benchmark": counts})
        return
    for skipped in truth.skipped:
        stderr().print(f"skipped {skipped.path}: {skipped.reason}")
    stdout().print(
        f"wrote {counts['images']} images to {out / 'images'}: {counts['originals']} originals, "
        f"{counts['edits']} edits, {counts['distractors']} distractors"
        + (f" ({counts['composites']} of them composites)" if counts["composites"] else "")
        + "; "
        f"{counts['positives']:,} positive and {counts['negatives']:,} negative pairs"
    )


def benchmark_counts(truth: Truth) -> dict[str, Any]:
    """How big a set is, in the terms the reports use."""
    from lookalike.evaluate import pair_layout

    layout = pair_layout(truth)
    by_family: dict[str, int] = {}
    for family in layout.positive_family:
        by_family[family] = by_family.get(family, 0) + 1
    return {
        "path": str(truth.root),
        "images": len(layout.paths),
        "originals": len(truth.originals),
        "edits": len(truth.edits),
        "distractors": len(truth.distractors),
        "positives": layout.positives,
        "negatives": layout.negatives,
        "ignored_pairs": layout.ignored,
        "families": list(truth.families),
        "positives_by_family": by_family,
        "skipped": len(truth.skipped),
        "composites": sum(len(c) for c in truth.composites),
        "sibling_pairs": len(layout.siblings),
    }


def _number(value: Any) -> Any:
    """JSON-safe: rounded floats, None for NaN and infinities."""
    if isinstance(value, dict):
        return {k: _number(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    return value


def system_payload(metrics: Metrics) -> dict[str, Any]:
    """One system's metrics as the fixed JSON keys, then its extra figures."""
    payload = {key: _number(getattr(metrics, key)) for key in METRIC_KEYS}
    payload.update({k: _number(v) for k, v in metrics.extra.items() if k not in payload})
    return payload


def evaluation_payload(
    evaluations: Sequence[Evaluation], truth: Truth, model: dict[str, str] | None = None
) -> dict[str, Any]:
    """The `evaluate --json` object."""
    return {
        "schema_version": JSON_SCHEMA,
        "model": model,
        "benchmark": benchmark_counts(truth),
        "systems": {e.metrics.system: system_payload(e.metrics) for e in evaluations},
    }


def _fmt(value: float, kind: str) -> str:
    if not math.isfinite(value):
        return "-"
    return {
        "int": f"{value:,.0f}",
        "ratio": f"{value:.4f}",
        "pct": f"{value:.0%}",
        "rate": f"{value:,.1f}",
        "ms": f"{value * 1000:.2f}",
        "mb": f"{value:,.0f}",
        "s": f"{value:,.1f}",
    }[kind]


_ROWS: tuple[tuple[str, Callable[[Metrics], float], str], ...] = (
    ("TP", lambda m: m.tp, "int"),
    ("FP", lambda m: m.fp, "int"),
    ("FN", lambda m: m.fn, "int"),
    ("TN", lambda m: m.tn, "int"),
    ("precision", lambda m: m.precision, "ratio"),
    ("recall", lambda m: m.recall, "ratio"),
    ("F1", lambda m: m.f1, "ratio"),
    ("recall @ p0.99", lambda m: m.recall_at_p99, "ratio"),
    ("recall @ p0.999", lambda m: m.recall_at_p999, "ratio"),
    ("same-place pairs", lambda m: m.sibling_pairs or math.nan, "int"),
    (
        "same-place FP rate",
        lambda m: m.sibling_fp / m.sibling_pairs if m.sibling_pairs else math.nan,
        "ratio",
    ),
    ("PR AUC (AP)", lambda m: m.pr_auc, "ratio"),
    ("ROC AUC", lambda m: m.roc_auc, "ratio"),
    ("images/s", lambda m: m.images_per_s, "rate"),
    ("ms per image", lambda m: m.extra.get("seconds_per_image", math.nan), "ms"),
    ("seconds", lambda m: m.seconds, "s"),
    ("CPU utilisation", lambda m: m.cpu_util, "pct"),
    ("peak memory (MB)", lambda m: m.peak_rss_mb, "mb"),
)


def print_table(console: Console, table: Table) -> None:
    """A table on a terminal fits it; piped, it keeps its natural width (no wrapped cells)."""
    if console.is_terminal:
        console.print(table)
        return
    for column in table.columns:
        column.no_wrap = True
    width = console.measure(table, options=console.options.update_width(10_000)).maximum
    before = console.width
    console.width = max(before, width)
    try:
        console.print(table)
    finally:
        console.width = before


def _decision(metrics: Metrics) -> str:
    if "max_distance" in metrics.extra:
        return f"distance ≤ {metrics.extra['max_distance']:.0f}"
    return f"similarity ≥ {metrics.extra['min_score']:.4f}"


def comparison_table(evaluations: Sequence[Evaluation], title: str = "") -> Table:
    """Systems side by side; each peer's cell also shows first system ÷ that peer."""
    first = evaluations[0].metrics
    table = Table(
        title=title or None,
        caption=f"(r×) = {first.system} ÷ that system; times include decoding",
    )
    table.add_column("")
    for e in evaluations:
        table.add_column(e.metrics.system, justify="right")
    table.add_row("decision", *[_decision(e.metrics) for e in evaluations])
    for label, get, kind in _ROWS:
        cells = [_fmt(float(get(first)), kind)]
        for e in evaluations[1:]:
            mine, theirs = float(get(first)), float(get(e.metrics))
            ratio = f" ({mine / theirs:.2f}×)" if theirs and math.isfinite(mine / theirs) else ""
            cells.append(_fmt(theirs, kind) + ratio)
        table.add_row(label, *cells)
    return table


def families_table(evaluations: Sequence[Evaluation]) -> Table:
    """Positives found per edit family: at each system's decision, and at precision 0.99."""
    table = Table(
        title="positives found per edit family",
        caption="at the system's decision cut-off · at the cut-off giving precision 0.99",
    )
    table.add_column("family")
    table.add_column("pairs", justify="right")
    for e in evaluations:
        table.add_column(e.metrics.system, justify="right")
    for family, count in evaluations[0].metrics.positives_by_family.items():
        cells = []
        for e in evaluations:
            m = e.metrics
            found = round(m.recall_by_family.get(family, 0.0) * count)
            found99 = round(m.recall_by_family_at_p99.get(family, 0.0) * count)
            cells.append(f"{found} · {found99}")
        table.add_row(family, str(count), *cells)
    return table


@app.command("evaluate")
def evaluate_command(
    bench_dir: Path = typer.Argument(..., help="A set made by `lookalike make-benchmark`."),
    model: Path | None = typer.Option(None, "--model", "-m", help="Checkpoint (default: bundled)."),
    min_similarity: float | None = typer.Option(
        None,
        "--min-similarity",
        min=0.0,
        max=1.0,
        help="Duplicate when similarity >= this (default: the model's calibrated value).",
    ),
    peers: str | None = typer.Option(
        None, "--peers", help="Also score these hashes, e.g. phash,dhash,whash,ahash,pdq."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
    plots: Path | None = typer.Option(None, "--plots", help="Write PNG plots into this folder."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Decode / hash processes (default: one per core)."
    ),
) -> None:
    """Measure the model (and peers) on a benchmark set: quality, speed, CPU and memory."""
    from lookalike.evaluate import (
        MODEL_SYSTEM,
        PEERS,
        evaluate_hash,
        evaluate_model,
        load_truth,
        plot_files,
        require_plotting,
        write_plots,
    )
    from lookalike.evaluate.peers import get_peer
    from lookalike.model import fingerprint

    names = _split(peers)
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise fail(f"unknown peer {unknown[0]!r}; expected some of {', '.join(PEERS)}")
    progress = _progress(json_output)
    with user_errors():
        for name in names:
            get_peer(name)
        if plots is not None:
            require_plotting()
            clash = [n for n in plot_files([MODEL_SYSTEM, *names]) if (plots / n).exists()]
            if clash:
                raise FileExistsError(f"{plots / clash[0]} already exists; choose another folder")
        truth = load_truth(bench_dir)
        loaded = load_model_option(model)
        total = len(truth.images)
        with progress:
            task = progress.add_task(MODEL_SYSTEM, total=total)
            evaluations = [
                evaluate_model(
                    truth,
                    loaded,
                    min_similarity=min_similarity,
                    workers=workers,
                    on_progress=_advancer(progress, task),
                )
            ]
            for name in names:
                task = progress.add_task(name, total=total)
                evaluations.append(
                    evaluate_hash(
                        truth,
                        name,
                        workers=workers,
                        on_progress=_advancer(progress, task),
                    )
                )
        written = write_plots(evaluations, plots) if plots is not None else []
    if json_output:
        print_json(
            evaluation_payload(
                evaluations, truth, {"id": loaded.model_id, "fingerprint": fingerprint(loaded)}
            )
        )
        return
    counts = benchmark_counts(truth)
    out = stdout()
    print_table(
        out,
        comparison_table(
            evaluations,
            f"{bench_dir}: {counts['images']:,} images, {counts['positives']:,} positive "
            f"and {counts['negatives']:,} negative pairs (model {loaded.model_id})",
        ),
    )
    if not SETTINGS.quiet:
        print_table(out, families_table(evaluations))
    for path in written:
        stderr().print(f"wrote {path}")


@app.command("calibrate")
def calibrate_command(
    checkpoint: Path = typer.Argument(..., help="The checkpoint to calibrate."),
    bench_dir: Path = typer.Argument(..., help="A calibration set (make-benchmark)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the calibrated copy."),
    precision: float = typer.Option(0.99, "--precision", help="Target pair precision."),
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Confirm ambiguous pairs by local-feature matching."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Choose min_similarity on a calibration set for a target pair precision."""
    from dataclasses import asdict, replace

    from lookalike.evaluate import calibrate_model, load_truth
    from lookalike.model import save_model
    from lookalike.verify import VerifyConfig

    if precision not in (0.99, 0.999):
        raise fail("--precision must be 0.99 or 0.999")
    with user_errors():
        loaded = load_model_option(checkpoint)
        loaded = replace(loaded, verify=(loaded.verify or VerifyConfig()) if verify else None)
        calibrated, result = calibrate_model(
            loaded, load_truth(bench_dir), target_precision=precision
        )
        save_model(calibrated, out)
    payload = {
        "schema_version": 1,
        "checkpoint": str(out),
        **asdict(calibrated.calibration),
        "recall_at_p99": result.metrics.recall_at_p99,
        "verify": asdict(calibrated.verify) if calibrated.verify else None,
    }
    if json_output:
        print_json(payload)
        return
    stdout().print(
        f"min_similarity {calibrated.min_similarity:.4f} "
        f"({calibrated.calibration.method}); wrote {out}"
    )
