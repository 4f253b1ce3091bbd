"""Which pairs to verify, and their similarity after verification.

The CNN proposes each image's `candidates_per_image` nearest neighbours, and the pairs
whose CNN similarity is ambiguous (`score.is_ambiguous`) get their similarity
from `Model.refine` (local features matched under RANSAC). A second round verifies the
nearest neighbours of pairs found sure (`VerifyConfig.expand_neighbours`): copies of a
much-copied picture crowd its neighbour list, and are met through each other. Scans,
leak checks and evaluations all score pairs through `candidate_scores`, so a cut-off
calibrated in an evaluation means the same in a scan.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import faiss
import numpy as np
from PIL import Image

from lookalike.index import build_search, find_pairs, nearest_of, nearest_pairs
from lookalike.io import UnreadableImage, load_image
from lookalike.model import Model
from lookalike.score import cosine_from_cnn_similarity
from lookalike.verify import (
    Keypoints,
    Matches,
    VerifyConfig,
    fuse_evidence,
    hash_counts,
    load_for_matching,
)

Pairs = dict[tuple[int, int], float]
"""Similarity by row pair (i < j) of the vectors."""


class KnownPairs:
    """Similarities verified before, by row pair: sorted NumPy arrays (16 bytes a pair), so
    a rescan of millions of images holds them without a Python object per pair."""

    def __init__(self, pairs: np.ndarray, values: np.ndarray, n: int) -> None:
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        keys = np.minimum(pairs[:, 0], pairs[:, 1]) * n + np.maximum(pairs[:, 0], pairs[:, 1])
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.values = np.asarray(values, dtype=np.float64)[order]
        self.n = n

    @classmethod
    def of(cls, known: Pairs, n: int) -> KnownPairs:
        """From a dict by (i, j) row pair."""
        pairs = np.array(list(known), dtype=np.int64).reshape(-1, 2)
        return cls(pairs, np.fromiter(known.values(), dtype=np.float64, count=len(known)), n)

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found, similarity) for (P, 2) row pairs i < j: a mask, and the known values."""
        keys = np.asarray(pairs, dtype=np.int64).reshape(-1, 2) @ np.array([self.n, 1])
        if not len(self.keys):
            return np.zeros(len(keys), dtype=bool), np.zeros(0)
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        found = self.keys[at] == keys
        return found, self.values[at[found]]


Matcher = Callable[[np.ndarray], Matches]
"""`matcher(pairs)`: the local-feature matches of (P, 2) row pairs, as `Model.match_counts`
gives them; lets verification run elsewhere (`lookalike.distributed.RayMatcher`)."""

Verifier = Callable[[list[str], Model], AbstractContextManager[Matcher]]
"""`verifier(paths, model)`: a `Matcher` for rows that are these files, open while in use
(`lookalike.distributed.ray_matcher` runs it on a Ray cluster)."""

CHUNK = 4000
"""Pairs verified at a time: the work lost to a kill, and how often results are stored."""

KEYPOINT_CACHE = 6000
"""Images whose keypoints verification keeps between chunks (about 20 KB each way)."""


def file_loader(paths: list[str], config: VerifyConfig | None) -> Callable[[int], Image.Image]:
    """`load(n)` for verification: row n's file as matching reads it (`load_for_matching`),
    blank if it cannot be read.

    A blank image has no keypoints, so a file that vanished since it was embedded simply
    gets no geometric evidence (its CNN similarity stands).
    """

    def load(n: int) -> Image.Image:
        try:
            if config is None:
                return load_image(paths[n])
            return load_for_matching(paths[n], config)
        except UnreadableImage:
            return Image.new("RGB", (8, 8))

    return load


