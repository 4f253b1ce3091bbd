"""Batched, streaming embedding of many image files: parallel decode, then the model."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import numpy as np
import torch

from lookalike.io import UnreadableImage, open_image
from lookalike.model import Model, Preprocess, measure_detail, prepare_image, standardise
from lookalike.records import FileError
from lookalike.runtime import OnnxEncoder


@dataclass(frozen=True)
class Prepared:
    """One decoded file ready for the encoder, or the reason it could not be read."""

    index: int
    pixels: np.ndarray | None
    width: int = 0
    height: int = 0
    error: str | None = None
    kind: str = "content"
    """What an error belongs to (io.UnreadableImage.kind)."""
    vector: np.ndarray | None = None
    """Set instead of `pixels` when the worker ran the network itself."""
    detail: float = float("nan")
    """The picture's measured detail (`lookalike.model.measure_detail`)."""


@dataclass
class EmbeddedBatch:
    """Embeddings of the readable files of one batch; `indices` point into the input."""

    indices: np.ndarray
    vectors: np.ndarray
    sizes: list[tuple[int, int]]
    errors: list[tuple[int, FileError]] = field(default_factory=list)
    details: np.ndarray | None = None
    """Each row's measured detail (`lookalike.model.measure_detail`); None: not measured."""

    def measured(self) -> np.ndarray:
        """`details`, NaN for each row where they were not measured."""
        if self.details is None:
            return np.full(len(self.indices), np.nan)
        return np.asarray(self.details, dtype=np.float64)


def prepare_file(index: int, path: str, preprocess: Preprocess) -> Prepared:
    """Decode one file at reduced size and prepare it; never raises for a bad file."""
    try:
        decoded = open_image(path, min_side=preprocess.decode_side)
        pixels = prepare_image(decoded.image, preprocess)
        return Prepared(index, pixels, decoded.width, decoded.height, detail=measure_detail(pixels))
    except UnreadableImage as exc:
        return Prepared(index, None, error=exc.reason, kind=exc.kind)
    except Exception as exc:  # a decoder bug must not stop a scan of a million files
        return Prepared(index, None, error=f"unexpected decoder failure ({type(exc).__name__})")


