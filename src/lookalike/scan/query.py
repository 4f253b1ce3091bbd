"""Look up one image in an index: its nearest lookalikes among the indexed files."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from lookalike.index import nearest, open_index
from lookalike.model import Model, load_model
from lookalike.records import Pair
from lookalike.scan.pairs import file_loader
from lookalike.scan.run import resolve_thresholds
from lookalike.scan.walk import content_hash
from lookalike.score import decide


def find_lookalikes(
    image: str | os.PathLike[str],
    index: str | os.PathLike[str],
    *,
    model: Model | None = None,
    k: int = 10,
    min_similarity: float | None = None,
) -> list[Pair]:
    """The k indexed files most like `image`, best first, as pairs (image, indexed file).

    `duplicate` uses `min_similarity` (default: the one of the index's last scan, else the
    model's); `exact` marks byte-identical files. Raises UnreadableImage for a bad image
    and ModelMismatch if the index was made with another model.

    >>> find_lookalikes("new.jpg", "photos.lookalike", k=5)[0].similarity
    """
    model = model or load_model()
    with open_index(index) as store:
        store.check_model(model)
        stored = store.settings().get("min_similarity")
        default = None if stored is None else float(stored)  # type: ignore[arg-type]
        cut, _ = resolve_thresholds(
            model, default if min_similarity is None else min_similarity, 0.0
        )
        query_vectors, query_detail = model.embed_measured([image])
        query = query_vectors[0]
        hashes, vectors = store.embedded_vectors()
        rows, _ = nearest(vectors, query, k)
        wanted = [hashes[r] for r in rows.tolist()]
        flat = model.flat(vectors[rows], store.details(wanted)) | model.flat(
            query_vectors, query_detail
        )
        files: dict[str, list[str]] = defaultdict(list)
        paths: dict[str, str] = {}
        for row in store.files_with_contents(wanted):
            files[row.hash or ""].append(row.shown)
            paths.setdefault(row.hash or "", str(row.path))
    own = content_hash(image)
    scores, check = (
        model.verification_prior(vectors[rows], query[None, :], flat)
        if len(rows)
        else (np.zeros(0), np.zeros(0, dtype=bool))
    )
    if model.verify is not None and len(scores):
        # Score the ambiguous ones as a scan does: after geometric verification.
        load = file_loader([str(image)] + [paths[h] for h in wanted], model.verify)
        ambiguous = np.flatnonzero(check).tolist()
        pairs = np.array([[0, n + 1] for n in ambiguous], dtype=np.int64).reshape(-1, 2)
        scores[ambiguous] = model.refine(load, pairs, scores[ambiguous])
    order = sorted(range(len(wanted)), key=lambda n: (-scores[n], wanted[n]))
    out: list[Pair] = []
    for digest, score in ((wanted[n], float(scores[n])) for n in order):
        exact = digest == own
        similarity = 1.0 if exact else float(score)
        for shown in files[digest]:
            out.append(
                Pair(
                    Path(image),
                    Path(shown),
                    similarity,
                    exact or bool(decide(similarity, cut)),
                    exact,
                )
            )
    return out[:k]
