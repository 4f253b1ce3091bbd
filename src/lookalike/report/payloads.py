"""Every JSON object lookalike prints or writes: scan, leaks, quarantine, explain, compare,
query (the evaluation's are in `lookalike.evaluate.payload`). Formatting only."""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lookalike.records import (
    Comparison,
    Evidence,
    Explanation,
    LeakReport,
    Pair,
    Quarantine,
    ScanResult,
)

JSON_SCHEMA = 1
"""Version of the JSON written by `scan_payload` / `--json-out`."""


def _score(value: float) -> float:
    return round(float(value), 6)


def scan_payload(result: ScanResult) -> dict[str, Any]:
    """The `--json-out` document: pairs, groups, near-duplicate shots (photos of one scene,
    never in a group), errors and stats, paths as given."""
    stats = result.stats
    return {
        "schema_version": JSON_SCHEMA,
        "pairs": [
            {
                "a": str(p.a),
                "b": str(p.b),
                "similarity": _score(p.similarity),
                "duplicate": p.duplicate,
                "exact": p.exact,
                "matches": p.matches,
                "coverage": None if p.coverage is None else round(p.coverage, 3),
                "decided_by": p.decided_by,
            }
            for p in result.pairs
        ],
        "groups": [
            {
                "keep": str(g.keep),
                "keep_reason": g.keep_reason,
                "duplicates": [str(d) for d in g.duplicates],
                "members": [
                    {
                        "path": str(m.path),
                        "similarity_to_keep": _score(m.similarity_to_keep),
                        "decided_by": m.decided_by,
                    }
                    for m in g.members
                ],
            }
            for g in result.groups
        ],
        "near_duplicate_shots": [
            {
                "a": str(t.a),
                "b": str(t.b),
                "similarity": _score(t.similarity),
                "coverage": round(t.coverage, 3),
            }
            for t in result.shots
        ],
        "errors": [{"path": str(e.path), "reason": e.reason} for e in result.errors],
        "stats": {
            "files": stats.files,
            "images": stats.images,
            "errors": stats.errors,
            "exact_duplicates": stats.exact_duplicates,
            "groups": stats.groups,
            "seconds": stats.seconds,
            "images_per_s": stats.images_per_s,
        },
    }


def leaks_payload(report: LeakReport) -> dict[str, Any]:
    """The `leaks --json` document."""
    return {
        "schema_version": JSON_SCHEMA,
        "splits": list(report.splits),
        "min_similarity": _score(report.min_similarity),
        "leaks": [
            {
                "path": str(leak.path),
                "split": leak.split,
                "matches": [
                    {
                        "path": str(m.path),
                        "split": m.split,
                        "similarity": _score(m.similarity),
                        "exact": m.exact,
                    }
                    for m in leak.matches
                ],
            }
            for leak in report.leaks
        ],
        "split_counts": report.split_counts,
        "folder_counts": report.folder_counts,
        "label_conflicts": [
            {
                "labels": list(c.labels),
                "members": [{"path": str(m.path), "split": m.split} for m in c.members],
            }
            for c in report.label_conflicts
        ],
        "errors": [{"path": str(e.path), "reason": e.reason} for e in report.errors],
    }


def quarantine_payload(outcome: Quarantine) -> dict[str, Any]:
    """The `quarantine --json` / `restore --json` document."""
    return {
        "schema_version": JSON_SCHEMA,
        "manifest": str(outcome.manifest) if outcome.manifest else None,
        "dry_run": outcome.dry_run,
        "done": [
            {
                "src": str(m.src),
                "dst": str(m.dst) if m.dst else None,
                "sha256": m.sha256,
                "op": m.op,
            }
            for m in outcome.done
        ],
        "skipped": [{"path": str(e.path), "reason": e.reason} for e in outcome.skipped],
        "stopped": outcome.stopped,
    }


def _evidence_payload(found: Evidence | None) -> dict[str, Any] | None:
    """Local-feature verification as JSON: verdict, inliers, matched points, B's outline."""
    if found is None:
        return None
    return {
        "verdict": found.verdict,
        "confirmed": found.confirmed,
        "inliers": found.inliers,
        "mirrored": found.mirrored,
        "matches": [
            [round(v, 1) for v in (*a, *b)]
            for a, b in zip(found.points_a.tolist(), found.points_b.tolist(), strict=True)
        ],
        "outline_b_in_a": None
        if found.outline is None
        else [[round(v, 1) for v in p] for p in found.outline.tolist()],
    }


def _pair_head(result: Explanation | Comparison) -> dict[str, Any]:
    """The keys `explain` and `compare` share: the two files, the score, the decision."""
    return {
        "schema_version": 1,
        "a": str(result.a),
        "b": str(result.b),
        "similarity": round(result.similarity, 4),
        "duplicate": result.duplicate,
    }


def explanation_payload(
    result: Explanation, decided: str, overlays: Sequence[Path], panel: Path
) -> dict[str, Any]:
    """The `explain --json` object: the pair's score, how it was decided, the files."""
    return {
        **_pair_head(result),
        "decided_by": decided,
        "verification": _evidence_payload(result.evidence),
        "overlays": [str(p) for p in overlays],
        "panel": str(panel),
    }


def comparison_payload(result: Comparison) -> dict[str, Any]:
    """The `compare --json` object."""
    return {
        **_pair_head(result),
        "min_similarity": round(result.min_similarity, 4),
        "model": result.model,
    }


def lookalikes_payload(image: str | os.PathLike[str], found: Sequence[Pair]) -> dict[str, Any]:
    """The `query --json` object: the indexed images most like `image`, best first."""
    return {
        "schema_version": 1,
        "image": str(image),
        "matches": [
            {
                "path": str(p.b),
                "similarity": round(p.similarity, 6),
                "duplicate": p.duplicate,
                "exact": p.exact,
            }
            for p in found
        ],
    }
