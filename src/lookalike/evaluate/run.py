"""Run a system (the model or a peer hash) over a benchmark set and measure it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

import numpy as np
import psutil

from lookalike.candidates import candidate_scores
from lookalike.embed import embed_all
from lookalike.evaluate.peers import get_peer, hamming_scorer, hash_files
from lookalike.evaluate.scoring import tally_pairs
from lookalike.evaluate.truth import PairLayout, load_truth, pair_layout
from lookalike.model import Calibration, Model
from lookalike.records import Evaluation, OperatingPoint, Truth
from lookalike.verify import load_for_matching

MODEL_SYSTEM = "lookalike"
CNN_SYSTEM = "lookalike-cnn"
"""The same model's embeddings scored without verification (the CNN alone)."""
"""The model's name in reports."""


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _unique_memory(process: psutil.Process) -> int:
    """Memory only this process uses (USS), or its RSS where USS is not available."""
    try:
        return int(process.memory_full_info().uss)
    except (psutil.AccessDenied, AttributeError):
        return int(process.memory_info().rss)


@dataclass(frozen=True)
class Cost:
    """Wall time, CPU use and peak memory of one measured stage."""

    seconds: float
    cpu_seconds: float
    cpu_util: float
    peak_rss_mb: float


class ResourceMonitor:
    """Measure a stage: wall time, CPU time and peak RSS of this process and its children.

    CPU time is this process's plus its children's (finished children through the
    kernel's accounting, running ones sampled); utilisation is CPU time / wall time /
    cores. Memory is sampled every `interval` seconds as this process's RSS plus each
    worker's unique set size (USS): forked workers share most pages with this process,
    so summing their RSS would count the libraries once per worker. The sampling thread's
    own CPU time (a few % of a core) is included.

    >>> with ResourceMonitor() as monitor:
    ...     work()
    >>> monitor.cost.cpu_util
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._children_cpu: dict[int, float] = {}
        self._peak = 0
        self.cost = Cost(0.0, 0.0, 0.0, 0.0)

    def _cpu(self) -> float:
        t = self._process.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def _sample(self) -> None:
        rss = self._process.memory_info().rss
        for child in self._process.children(recursive=True):
            try:
                rss += _unique_memory(child)
                times = child.cpu_times()
                self._children_cpu[child.pid] = times.user + times.system
            except psutil.Error:  # the child finished between listing and reading it
                continue
        self._peak = max(self._peak, rss)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> ResourceMonitor:
        self._start_wall, self._start_cpu = time.perf_counter(), self._cpu()
        self._sample()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.cost = self.so_far()

    def so_far(self) -> Cost:
        """The cost from entering until now (the monitor keeps running)."""
        self._sample()
        wall = time.perf_counter() - self._start_wall
        running = {c.pid for c in self._process.children(recursive=True)}
        cpu = self._cpu() - self._start_cpu
        cpu += sum(v for pid, v in self._children_cpu.items() if pid in running)
        return Cost(wall, cpu, cpu / max(wall, 1e-9) / _cores(), self._peak / 2**20)


def _as_truth(bench: Truth | str | os.PathLike[str]) -> Truth:
    return bench if isinstance(bench, Truth) else load_truth(bench)


def _finish(
    system: str,
    layout: PairLayout,
    scorer: Callable[[np.ndarray, np.ndarray], np.ndarray],
    min_score: float,
    valid: np.ndarray,
    cost: Cost,
) -> Evaluation:
    began = time.perf_counter()
    tally = tally_pairs(layout, scorer, min_score, valid=valid)
    siblings = layout.siblings[valid[layout.siblings].all(axis=1)]
    sibling_fp = sum(
        int(scorer(np.array([a]), np.array([b]))[0, 0] >= min_score) for a, b in siblings.tolist()
    )
    metrics = tally.metrics(
        system,
        seconds=cost.seconds,
        images=len(layout.paths),
        cpu_util=cost.cpu_util,
        peak_rss_mb=cost.peak_rss_mb,
    )
    metrics = replace(
        metrics,
        unreadable=int((~valid).sum()),
        cpu_seconds=cost.cpu_seconds,
        scoring_seconds=time.perf_counter() - began,
        sibling_pairs=len(siblings),
        sibling_fp=sibling_fp,
    )
    return Evaluation(metrics, tally.curves(system))


def evaluate_model(
    bench: Truth | str | os.PathLike[str],
    model: Model,
    *,
    min_similarity: float | None = None,
    workers: int | None = None,
    batch_size: int = 64,
    on_progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """Embed every image of a set (decode included in the timing) and score all pairs.

    The decision is similarity >= `min_similarity` (default: the model's calibrated
    value). `seconds`, `images_per_s`, `cpu_util` and `peak_rss_mb` cover decoding and
    embedding; the evaluation's own all-pairs scoring is reported apart as
    `scoring_seconds`.

    >>> evaluate_model("bench", load_model()).metrics.recall_at_p99
    """
    return evaluate_model_and_cnn(
        bench,
        model,
        min_similarity=min_similarity,
        workers=workers,
        batch_size=batch_size,
        on_progress=on_progress,
        cnn_alone=False,
    )[0]


def evaluate_model_and_cnn(
    bench: Truth | str | os.PathLike[str],
    model: Model,
    *,
    min_similarity: float | None = None,
    workers: int | None = None,
    batch_size: int = 64,
    on_progress: Callable[[int], None] | None = None,
    cnn_alone: bool = True,
) -> list[Evaluation]:
    """`evaluate_model`, and with `cnn_alone` (and a verifying model) the same embeddings
    scored without verification at the CNN's own cut-off, as a second system
    (`CNN_SYSTEM`) — the learned part on its own, at no extra embedding cost.
    """
    layout = pair_layout(_as_truth(bench))
    cut = model.min_similarity if min_similarity is None else float(min_similarity)
    with ResourceMonitor() as monitor:
        embedded = embed_all(
            layout.paths, model, batch_size=batch_size, workers=workers, on_progress=on_progress
        )
        row = {Path(p): i for i, p in enumerate(embedded.paths)}
        index = np.array([row.get(p, -1) for p in layout.paths], dtype=np.int64)
        valid = index >= 0
        vectors = np.zeros((len(layout.paths), embedded.vectors.shape[1]), dtype=np.float32)
        vectors[valid] = embedded.vectors[index[valid]]
        measured = np.full(len(layout.paths), np.nan)
        measured[valid] = embedded.details[index[valid]]
        flat = model.flat(vectors, measured)
        embed_cost = monitor.so_far()
        refined = _refine_candidates(model, layout.paths, vectors, flat)

    scorer = refined.scorer(model, vectors, flat)
    evaluation = _finish(MODEL_SYSTEM, layout, scorer, cut, valid, monitor.cost)
    metrics = replace(evaluation.metrics, min_similarity=cut, verified_pairs=refined.count)
    evaluations = [replace(evaluation, metrics=metrics)]
    if cnn_alone and model.verify is not None:
        plain = model.without_verification()

        def cnn_scorer(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
            return plain.cnn_similarity_matrix(vectors[rows], vectors[cols], flat[rows], flat[cols])

        alone = _finish(CNN_SYSTEM, layout, cnn_scorer, plain.min_similarity, valid, embed_cost)
        metrics = replace(alone.metrics, min_similarity=plain.min_similarity, verified_pairs=0)
        evaluations.append(replace(alone, metrics=metrics))
    return evaluations


@dataclass
class Refined:
    """Similarities after geometric verification, for the candidate pairs that had it."""

    partners: dict[int, tuple[np.ndarray, np.ndarray]]
    count: int

    @classmethod
    def of(cls, scores: Mapping[tuple[int, int], float]) -> Refined:
        """From verified similarities by row pair (as `candidate_scores` gives them)."""
        partners: dict[int, tuple[list[int], list[float]]] = {}
        for (a, b), value in scores.items():
            for x, y in ((a, b), (b, a)):
                entry = partners.setdefault(int(x), ([], []))
                entry[0].append(int(y))
                entry[1].append(float(value))
        return cls(
            {x: (np.array(js), np.array(vs)) for x, (js, vs) in partners.items()}, len(scores)
        )

    def scorer(
        self, model: Model, vectors: np.ndarray, flat: np.ndarray
    ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """The rule's scores of (rows x cols) blocks of `vectors`: the CNN's, as an
        unverified pair scores (`Model.unverified_similarity`), where no verified one is
        known (`flat`: which rows are near-flat pictures)."""

        def scorer(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
            scores = model.cnn_similarity_matrix(
                vectors[rows], vectors[cols], flat[rows], flat[cols]
            )
            return self.apply(rows, cols, model.unverified_similarity(scores))

        return scorer

    def apply(self, rows: np.ndarray, cols: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Overwrite the verified pairs' entries of a (rows x cols) block of scores."""
        if not self.partners:
            return scores
        scores = np.array(scores, dtype=np.float64, copy=True)
        position = {int(c): k for k, c in enumerate(cols)}
        for r, i in enumerate(rows):
            found = self.partners.get(int(i))
            if found is None:
                continue
            for j, value in zip(*found, strict=True):
                k = position.get(int(j))
                if k is not None:
                    scores[r, k] = value
        return scores


