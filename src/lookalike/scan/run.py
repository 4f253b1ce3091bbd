"""scan_folder: files -> contents -> embeddings -> pairs -> groups, all kept in an index."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from lookalike.candidates import KnownPairs, Verifier
from lookalike.embed import EmbeddedBatch, default_workers, embed_paths
from lookalike.index import Index, build_index
from lookalike.model import Model, load_model
from lookalike.records import ScanProgress, ScanResult, ScanStats, Traits
from lookalike.scan.groups import build_groups
from lookalike.scan.keepers import KEEP_POLICIES, TRAITS_VERSION, measure_many
from lookalike.scan.pairs import file_loader, pair_scores
from lookalike.scan.stored import candidates, read_result
from lookalike.scan.walk import (
    ScanError,
    absolute,
    inside_any,
    iter_found,
    link_same_files,
    scan_roots,
    walk_into,
)
from lookalike.verify import Matches

REVIEW_MARGIN = 0.03
"""Default review cut-off: this much below min_similarity."""

VANISHED = "file vanished during the scan"
"""Stored for a file the walk found but that was gone when it was decoded."""


Embedder = Callable[..., Iterable[EmbeddedBatch]]
"""Embeds files like `embed_paths(paths, model, batch_size=, workers=)` (e.g. on a cluster)."""

_HELD: set[str] = set()
"""Index locks this process holds (POSIX record locks do not exclude the same process)."""
_HELD_GUARD = threading.Lock()


def _busy(path: Path, what: str) -> ScanError:
    return ScanError(
        f"{path} is in use by another scan or quarantine; wait for it to finish before the {what}"
    )


@contextlib.contextmanager
def index_lock(path: Path, what: str) -> Iterator[None]:
    """Hold the index's writer lock (a scan or a quarantine at a time), or raise ScanError.

    A POSIX record lock on `<index>.lock`: the kernel drops it when the process dies
    (even by kill -9), and forked decode workers do not inherit it.
    """
    key = os.path.abspath(path)
    with _HELD_GUARD:
        if key in _HELD:
            raise _busy(path, what)
        _HELD.add(key)
    try:
        try:
            import fcntl
        except ImportError:  # not POSIX: no cross-process lock; SQLite still keeps data whole
            yield
            return
        with open(path.with_name(path.name + ".lock"), "a") as handle:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise _busy(path, what) from None
            try:
                yield
            finally:
                fcntl.lockf(handle, fcntl.LOCK_UN)
    finally:
        with _HELD_GUARD:
            _HELD.discard(key)


def resolve_thresholds(
    model: Model, min_similarity: float | None, review_min_similarity: float | None
) -> tuple[float, float]:
    """The duplicate and review cut-offs, defaults filled in and checked."""
    cut = model.min_similarity if min_similarity is None else float(min_similarity)
    review = (
        max(0.0, cut - REVIEW_MARGIN) if review_min_similarity is None else review_min_similarity
    )
    if not 0.0 <= cut <= 1.0:
        raise ScanError(f"min_similarity must be between 0 and 1, got {cut}")
    if not 0.0 <= review <= cut:
        raise ScanError(
            f"review_min_similarity ({review}) must be between 0 and min_similarity ({cut})"
        )
    return cut, float(review)


def _read_list(files_from: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[str]:
    if isinstance(files_from, str | os.PathLike):
        try:
            text = Path(files_from).read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as exc:
            raise ScanError(f"cannot read the file list {files_from}: {exc.strerror}") from None
        lines: Iterable[str | os.PathLike[str]] = text.splitlines()
    else:
        lines = files_from
    return [str(line).rstrip("\r\n") for line in lines if str(line).strip()]


def scan_folder(
    roots: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    index: str | os.PathLike[str],
    *,
    model: Model | None = None,
    min_similarity: float | None = None,
    review_min_similarity: float | None = None,
    keep: str = "best",
    files_from: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
    include_hidden: bool = False,
    on_progress: Callable[[ScanProgress], None] | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    embedder: Embedder | None = None,
    verifier: Verifier | None = None,
    verify: bool = True,
    reference: Sequence[str | os.PathLike[str]] = (),
) -> ScanResult:
    """Find the duplicate groups among the images under `roots`, kept in an index file.

    Byte-identical files are grouped by content hash and embedded once; new or changed
    files (size or modification time) are embedded, deleted ones dropped. Pairs down to
    `review_min_similarity` (default: min_similarity - 0.03) are kept; pairs at or above
    `min_similarity` (default: the model's calibrated value) are duplicates and form
    groups, each with a keeper chosen by `keep` (see KEEP_POLICIES). A killed scan
    resumes where it stopped when run again. `embedder` replaces `embed_paths` (e.g.
    `lookalike.distributed.RayEmbedder`), `verifier` runs verification elsewhere (e.g.
    `RayEmbedder.verifier`, on the cluster's workers); everything else stays the same.
    `verify=False`
    skips geometric verification (much faster on huge sets; fewer geometric copies found)
    and decides with the CNN's own calibrated cut-off. Files under a `reference` folder
    (scanned too) are never to be removed: one keeps any group it is in, and pairs of two
    reference files are not reported.

    >>> result = scan_folder("photos", index="photos.lookalike")
    >>> [g.duplicates for g in result.groups]
    """
    started = time.perf_counter()
    if isinstance(roots, str | os.PathLike):
        roots = [roots]
    if keep not in KEEP_POLICIES:
        raise ScanError(f"unknown keep policy {keep!r}; choose one of {', '.join(KEEP_POLICIES)}")
    listed = _read_list(files_from) if files_from is not None else []
    if not roots and not listed:
        raise ScanError("nothing to scan: give folders or a file list")
    model = model or load_model()
    if not verify:
        model = model.without_verification()
    cut, review = resolve_thresholds(model, min_similarity, review_min_similarity)
    for folder in reference:
        if not Path(folder).is_dir():
            raise ScanError(f"not a folder: {folder} (a reference must be a folder)")
    kept_folders = [str(absolute(f)) for f in reference]
    given = {str(absolute(r)) for r in roots}
    roots = [*roots, *(f for f in reference if str(absolute(f)) not in given)]
    root_list = scan_roots(roots, listed)
    path = Path(index)
    path.parent.mkdir(parents=True, exist_ok=True)
    with index_lock(path, "scan"), build_index(path, model) as store:
        progress = on_progress or (lambda _p: None)
        root_rows = store.set_roots(root_list)
        by_path = {r.path: r.id for r in root_rows}
        root_ids = [by_path[p] for p, _ in root_list]
        settings: dict[str, object] = {
            "min_similarity": cut,
            "review_min_similarity": review,
            "keep": keep,
            "reference": kept_folders,
        }
        scan_id = store.start_scan([s for _, s in root_list], settings)
        walked = walk_into(
            store,
            scan_id,
            iter_found(roots, listed, root_ids, include_hidden),
            on_batch=lambda files, _h: progress(ScanProgress("walk", files)),
        )
        progress(ScanProgress("walk", walked.files, walked.files))
        same_file = link_same_files(store, scan_id)
        embedded = _embed_new(
            store, scan_id, model, progress, batch_size, workers, embedder or embed_paths
        )
        kept = {
            fid
            for fid, _, found in (store.embedded_files(scan_id) if kept_folders else ())
            if inside_any(found, kept_folders)
        }
        pairs = [  # two reference files are not checked against each other
            p
            for p in _search(store, scan_id, model, review, progress, verifier)
            if not (p[0] in kept and p[1] in kept)
        ]
        if keep == "best":
            _measure_keepers(store, pairs, workers, progress)
        progress(ScanProgress("group", 0))
        plans = build_groups(
            candidates(store, scan_id, kept_folders),
            pairs,
            min_similarity=cut,
            keep=keep,
            not_duplicates=store.not_duplicate_marks(),
            keep_marks=store.keep_marks(),
        )
        seconds = time.perf_counter() - started
        stats = store.finish_scan(
            scan_id,
            root_ids,
            pairs,
            ((g.keep, g.keep_by, g.members) for g in plans),
            settings,
            lambda counts: ScanStats(
                files=counts.files,
                images=counts.images,
                errors=counts.errors,
                exact_duplicates=counts.images - counts.distinct,
                groups=len(plans),
                seconds=round(seconds, 3),
                images_per_s=round(counts.images / seconds, 2) if seconds > 0 else 0.0,
                embedded=embedded,
                hashed=walked.hashed,
                same_file=same_file,
            ),
        )
        progress(ScanProgress("group", len(plans), len(plans)))
        return read_result(store, stats=stats)


def _measure_keepers(
    store: Index,
    pairs: Sequence[tuple[int, int, float, bool]],
    workers: int | None,
    progress: Callable[[ScanProgress], None],
) -> None:
    """Measure what `best` compares for every file in a kept pair (once per content)."""
    todo = store.hashes_without_traits({n for a, b, _, _ in pairs for n in (a, b)}, TRAITS_VERSION)
    progress(ScanProgress("keepers", 0, len(todo)))
    measured: list[tuple[str, Traits]] = []
    found = measure_many(
        [path for _, path in todo],
        workers or default_workers(),
        on_done=lambda done: progress(ScanProgress("keepers", done, len(todo))),
    )
    for (digest, _), traits in zip(todo, found, strict=True):
        if traits is not None:
            measured.append((digest, traits))
        if len(measured) >= TRAITS_BATCH:
            store.store_traits(measured)
            measured = []
    store.store_traits(measured)


TRAITS_BATCH = 256
"""Measured contents stored per transaction."""

EMBED_SLICE = 20_000
"""Files handed to the embedder at a time (bounds the memory of very large scans)."""


def _embed_new(
    store: Index,
    scan_id: int,
    model: Model,
    progress: Callable[[ScanProgress], None],
    batch_size: int,
    workers: int | None,
    embedder: Embedder,
) -> int:
    """Embed every content of this scan without a stored embedding, one file per content.

    Each round takes the next slice of contents still without an embedding or an
    error, so every round ends in progress, and a path-specific failure (the file went
    missing) lets another copy of the same bytes be tried in the next round.
    """
    if model.detail is not None and model.detail.clear_detail is not None:
        store.forget_unmeasured(scan_id)  # its gate reads measured detail: embed those again
    total = store.unembedded_count(scan_id)
    embedded = done = 0
    progress(ScanProgress("embed", 0, total))
    while todo := store.unembedded(scan_id, EMBED_SLICE):
        for batch in embedder([p for _, p in todo], model, batch_size=batch_size, workers=workers):
            rows = batch.indices.tolist()
            measured = batch.measured().tolist()
            store.store_embeddings(
                scan_id,
                [
                    (
                        todo[i][0],
                        np.ascontiguousarray(v, dtype=np.float32).tobytes(),
                        None if np.isnan(d) else d,
                    )
                    for i, v, d in zip(rows, batch.vectors, measured, strict=True)
                ],
                [(todo[i][0], w, h) for i, (w, h) in zip(rows, batch.sizes, strict=True)],
                # A path's own fault (gone, a broken link...) is stored on that path alone:
                # another copy of the same bytes may read fine.
                [
                    (todo[i][1], VANISHED if e.kind == "missing" else e.reason)
                    for i, e in batch.errors
                    if e.kind != "content"
                ],
                [(todo[i][0], e.reason) for i, e in batch.errors if e.kind == "content"],
            )
            embedded += len(batch.indices)
            done += len(batch.indices) + len(batch.errors)
            progress(ScanProgress("embed", done, max(total, done)))
    store.fill_copied_sizes(scan_id)
    return embedded


def _search(
    store: Index,
    scan_id: int,
    model: Model,
    review: float,
    progress: Callable[[ScanProgress], None],
    verifier: Verifier | None = None,
) -> list[tuple[int, int, float, bool]]:
    """Every pair of this scan's readable files at or above the review cut-off (by file id).

    Pairs of distinct contents are scored by the model; with a verify config, each
    content's ambiguous nearest neighbours are scored after geometric verification
    (by `verifier`'s matcher when given).
    """
    files_by_hash: dict[str, list[int]] = defaultdict(list)
    path_of: dict[str, str] = {}
    for fid, digest, path in store.embedded_files(scan_id):
        files_by_hash[digest].append(fid)
        path_of.setdefault(digest, path)
    hashes = sorted(files_by_hash)
    pairs: list[tuple[int, int, float, bool]] = []
    for ids in files_by_hash.values():  # byte-identical files: similarity 1 by definition
        pairs.extend((a, b, 1.0, True) for k, a in enumerate(ids) for b in ids[k + 1 :])
    if len(hashes) < 2:
        return pairs
    vectors = store.vectors(hashes)
    flat = model.flat(vectors, store.details(hashes))
    row = {h: n for n, h in enumerate(hashes)}
    known_rows, known_values = array("q"), array("d")  # 16 bytes a pair, not a dict entry
    for hash_a, hash_b, score in store.iter_verified():
        if (ra := row.get(hash_a)) is not None and (rb := row.get(hash_b)) is not None:
            known_rows.extend((ra, rb))
            known_values.append(score)
    reuse = KnownPairs(np.frombuffer(known_rows, dtype=np.int64), np.array(known_values), len(row))
    del row

    def remember(rows: np.ndarray, fused: np.ndarray, matches: Matches) -> None:
        store.store_verified(
            (hashes[i], hashes[j], float(s), int(n), float(c), bool(shot), int(h))
            for (i, j), s, n, c, shot, h in zip(rows.tolist(), fused, *matches, strict=True)
        )

    paths = [path_of[h] for h in hashes]
    with (
        verifier(paths, model)
        if verifier is not None and model.verify is not None
        else contextlib.nullcontext(None)
    ) as matcher:
        scores = pair_scores(
            model,
            vectors,
            review,
            file_loader(paths, model.verify),
            flat=flat,
            reuse=reuse,
            on_verified=remember,
            on_progress=lambda stage, done, total: progress(ScanProgress(stage, done, total)),
            matcher=matcher,
        )
    for (i, j), score in scores.items():
        for a in files_by_hash[hashes[i]]:
            for b in files_by_hash[hashes[j]]:
                pairs.append((min(a, b), max(a, b), float(score), False))
    return pairs
