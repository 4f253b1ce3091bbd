"""Commands that measure: make-benchmark, evaluate, calibrate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lookalike.cli._app import (
    JSON_OPTION,
    MIN_SIMILARITY_OPTION,
    MODEL_OPTION,
    SETTINGS,
    VERIFY_NEAREST_OPTION,
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
    json_output: bool = JSON_OPTION,
) -> None:
    """Build a benchmark set: originals, one edited copy per family, distractors, truth.json."""
    from lookalike.augment import FAMILIES
    from lookalike.evaluate import JSON_SCHEMA, benchmark_counts, make_benchmark, read_photo_list

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


@app.command("evaluate")
def evaluate_command(
    bench_dir: Path = typer.Argument(..., help="A set made by `lookalike make-benchmark`."),
    model: Path | None = MODEL_OPTION,
    min_similarity: float | None = MIN_SIMILARITY_OPTION,
    peers: str | None = typer.Option(
        None, "--peers", help="Also score these hashes, e.g. phash,dhash,whash,ahash,pdq."
    ),
    json_output: bool = JSON_OPTION,
    plots: Path | None = typer.Option(None, "--plots", help="Write PNG plots into this folder."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Decode / hash processes (default: one per core)."
    ),
    verify_nearest: int | None = VERIFY_NEAREST_OPTION,
) -> None:
    """Measure the model (and peers) on a benchmark set: quality, speed, CPU and memory."""
    from lookalike.evaluate import (
        PEERS,
        benchmark_counts,
        check_systems,
        comparison_table,
        evaluate_systems,
        evaluation_payload,
        families_table,
        load_truth,
        model_payload,
        print_table,
    )

    names = _split(peers)
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise fail(f"unknown peer {unknown[0]!r}; expected some of {', '.join(PEERS)}")
    progress = _progress(json_output)

    def on_start(name: str, total: int) -> Callable[[int], None]:
        return _advancer(progress, progress.add_task(name, total=total))

    with user_errors():
        check_systems(names, plots)
        truth = load_truth(bench_dir)
        loaded = load_model_option(model, verify_nearest)
        with progress:
            comparison = evaluate_systems(
                truth,
                loaded,
                names,
                min_similarity=min_similarity,
                workers=workers,
                plots=plots,
                on_start=on_start,
            )
    evaluations = comparison.evaluations
    if json_output:
        print_json(evaluation_payload(evaluations, truth, model_payload(loaded)))
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
    for path in comparison.plots:
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
    confident: float | None = typer.Option(
        None,
        "--confident",
        min=0.0,
        max=1.0,
        help="CNN-confident cut-off to use: pairs at or above it skip verification "
        "(default: the CNN alone's cut-off at precision 0.99 on this set).",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Choose min_similarity on a calibration set for a target pair precision."""
    from dataclasses import replace

    from lookalike.evaluate import calibrate_model, calibration_payload, load_truth
    from lookalike.model import save_model
    from lookalike.verify import VerifyConfig

    if precision not in (0.99, 0.999):
        raise fail("--precision must be 0.99 or 0.999")
    with user_errors():
        loaded = load_model_option(checkpoint)
        loaded = replace(loaded, verify=(loaded.verify or VerifyConfig()) if verify else None)
        calibrated, result = calibrate_model(
            loaded, load_truth(bench_dir), target_precision=precision, confident=confident
        )
        save_model(calibrated, out)
    if json_output:
        print_json(calibration_payload(calibrated, result, out))
        return
    stdout().print(
        f"min_similarity {calibrated.min_similarity:.4f} "
        f"({calibrated.calibration.method}); wrote {out}"
    )