def _refine_candidates(
    model: Model, paths: Sequence[Path], vectors: np.ndarray, flat: np.ndarray
) -> Refined:
    """Verify candidate pairs exactly as a scan does (see lookalike.candidates)."""
    if model.verify is None:
        return Refined({}, 0)
    config = model.verify
    return Refined.of(
        candidate_scores(model, vectors, lambda m: load_for_matching(paths[m], config), flat=flat)
    )


def evaluate_hash(
    bench: Truth | str | os.PathLike[str],
    name: str,
    *,
    max_distance: int | None = None,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """Hash every image of a set with a peer (one process per core) and score all pairs.

    Scores are 1 - Hamming distance / bits; the decision is distance <= `max_distance`
    (default: the peer's usual value, see `PEERS`).

    >>> evaluate_hash("bench", "phash").metrics.recall
    """
    layout = pair_layout(_as_truth(bench))
    peer = get_peer(name)
    limit = peer.max_distance if max_distance is None else int(max_distance)
    with ResourceMonitor() as monitor:
        hashes = hash_files(layout.paths, name, workers=workers, on_progress=on_progress)
    evaluation = _finish(
        name,
        layout,
        hamming_scorer(hashes),
        1.0 - limit / peer.bits,
        hashes.valid,
        monitor.cost,
    )
    metrics = evaluation.metrics
    metrics = replace(
        metrics,
        max_distance=limit,
        bits=peer.bits,
        at_p99=_in_bits(metrics.at_p99, peer.bits),
        at_p999=_in_bits(metrics.at_p999, peer.bits),
    )
    return replace(evaluation, metrics=metrics)


def _in_bits(point: OperatingPoint, bits: int) -> OperatingPoint:
    """The operating point with its cut-off also in the peer's own unit (Hamming distance);
    None when no cut-off reaches the precision."""
    cut = point.min_score
    return replace(point, max_distance=round((1.0 - cut) * bits) if np.isfinite(cut) else None)


def calibrate_model(
    model: Model,
    bench: Truth | str | os.PathLike[str],
    *,
    target_precision: float = 0.99,
    workers: int | None = None,
    confident: float | None = None,
) -> tuple[Model, Evaluation]:
    """Choose min_similarity on a calibration set: the lowest cut-off with pair precision
    >= `target_precision`.

    With geometric verification, the CNN-confident cut-off is set first: pairs at or above
    it skip verification. It is `confident` when given, else the CNN alone's own cut-off at
    precision 0.99 on the set. Then the verified system's scores are calibrated. Returns the
    calibrated model and its evaluation on the set.
    """
    truth = _as_truth(bench)
    verify = model.verify
    if confident is not None and not 0.0 <= confident <= 1.0:
        raise ValueError(f"confident cut-off {confident} is outside [0, 1]")
    if verify is not None:
        if confident is None:
            plain = evaluate_model(truth, replace(model, verify=None), workers=workers)
            confident = float(plain.metrics.at_p99.min_score)
        verify = replace(verify, confident_cnn_similarity=min(1.0, confident))
        model = replace(model, verify=verify)
    if target_precision not in (0.99, 0.999):
        raise ValueError("target_precision must be 0.99 or 0.999")
    result = evaluate_model(truth, model, workers=workers)
    strict = target_precision == 0.999
    point = result.metrics.at_p999 if strict else result.metrics.at_p99
    recall = point.recall
    cut = float(point.min_score) if np.isfinite(point.min_score) else 1.0
    calibration = Calibration(
        min_similarity=cut,
        method=(
            f"lowest cut-off with pair precision >= {target_precision} on a calibration set "
            f"({len(truth.originals)} originals, {len(truth.distractors)} distractors); "
            f"recall there {recall:.4f}"
            + (
                f"; verification above {verify.min_cnn_similarity}, CNN-confident "
                f"from {verify.confident_cnn_similarity:.4f}"
                if verify
                else ""
            )
        ),
        target_precision=target_precision,
        positives=int(result.metrics.tp + result.metrics.fn),
        negatives=int(result.metrics.fp + result.metrics.tn),
    )
    return model.with_calibration(calibration), result
