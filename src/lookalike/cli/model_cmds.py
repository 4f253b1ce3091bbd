"""Commands about the model itself: compare two images, train a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from lookalike.cli._app import (
    JSON_OPTION,
    MIN_SIMILARITY_OPTION,
    MODEL_OPTION,
    SETTINGS,
    app,
    fail,
    load_model_option,
    print_json,
    show_progress,
    stderr,
    stdout,
    user_errors,
)
from lookalike.records import EpochLog


@app.command()
def compare(
    a: Path = typer.Argument(..., help="First image."),
    b: Path = typer.Argument(..., help="Second image."),
    model: Path | None = MODEL_OPTION,
    min_similarity: float | None = MIN_SIMILARITY_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Say whether two images are copies of one picture (exit 0 either way, 1 if unreadable)."""
    with user_errors():
        loaded = load_model_option(model)
        result = loaded.compare(a, b, min_similarity=min_similarity)
    if json_output:
        from lookalike.report import comparison_payload

        print_json(comparison_payload(result))
        return
    verdict = "duplicate" if result.duplicate else "not a duplicate"
    out = stdout()
    if SETTINGS.quiet:
        out.print(f"{result.similarity:.4f} {verdict}")
        return
    out.print(
        f"similarity {result.similarity:.4f}  ->  {verdict}  "
        f"(min_similarity {result.min_similarity:.4f}, model {result.model})"
    )


@app.command()
def train(
    photo_dir: Path = typer.Argument(..., help="Folder of photos to learn from."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the best checkpoint."),
    config: Path | None = typer.Option(None, "--config", help="JSON training config."),
    train_list: Path | None = typer.Option(
        None, "--train-list", help="File names (one per line) to train on."
    ),
    val_list: Path | None = typer.Option(
        None, "--val-list", help="File names kept apart for validation."
    ),
    epochs: int | None = typer.Option(None, "--epochs", min=1),
    steps_per_epoch: int | None = typer.Option(None, "--steps-per-epoch", min=1),
    batch: int | None = typer.Option(None, "--batch", min=2, help="Photos per batch."),
    seed: int | None = typer.Option(None, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run."),
    log: Path | None = typer.Option(None, "--log", help="Also write epoch lines (JSONL) here."),
) -> None:
    """Train a Siamese model; prints loss and val_loss for every epoch."""
    from dataclasses import asdict, replace

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from lookalike.train import EpochStats, TrainConfig, photo_paths, train_model

    if not photo_dir.is_dir():
        raise fail(f"not a folder: {photo_dir}")
    cfg = TrainConfig.from_json(config) if config else TrainConfig()
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "epochs": epochs,
            "steps_per_epoch": steps_per_epoch,
            "batch_photos": batch,
            "seed": seed,
        }.items()
        if v is not None
    }
    if SETTINGS.threads:
        overrides["threads"] = SETTINGS.threads
    cfg = replace(cfg, **overrides)
    photos = photo_paths(photo_dir, train_list)
    val = photo_paths(photo_dir, val_list) if val_list else None
    err = stderr()
    progress = Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(),
        console=err,
        disable=not show_progress(),
    )
    task = progress.add_task("train", total=cfg.epochs * cfg.steps_per_epoch, epoch=0, loss=0.0)
    log_file = log.open("a") if log else None

    def on_step(epoch: int, step: int, loss: float) -> None:
        progress.update(task, advance=1, epoch=epoch + 1, loss=loss)

    def on_epoch(entry: EpochLog, stats: EpochStats) -> None:
        line = (
            f"epoch {entry.epoch + 1}/{cfg.epochs}  loss {entry.loss:.4f}  "
            f"val_loss {entry.val_loss:.4f}  val_recall@p0.99 "
            f"{stats.val_recall_at_p99:.4f}  ({entry.seconds:.0f}s)"
        )
        progress.console.print(line) if progress.live.is_started else stdout().print(line)
        if log_file:
            log_file.write(
                json.dumps(
                    {
                        "epoch": entry.epoch + 1,
                        "loss": entry.loss,
                        "val_loss": entry.val_loss,
                        **asdict(stats),
                    }
                )
                + "\n"
            )
            log_file.flush()

    try:
        with progress, user_errors():
            result = train_model(
                photos, out, cfg, val_photos=val, resume=resume, on_epoch=on_epoch, on_step=on_step
            )
    except ValueError as exc:
        raise fail(str(exc)) from None
    finally:
        if log_file:
            log_file.close()
    stdout().print(
        f"best epoch {result.best_epoch + 1}: validation recall@p0.99 "
        f"{result.best_recall_at_p99:.4f}; checkpoint {result.checkpoint}"
    )