def candidate_pairs(
    model: Model,
    vectors: np.ndarray,
    search: faiss.Index | None = None,
    flat: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(P, 2) row pairs to verify first and their CNN similarities (each row's
    `first_candidates` nearest, or `candidates_per_image`); empty without a verify config.
    `flat` (N,) says which rows are near-flat pictures (`Model.flat`; default: read)."""
    config = model.verify
    if config is None or len(vectors) < 2:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    near = nearest_pairs(vectors, _first(config), search=search)
    return _ambiguous(model, vectors, np.stack([near.i, near.j], axis=1), flat)


def _first(config: VerifyConfig) -> int:
    """How many of each image's nearest neighbours round one takes at first."""
    if config.first_candidates < 1:
        return config.candidates_per_image
    return min(config.first_candidates, config.candidates_per_image)


def further_pairs(
    model: Model,
    vectors: np.ndarray,
    sure_rows: np.ndarray,
    search: faiss.Index | None = None,
    batch: int = 65536,
    flat: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Round one's second step: each row's neighbours after its first `first_candidates`,
    up to `candidates_per_image`, where the row or the neighbour is in a sure pair (a
    picture that has copies), as (P, 2) pairs i < j with their CNN similarities (`flat`
    as for `candidate_pairs`)."""
    config = model.verify
    n = len(vectors)
    sure_rows = np.unique(np.asarray(sure_rows, dtype=np.int64))
    if config is None or len(sure_rows) == 0 or _first(config) >= config.candidates_per_image:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    search = search if search is not None else build_search(vectors)
    is_sure = np.zeros(n, dtype=bool)
    is_sure[sure_rows] = True
    found: list[np.ndarray] = []
    for start in range(0, n, batch):
        rows = np.arange(start, min(n, start + batch), dtype=np.int64)
        near = nearest_of(vectors, rows, config.candidates_per_image, search=search)
        near = near[:, _first(config) :]
        image, other = np.repeat(rows, near.shape[1]), near.ravel()
        keep = other >= 0
        image, other = image[keep], other[keep]
        keep = is_sure[image] | is_sure[other]
        found.append(np.stack([np.minimum(image, other), np.maximum(image, other)], 1)[keep])
    pairs = np.unique(np.concatenate(found), axis=0)
    return _ambiguous(model, vectors, pairs, flat)


def expansion_pairs(
    model: Model,
    vectors: np.ndarray,
    sure: np.ndarray,
    search: faiss.Index | None = None,
    flat: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Second-round candidates: for each sure pair (a, c), c's `expand_neighbours`
    nearest rows paired with a, and a's paired with c (see VerifyConfig; `flat` as for
    `candidate_pairs`)."""
    config = model.verify
    if config is None or config.expand_neighbours < 1 or len(sure) == 0:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    sure = np.asarray(sure, dtype=np.int64).reshape(-1, 2)
    rows = np.unique(sure.ravel())
    near = nearest_of(vectors, rows, config.expand_neighbours, search=search)
    both = np.concatenate([sure, sure[:, ::-1]])  # (image, partner whose neighbours it meets)
    met = near[np.searchsorted(rows, both[:, 1])]
    image = np.repeat(both[:, 0], met.shape[1])
    other = met.ravel()
    keep = (other >= 0) & (other != image)
    a, b = np.minimum(image, other)[keep], np.maximum(image, other)[keep]
    pairs = np.unique(np.stack([a, b], axis=1), axis=0) if len(a) else np.zeros((0, 2), np.int64)
    return _ambiguous(model, vectors, pairs, flat)


PAIR_BLOCK = 65_536
"""Pairs scored at a time from their rows' embeddings. Gathering both rows of every pair
at once holds 1 KB a pair (128-d float32, twice): 19 GB for the 9 M candidate pairs of a
million images, where a block holds 67 MB."""


def score_in_blocks(
    score: Callable[..., np.ndarray],
    vectors: np.ndarray,
    pairs: np.ndarray,
    block: int = PAIR_BLOCK,
    flat: np.ndarray | None = None,
) -> np.ndarray:
    """`score(vectors[pairs[:, 0]], vectors[pairs[:, 1]])`, computed `block` pairs at a
    time so memory stays bounded however many pairs there are. With `flat` (which rows
    are near-flat pictures, `Model.flat`), each call also gets whether each pair holds
    one: `score(a, b, flat=...)`."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)

    def one(part: np.ndarray) -> np.ndarray:
        a, b = vectors[part[:, 0]], vectors[part[:, 1]]
        if flat is None:
            return np.asarray(score(a, b))
        return np.asarray(score(a, b, flat=flat[part[:, 0]] | flat[part[:, 1]]))

    parts = [one(pairs[start : start + block]) for start in range(0, len(pairs), block)]
    return np.concatenate(parts) if parts else one(pairs[:0])


def _ambiguous(
    model: Model, vectors: np.ndarray, pairs: np.ndarray, flat: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs whose CNN similarity calls for verification, with that similarity
    (`Model.verification_prior`: near-flat pictures' pairs are verified from 0)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)

    def prior(a: np.ndarray, b: np.ndarray, flat: np.ndarray | None = None) -> np.ndarray:
        raw, check = model.verification_prior(a, b, flat)
        return np.where(check, raw, np.nan)  # NaN: not verified

    raw = score_in_blocks(prior, vectors, pairs, flat=flat)
    keep = ~np.isnan(raw)
    return pairs[keep], raw[keep]


def candidate_scores(
    model: Model,
    vectors: np.ndarray,
    load: Callable[[int], Image.Image],
    *,
    search: faiss.Index | None = None,
    reuse: Pairs | KnownPairs | None = None,
    keep_from: float = 0.0,
    on_verified: Callable[[np.ndarray, np.ndarray, Matches], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    matcher: Matcher | None = None,
    flat: np.ndarray | None = None,
) -> Pairs:
    """Verified similarity of every candidate pair; empty without a verify config.

    Round one verifies each row's ambiguous nearest neighbours (with `first_candidates`:
    the first few, then the further ones where either is in a sure pair); round two those
    of the pairs found sure, CNN-confident or verified (`VerifyConfig.expand_neighbours`).
    `reuse` holds similarities verified before (not verified again), `on_verified(pairs,
    similarities, matches)` receives new ones as they come, `on_progress(done,
    total)` counts pairs (the total grows when round two starts). Only pairs scored at
    least `keep_from` (or sure) are returned: a scan passes its review cut-off, so memory
    grows with the pairs it reports, not with the strangers it verified (every verified
    pair still reaches `on_verified`). `matcher` replaces `Model.match_counts` on `load`
    (verification elsewhere, e.g. on a Ray cluster's workers). `flat` (N,) says which
    rows are near-flat pictures (`Model.flat`; default: read from the embeddings).
    """
    config = model.verify
    scores: Pairs = {}
    if config is None or len(vectors) < 2:
        return scores
    flat = model.flat(vectors) if flat is None else np.asarray(flat, dtype=bool)
    search = search if search is not None else build_search(vectors)
    n = len(vectors)
    known = reuse if isinstance(reuse, KnownPairs) else KnownPairs.of(reuse or {}, n)
    keep = min(keep_from, config.confident_cnn_similarity)
    seen: list[np.ndarray] = []  # keys (a * n + b) of the pairs scored so far
    keypoints: dict[tuple[int, bool], Keypoints] = {}  # round two meets round one's images
    done = 0
    total = 0

    def note(pairs: np.ndarray, values: np.ndarray) -> None:
        seen.append(pairs[:, 0] * n + pairs[:, 1])
        wanted = values >= keep
        scores.update(zip(map(tuple, pairs[wanted].tolist()), values[wanted].tolist(), strict=True))

    def verify(pairs: np.ndarray, raw: np.ndarray) -> None:
        nonlocal done, total
        if seen and len(pairs):
            new = ~np.isin(pairs[:, 0] * n + pairs[:, 1], np.concatenate(seen))
            pairs, raw = pairs[new], raw[new]
        reused, values = known.find(pairs)
        if reused.any():
            note(pairs[reused], values)
        fresh = np.flatnonzero(~reused)
        total += len(fresh)
        if on_progress:
            on_progress(done, total)

        def chunk_done(chunk: np.ndarray, fused: np.ndarray, matches: Matches) -> None:
            nonlocal done
            done += len(chunk)
            note(chunk, fused)
            if on_verified:
                on_verified(chunk, fused, matches)
            if on_progress:
                on_progress(done, total)

        verify_pairs(
            model,
            pairs[fresh],
            raw[fresh],
            load,
            on_chunk=chunk_done,
            cache=keypoints,
            matcher=matcher,
            vectors=vectors,
        )

    def sure_pairs() -> np.ndarray:  # verified sure, or CNN-confident (not near-flat)
        sure = [pair for pair, s in scores.items() if s >= config.confident_cnn_similarity]
        return np.concatenate([np.array(sure, dtype=np.int64).reshape(-1, 2), vouched])

    staged = _first(config) < config.candidates_per_image
    vouched = np.zeros((0, 2), dtype=np.int64)
    if config.expand_neighbours > 0 or staged:
        confident = find_pairs(
            vectors, cosine_from_cnn_similarity(config.confident_cnn_similarity), search=search
        )
        vouched = np.stack([confident.i, confident.j], 1)
        vouched = vouched[~(flat[vouched[:, 0]] | flat[vouched[:, 1]])]  # not near-flat
    verify(*candidate_pairs(model, vectors, search, flat))
    if staged:
        verify(*further_pairs(model, vectors, sure_pairs().ravel(), search, flat=flat))
    if config.expand_neighbours > 0:
        verify(*expansion_pairs(model, vectors, sure_pairs(), search, flat))
    return scores


def verify_pairs(
    model: Model,
    pairs: np.ndarray,
    raw: np.ndarray,
    load: Callable[[int], Image.Image],
    *,
    on_chunk: Callable[[np.ndarray, np.ndarray, Matches], None] | None = None,
    cache: dict[tuple[int, bool], Keypoints] | None = None,
    matcher: Matcher | None = None,
    vectors: np.ndarray | None = None,
) -> np.ndarray:
    """Verified similarities of `pairs`, computed CHUNK pairs at a time.

    Pairs go in `local_order` (by region of embedding space, with `vectors`), so an
    image's pairs come close together; its keypoints are kept at least until its last
    chunk (at most KEYPOINT_CACHE images' worth), not extracted again in every chunk it
    appears in (`trim_cache`).
    `cache` (by image and side) carries keypoints from one call to the next, within
    that bound. `on_chunk(pairs, similarities, matches)` runs after each chunk
    (to store them as they come). `matcher(pairs)`, when given, matches each chunk
    instead (and keeps its own keypoints; `load` and `cache` are then unused).
    """
    fused = np.asarray(raw, dtype=np.float64).copy()
    order = local_order(pairs, vectors)
    last_chunk = last_chunks(pairs, order)
    cache = {} if cache is None else cache
    for chunk, start in enumerate(range(0, len(order), CHUNK)):
        rows = order[start : start + CHUNK]
        if matcher is not None:
            matches = matcher(pairs[rows])
        else:
            matches = model.match_counts(load, pairs[rows], cache=cache)
        if model.verify is not None:
            counted = hash_counts(fused[rows], matches, model.verify)
            matches = matches._replace(hash_bits=np.where(counted, matches.hash_bits, -1))
            fused[rows] = fuse_evidence(fused[rows], matches, model.verify)
        trim_cache(cache, last_chunk, chunk)
        if on_chunk:
            on_chunk(pairs[rows], fused[rows], matches)
    return fused


def last_chunks(pairs: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The last chunk of CHUNK pairs (taken in `order`) each image appears in, -1 for none:
    one array entry per image number."""
    last = np.full(int(pairs.max()) + 1 if len(pairs) else 0, -1, dtype=np.int64)
    np.maximum.at(last, pairs[order].ravel(), np.repeat(np.arange(len(order)) // CHUNK, 2))
    return last


def trim_cache(cache: dict[tuple[int, bool], Any], last_chunk: np.ndarray, chunk: int) -> None:
    """Keep `cache` (keypoints by image and side) within 2 x KEYPOINT_CACHE entries after
    `chunk`: over the bound, first drop the images no later chunk needs (or none ever
    needed: `last_chunk` from `last_chunks`), then the oldest (a wide graph). Under it,
    keypoints stay for a later round."""
    if len(cache) <= 2 * KEYPOINT_CACHE:
        return
    for key in [k for k in cache if k[0] >= len(last_chunk) or last_chunk[k[0]] <= chunk]:
        del cache[key]
    drop_oldest(cache, 2 * KEYPOINT_CACHE)


def drop_oldest(cache: dict[tuple[int, bool], Any], limit: int) -> None:
    """Drop the earliest-stored keypoints until at most `limit` entries are left."""
    while len(cache) > limit:
        del cache[next(iter(cache))]


def local_order(pairs: np.ndarray, vectors: np.ndarray | None = None) -> np.ndarray:
    """An order of `pairs` (P, 2) that keeps each image's pairs close, so keypoints kept for
    a few thousand images serve most of them.

    Images are numbered region by region of embedding space (with `vectors`, the rows the
    pairs index, when there are more than 2 x REGION_IMAGES images: spherical k-means),
    breadth-first over the pairs inside each region; pairs go by their later image, then
    their earlier one. A nearest-neighbour graph of a million strangers is like a random
    graph: breadth-first alone sent each image's pairs far apart and had images decoded
    again and again; most of an image's pairs lie in its region.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) == 0:
        return np.zeros(0, dtype=np.int64)
    images, ends = np.unique(pairs, return_inverse=True)
    ends = ends.reshape(-1, 2)
    region = np.zeros(len(images), dtype=np.int64) if vectors is None else _regions(vectors, images)
    inside = ends[region[ends[:, 0]] == region[ends[:, 1]]]
    rank = np.empty(len(images), dtype=np.int64)
    rank[np.lexsort((_breadth_first(inside, len(images)), region))] = np.arange(len(images))
    a, b = rank[ends[:, 0]], rank[ends[:, 1]]
    return np.lexsort((np.minimum(a, b), np.maximum(a, b)))


REGION_IMAGES = 2500
"""Images per region of embedding space in `local_order` (under half the keypoint cache)."""


def _regions(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The region (k-means cell, about REGION_IMAGES images each) of each of `rows`."""
    cells = len(rows) // REGION_IMAGES
    if cells < 2:
        return np.zeros(len(rows), dtype=np.int64)
    sample = np.sort(
        np.random.default_rng(0).choice(rows, size=min(len(rows), 64 * cells), replace=False)
    )
    kmeans = faiss.Kmeans(vectors.shape[1], cells, niter=10, spherical=True, seed=0)
    kmeans.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    region = np.empty(len(rows), dtype=np.int64)
    for start in range(0, len(rows), 65536):  # no second copy of a million vectors
        part = np.ascontiguousarray(vectors[rows[start : start + 65536]], dtype=np.float32)
        region[start : start + len(part)] = kmeans.index.search(part, 1)[1].ravel()
    return region


def _breadth_first(edges: np.ndarray, count: int) -> np.ndarray:
    """Numbers 0..count-1 for the nodes, breadth-first over `edges` (E, 2), one
    connected part after another."""
    both = np.concatenate([edges, edges[:, ::-1]])
    both = both[np.lexsort((both[:, 1], both[:, 0]))]
    starts = np.searchsorted(both[:, 0], np.arange(count + 1))
    neighbours = both[:, 1]  # an array, not a list: 8 bytes an entry, not ~36
    number = np.full(count, -1, dtype=np.int64)
    next_number = 0
    for root in range(count):
        if number[root] >= 0:
            continue
        number[root] = next_number
        next_number += 1
        queue = deque([root])
        while queue:
            node = queue.popleft()
            for other in neighbours[starts[node] : starts[node + 1]]:
                if number[other] < 0:
                    number[other] = next_number
                    next_number += 1
                    queue.append(other)
    return number
