"""The JSON objects of benchmark sets, evaluations and calibrations (schema 1)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from lookalike.evaluate.truth import pair_layout
from lookalike.model import Model, fingerprint
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
"""Fixed keys of every system in `evaluate --json` (its cut-offs and costs follow them)."""


def benchmark_counts(truth: Truth) -> dict[str, Any]:
    """How big a set is, in the terms the reports use."""
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
    """One system's metrics as the fixed JSON keys, then its cut-offs and costs.

    Counts after the fixed keys are written as floats, as schema 1 always has.
    """
    figures: dict[str, Any] = {
        "min_score": metrics.min_score,
        "min_score_at_p99": metrics.at_p99.min_score,
        "min_score_at_p999": metrics.at_p999.min_score,
        "seconds_per_image": metrics.seconds_per_image,
        "images": float(metrics.images),
        "unreadable": float(metrics.unreadable),
        "cpu_seconds": metrics.cpu_seconds,
        "scoring_seconds": metrics.scoring_seconds,
    }
    if metrics.min_similarity is not None:
        figures["min_similarity"] = metrics.min_similarity
    if metrics.verified_pairs is not None:
        figures["verified_pairs"] = float(metrics.verified_pairs)
    if metrics.max_distance is not None:
        figures["max_distance"] = float(metrics.max_distance)
    if metrics.bits is not None:
        figures["bits"] = float(metrics.bits)
        figures["max_distance_at_p99"] = metrics.at_p99.max_distance
        figures["max_distance_at_p999"] = metrics.at_p999.max_distance
    payload = {key: _number(getattr(metrics, key)) for key in METRIC_KEYS}
    payload.update({k: _number(v) for k, v in figures.items()})
    return payload


def model_payload(model: Model) -> dict[str, str]:
    """The checkpoint an evaluation measured: its id and weights fingerprint."""
    return {"id": model.model_id, "fingerprint": fingerprint(model)}


def evaluation_payload(
    evaluations: Sequence[Evaluation], truth: Truth, model: dict[str, str] | None = None
) -> dict[str, Any]:
    """The `evaluate --json` object; `model` names the checkpoint (id, fingerprint)."""
    return {
        "schema_version": JSON_SCHEMA,
        "model": model,
        "benchmark": benchmark_counts(truth),
        "systems": {e.metrics.system: system_payload(e.metrics) for e in evaluations},
    }


def calibration_payload(
    calibrated: Model, result: Evaluation, checkpoint: str | os.PathLike[str]
) -> dict[str, Any]:
    """The `calibrate --json` object: the calibration saved at `checkpoint` and its recall."""
    return {
        "schema_version": JSON_SCHEMA,
        "checkpoint": str(checkpoint),
        **asdict(calibrated.calibration),
        "recall_at_p99": result.metrics.recall_at_p99,
        "verify": asdict(calibrated.verify) if calibrated.verify else None,
    }