def _die_with_parent() -> None:
    """Ask Linux to end this worker when the process that started it dies (even kill -9)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: workers end when their pipe closes
        pass


_NETWORK: OnnxEncoder | None = None
"""In a decode worker: the network, when the worker embeds what it decodes."""


def _start_worker(exported: bytes | None) -> None:
    _die_with_parent()
    global _NETWORK
    # ONNX Runtime only (no PyTorch after a fork), one thread: each worker fills a core.
    _NETWORK = OnnxEncoder(exported, threads=1) if exported is not None else None


def _prepare_chunk(items: list[tuple[int, str]], preprocess: Preprocess) -> list[Prepared]:
    prepared = [prepare_file(i, p, preprocess) for i, p in items]
    good = [p for p in prepared if p.pixels is not None]
    if _NETWORK is None or not good:
        return prepared
    pixels = np.stack([cast(np.ndarray, p.pixels) for p in good])
    try:
        vectors = iter(_NETWORK(standardise(pixels, preprocess)))
    except Exception:  # the parent embeds these pixels itself
        return prepared
    return [
        replace(p, pixels=None, vector=next(vectors)) if p.pixels is not None else p
        for p in prepared
    ]


def default_workers() -> int:
    """Decode processes: one per core."""
    return max(1, os.cpu_count() or 1)


DECODE_SHARE = 0.7
"""Share of the CPU that decoding takes when it runs beside the network: decoding a photo
costs 2-3 times the network's work per image (benchmarks/throughput.py), so the network
gets the rest, at least one thread."""


@contextmanager
def _network_threads(workers: int) -> Iterator[None]:
    """Run the network on fewer threads while `workers` decode processes share the cores."""
    threads = torch.get_num_threads()
    if workers <= 1:
        yield
        return
    torch.set_num_threads(max(1, round(threads * (1 - DECODE_SHARE))))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _prepared_stream(
    paths: Sequence[str | os.PathLike[str]],
    preprocess: Preprocess,
    workers: int,
    chunk: int,
    exported: bytes | None = None,
) -> Iterator[list[Prepared]]:
    """Decoded chunks in input order, at most a few chunks ahead (bounded memory).

    With `exported` (an ONNX encoder), each worker also embeds its chunk.
    """
    items = [(i, str(p)) for i, p in enumerate(paths)]
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    if workers <= 1 or len(chunks) <= 1:
        for part in chunks:
            yield _prepare_chunk(part, preprocess)
        return
    # Workers only run PIL, NumPy and ONNX Runtime, so forking is safe and starts fast; it
    # also works from notebooks and `python -` where spawn cannot re-import __main__.
    context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    ahead = workers * 3
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_start_worker, initargs=(exported,)
    ) as pool:
        pending: list[Future[list[Prepared]]] = []
        for part in chunks:
            pending.append(pool.submit(_prepare_chunk, part, preprocess))
            if len(pending) >= ahead:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def embed_paths(
    paths: Iterable[str | os.PathLike[str]],
    model: Model,
    *,
    batch_size: int = 64,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[EmbeddedBatch]:
    """Embed files as a stream of batches; unreadable files come back as errors.

    Decoding runs in `workers` processes (default: one per core). With ONNX Runtime each
    worker also runs the network on what it decoded (one thread each); otherwise the
    network runs in this process while the workers decode.

    >>> for batch in embed_paths(paths, load_model()):
    ...     store(batch.indices, batch.vectors)
    """
    paths = list(paths)
    workers = default_workers() if workers is None else workers
    exported = model.onnx_bytes() if workers > 1 and model.uses_onnx() else None
    for prepared in _prepared_stream(paths, model.preprocess, workers, batch_size, exported):
        good = [p for p in prepared if p.error is None]
        errors = [
            (p.index, FileError(Path(paths[p.index]), p.error or "unreadable", p.kind))
            for p in prepared
            if p.error is not None
        ]
        if good and all(p.vector is not None for p in good):
            vectors = np.stack([cast(np.ndarray, p.vector) for p in good])
        elif good:
            with _network_threads(workers):
                vectors = model.embed_arrays(np.stack([cast(np.ndarray, p.pixels) for p in good]))
        else:
            vectors = np.zeros((0, model.encoder.config.embed_dim), dtype=np.float32)
        yield EmbeddedBatch(
            indices=np.array([p.index for p in good], dtype=np.int64),
            vectors=vectors,
            sizes=[(p.width, p.height) for p in good],
            errors=errors,
            details=np.array([p.detail for p in good], dtype=np.float64),
        )
        if on_progress:
            on_progress(len(prepared))


@dataclass
class Embeddings:
    """Embeddings of many files: row i of `vectors` and `details` belongs to `paths[i]`."""

    paths: list[Path]
    vectors: np.ndarray
    errors: list[FileError]
    details: np.ndarray
    """Measured detail of each row (`lookalike.model.measure_detail`; NaN: not measured)."""


def embed_all(
    paths: Iterable[str | os.PathLike[str]],
    model: Model,
    *,
    batch_size: int = 64,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Embeddings:
    """Embed every readable file into one array (errors listed apart)."""
    paths = list(paths)
    kept: list[Path] = []
    chunks: list[np.ndarray] = []
    details: list[np.ndarray] = []
    errors: list[FileError] = []
    for batch in embed_paths(
        paths, model, batch_size=batch_size, workers=workers, on_progress=on_progress
    ):
        kept.extend(Path(paths[i]) for i in batch.indices)
        chunks.append(batch.vectors)
        details.append(batch.measured())
        errors.extend(e for _, e in batch.errors)
    dim = model.encoder.config.embed_dim
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, dim), dtype=np.float32)
    return Embeddings(kept, vectors, errors, np.concatenate(details) if details else np.zeros(0))
