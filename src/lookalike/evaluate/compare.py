"""The model and peer hashes measured on one benchmark set, side by side (plots optional)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lookalike.evaluate.peers import get_peer
from lookalike.evaluate.plots import plot_files, require_plotting, write_plots
from lookalike.evaluate.run import CNN_SYSTEM, MODEL_SYSTEM, evaluate_hash, evaluate_model_and_cnn
from lookalike.evaluate.truth import load_truth
from lookalike.model import Model
from lookalike.records import Evaluation, Truth

OnStart = Callable[[str, int], Callable[[int], None]]
"""Called as each system starts with its name and image count; returns its progress
callback (images done since the last call)."""


@dataclass(frozen=True)
class EvaluationRun:
    """The model first, then (for a verifying model) its CNN alone, then each peer,
    measured on one set."""

    truth: Truth
    evaluations: tuple[Evaluation, ...]
    plots: tuple[Path, ...] = ()
    """The plot files written (none unless asked for)."""


def check_systems(peers: Sequence[str] = (), plots: str | os.PathLike[str] | None = None) -> None:
    """Refuse before any work: an unknown peer (ValueError), a peer not installed
    (PeerUnavailable), plots without matplotlib (PlotsUnavailable) or over existing files
    (FileExistsError)."""
    for name in peers:
        get_peer(name)
    if plots is not None:
        require_plotting()
        folder = Path(plots)
        clash = [n for n in plot_files([MODEL_SYSTEM, CNN_SYSTEM, *peers]) if (folder / n).exists()]
        if clash:
            raise FileExistsError(f"{folder / clash[0]} already exists; choose another folder")


def evaluate_systems(
    bench: Truth | str | os.PathLike[str],
    model: Model,
    peers: Sequence[str] = (),
    *,
    min_similarity: float | None = None,
    workers: int | None = None,
    plots: str | os.PathLike[str] | None = None,
    on_start: OnStart | None = None,
    cnn_alone: bool = True,
) -> EvaluationRun:
    """Evaluate the model, then each peer hash, on one set; write plots if asked.

    With `cnn_alone` a verifying model is also reported without verification
    (`CNN_SYSTEM`, from the same embeddings).

    >>> evaluate_systems("bench", load_model(), ["phash", "pdq"]).evaluations[1].metrics.recall
    """
    check_systems(peers, plots)
    truth = bench if isinstance(bench, Truth) else load_truth(bench)
    total = len(truth.images)

    def progress(name: str) -> Callable[[int], None] | None:
        return on_start(name, total) if on_start else None

    evaluations = evaluate_model_and_cnn(
        truth,
        model,
        min_similarity=min_similarity,
        workers=workers,
        on_progress=progress(MODEL_SYSTEM),
        cnn_alone=cnn_alone,
    )
    for name in peers:
        evaluations.append(evaluate_hash(truth, name, workers=workers, on_progress=progress(name)))
    written = write_plots(evaluations, plots) if plots is not None else []
    return EvaluationRun(truth, tuple(evaluations), tuple(written))
