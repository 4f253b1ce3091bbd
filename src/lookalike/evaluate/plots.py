"""PNG plots of evaluations: PR and ROC curves, recall per family, score histograms."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import LookalikeError
from lookalike.records import Evaluation


class PlotsUnavailable(LookalikeError):
    """Plotting needs matplotlib, which is not installed."""


def plot_files(systems: Sequence[str]) -> list[str]:
    """The file names `write_plots` writes for these systems."""
    return ["pr.png", "roc.png", "recall_by_family.png"] + [f"scores_{s}.png" for s in systems]


def require_plotting() -> None:
    """Raise PlotsUnavailable unless matplotlib can be imported."""
    _pyplot()


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotsUnavailable("plots need matplotlib: pip install 'lookalike[plots]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def write_plots(evaluations: Sequence[Evaluation], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the plots of one benchmark run into `out_dir`; existing files are never replaced.

    >>> write_plots([evaluate_model("bench", model), evaluate_hash("bench", "phash")], "plots")
    """
    plt = _pyplot()
    out = Path(out_dir)
    names = plot_files([e.metrics.system for e in evaluations])
    clashes = [n for n in names if (out / n).exists()]
    if clashes:
        raise FileExistsError(f"{out / clashes[0]} already exists; choose another plots folder")
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / n for n in names]
    _pr(plt, evaluations, paths[0])
    _roc(plt, evaluations, paths[1])
    _families(plt, evaluations, paths[2])
    for evaluation, path in zip(evaluations, paths[3:], strict=True):
        _scores(plt, evaluation, path)
    return paths


def _save(plt: Any, figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _pr(plt: Any, evaluations: Sequence[Evaluation], path: Path) -> None:
    figure, ax = plt.subplots(figsize=(6, 4.5))
    for e in evaluations:
        if e.curves.pr:
            recall, precision = np.array(e.curves.pr).T
            ax.step(
                recall,
                precision,
                where="post",
                label=f"{e.metrics.system} (AP {e.metrics.pr_auc:.3f})",
            )
    ax.axhline(0.99, color="grey", linewidth=0.6, linestyle=":")
    ax.set(
        xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01), title="Precision-recall"
    )
    ax.legend(loc="lower left", fontsize=8)
    _save(plt, figure, path)


def _roc(plt: Any, evaluations: Sequence[Evaluation], path: Path) -> None:
    figure, ax = plt.subplots(figsize=(6, 4.5))
    for e in evaluations:
        fpr, tpr = np.array(e.curves.roc).T
        ax.plot(fpr, tpr, label=f"{e.metrics.system} (AUC {e.metrics.roc_auc:.4f})")
    ax.set_xscale("log")
    ax.set(xlabel="false-positive rate (log)", ylabel="recall", ylim=(0, 1.01), title="ROC")
    ax.legend(loc="lower right", fontsize=8)
    _save(plt, figure, path)


def _families(plt: Any, evaluations: Sequence[Evaluation], path: Path) -> None:
    families = list(evaluations[0].metrics.positives_by_family) if evaluations else []
    figure, axes = plt.subplots(1, 2, figsize=(11, 0.35 * len(families) + 1.8), sharey=True)
    y = np.arange(len(families))
    height = 0.8 / max(1, len(evaluations))
    for panel, (ax, field, title) in enumerate(
        zip(
            axes,
            ("recall_by_family", "recall_by_family_at_p99"),
            ("at each system's decision cut-off", "at the cut-off giving precision 0.99"),
            strict=True,
        )
    ):
        for k, e in enumerate(evaluations):
            values = [getattr(e.metrics, field).get(f, 0.0) for f in families]
            ax.barh(y + k * height, values, height, label=e.metrics.system)
        ax.set(xlim=(0, 1), xlabel="recall", title=title)
        if panel == 0:
            ax.set_yticks(y + height * (len(evaluations) - 1) / 2, families)
            ax.invert_yaxis()
    axes[1].legend(fontsize=8, loc="lower right")
    _save(plt, figure, path)


def _scores(plt: Any, evaluation: Evaluation, path: Path) -> None:
    curves, metrics = evaluation.curves, evaluation.metrics
    edges = np.array(curves.bin_edges)
    figure, ax = plt.subplots(figsize=(6, 4))
    for counts, label in (
        (curves.negative_counts, "negatives"),
        (curves.positive_counts, "positives"),
    ):
        total = max(1, sum(counts))
        ax.stairs(np.array(counts) / total, edges, label=f"{label} ({sum(counts):,})", fill=False)
    ax.axvline(
        metrics.min_score,
        color="black",
        linestyle="--",
        linewidth=0.8,
        label="decision cut-off",
    )
    ax.set_yscale("log")
    ax.set(
        xlabel="score (higher = more alike)",
        ylabel="fraction of pairs (log)",
        title=f"{metrics.system}: scores of positive and negative pairs",
    )
    ax.legend(fontsize=8)
    _save(plt, figure, path)
