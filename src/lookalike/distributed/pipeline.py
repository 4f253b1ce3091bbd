"""The embedding stage on Ray Data: file list -> decode -> embed (one model per actor) -> Parquet.

>>> with RayEmbedder("photos.shards") as embedder:
...     scan_folder("photos", index="photos.lookalike", embedder=embedder)
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lookalike.candidates import Matcher
from lookalike.distributed.cluster import DistributedError, ray_cluster, require_ray
from lookalike.distributed.decode import Decode, _decode_batch
from lookalike.distributed.shards import shard_files, shard_table, write_manifest
from lookalike.distributed.verify import ray_matcher
from lookalike.embed import EmbeddedBatch, prepare_file
from lookalike.io import error_kind
from lookalike.model import Model, measure_detail
from lookalike.records import FileError

FILES_PER_TASK = 256
"""Files per input block: the unit of work a decode task takes (and retries)."""

SHARD_ROWS = 100_000
"""Rows written per Parquet shard at least (when a job has that many): ~80 MB at 128-d."""


class _EmbedBatches:
    """A Ray Data actor: loads the model once, then embeds decoded batches into shard rows."""

    def __init__(self, model: list[Any]) -> None:
        import ray

        # The model comes as a reference inside a list, so Ray does not inline it into
        # the actor's constructor arguments; each actor fetches it once.
        self.model: Model = ray.get(model[0])

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        ok = np.array([not e for e in batch["error"]], dtype=bool)
        vectors = np.zeros((len(ok), self.model.encoder.config.embed_dim), dtype=np.float32)
        details = np.full(len(ok), np.nan)
        if ok.any():
            vectors[ok] = self.model.embed_arrays(batch["pixels"][ok])
            details[ok] = [measure_detail(p) for p in batch["pixels"][ok]]
        return shard_table(
            batch["index"],
            [str(p) for p in batch["path"]],
            vectors,
            list(zip(batch["width"].tolist(), batch["height"].tolist(), strict=True)),
            [str(e) if e else None for e in batch["error"]],
            details,
        )


def _quiet_ray_data(ray: ModuleType) -> None:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # not "progress bars disabled"


def embed_to_shards(
    paths: Sequence[str | os.PathLike[str]],
    model: Model,
    out: str | os.PathLike[str],
    *,
    batch_size: int = 64,
    actors: int | None = None,
    files_per_task: int = FILES_PER_TASK,
    shard_rows: int = SHARD_ROWS,
    decode: Decode = prepare_file,
) -> Path:
    """Embed files on the Ray cluster this process is connected to; write Parquet shards.

    Input blocks hold `files_per_task` files; each is decoded and embedded in a pool of
    up to `actors` actors (default: the cluster's cores but one), each loading the
    model once. (Ray Data fuses the decode stage into the embedding actors, so pixels
    never travel between processes.)
    `out` must be a new or empty folder the workers can write (shared storage on a
    multi-node cluster); it gets the shards (schema in `shards.shard_schema`) and, when
    the job is done, `manifest.json`. A worker that dies is replaced and its work run
    again; a file that cannot be read, or that crashed its decoding worker twice, is
    a row with an error.
    """
    ray = require_ray()
    if not ray.is_initialized():
        raise DistributedError("not connected to Ray: call inside `with ray_cluster(...)`")
    folder = Path(out)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DistributedError(f"{folder} exists and is not an empty folder; give a new one")
    folder.mkdir(parents=True, exist_ok=True)
    names = [os.fspath(p) for p in paths]
    _quiet_ray_data(ray)
    blocks = [
        pa.table(
            {
                "index": pa.array(
                    range(start, min(start + files_per_task, len(names))), pa.int64()
                ),
                "path": pa.array(names[start : start + files_per_task], pa.string()),
            }
        )
        for start in range(0, len(names), files_per_task)
    ]
    if not blocks:
        write_manifest(folder, model, 0, 0)
        return folder
    cores = int(ray.cluster_resources().get("CPU", 1))
    pool = actors or max(1, cores - 1)  # one core left for the Parquet writers
    model_ref = ray.put(model)
    journal = folder / "retries"
    dataset = (
        ray.data.from_arrow(blocks)
        .map_batches(
            _decode_batch,
            fn_kwargs={"preprocess": model.preprocess, "decode": decode, "journal": str(journal)},
            batch_size=batch_size,
            batch_format="numpy",
            num_cpus=1,
        )
        .map_batches(
            _EmbedBatches,
            fn_constructor_kwargs={"model": [model_ref]},
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=pool),
            batch_size=batch_size,
            batch_format="numpy",
            num_cpus=1,
        )
    )
    try:
        dataset.write_parquet(str(folder), min_rows_per_file=shard_rows)
    except Exception as exc:  # Ray wraps worker failures in many types; one clear message
        raise DistributedError(f"the embedding job failed: {exc}") from exc
    shutil.rmtree(journal, ignore_errors=True)
    readable = sum(
        pq.read_table(f, columns=["error"]).column("error").null_count for f in shard_files(folder)
    )
    write_manifest(folder, model, len(names), len(names) - readable)
    return folder


def read_batches(folder: str | os.PathLike[str], batch_size: int = 64) -> Iterator[EmbeddedBatch]:
    """The rows of a shard folder as `EmbeddedBatch`es in input order (as `embed_paths` gives)."""
    tables = [pq.read_table(f) for f in shard_files(folder)]
    if not tables:
        return
    table = pa.concat_tables(tables).sort_by("index")
    for start in range(0, table.num_rows, batch_size):
        part = table.slice(start, batch_size)
        index = part.column("index").to_numpy()
        paths = part.column("path").to_pylist()
        errors = part.column("error").to_pylist()
        good = np.array([e is None for e in errors], dtype=bool)
        vectors = part.column("vector").combine_chunks()
        dim = vectors.type.list_size
        values = vectors.filter(pa.array(good)).flatten().to_numpy(zero_copy_only=False)
        details = (  # shards from before the column: not measured
            np.array(part.column("detail").to_pylist(), dtype=np.float64)[good]
            if "detail" in part.column_names
            else None
        )
        yield EmbeddedBatch(
            indices=index[good].astype(np.int64),
            vectors=values.reshape(-1, dim).astype(np.float32, copy=False),
            sizes=[
                (int(w), int(h))
                for w, h, ok in zip(
                    part.column("width").to_pylist(),
                    part.column("height").to_pylist(),
                    good,
                    strict=True,
                )
                if ok
            ],
            errors=[
                (int(i), FileError(Path(p), str(e), error_kind(str(e))))
                for i, p, e in zip(index, paths, errors, strict=True)
                if e is not None
            ],
            details=details,
        )


class RayEmbedder:
    """`embed_paths` on Ray: same call, same batches, each job's shards kept on disk.

    Each call runs one Ray Data job writing into a new numbered folder under
    `shards_dir` (nothing there is ever overwritten), then yields its rows. Pass it to
    `scan_folder(..., embedder=embedder, verifier=embedder.verifier)` to verify on the
    cluster's workers too; the rest of the scan is unchanged. Use it as a context
    manager: it starts (or joins, with `address`) Ray on entry.
    """

    def __init__(
        self,
        shards_dir: str | os.PathLike[str],
        *,
        address: str | None = None,
        num_cpus: int | None = None,
        actors: int | None = None,
        files_per_task: int = FILES_PER_TASK,
        shard_rows: int = SHARD_ROWS,
        decode: Decode = prepare_file,
    ) -> None:
        self.shards_dir = Path(shards_dir)
        if self.shards_dir.exists() and not self.shards_dir.is_dir():
            raise DistributedError(f"{self.shards_dir} is a file; give a folder for the shards")
        self.address = address
        self.num_cpus = num_cpus
        self.actors = actors
        self.files_per_task = files_per_task
        self.shard_rows = shard_rows
        self.decode = decode
        self.jobs: list[Path] = []
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> RayEmbedder:
        require_ray()
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(ray_cluster(self.address, self.num_cpus))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def verifier(
        self, paths: list[str], model: Model
    ) -> contextlib.AbstractContextManager[Matcher]:
        """Verification on the cluster's workers, for `scan_folder(verifier=...)`."""
        if self._stack is None:
            raise DistributedError("use RayEmbedder as a context manager: `with RayEmbedder(...)`")
        return ray_matcher(paths, model)

    def _next_folder(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in itertools.count(1):
            folder = self.shards_dir / f"job-{stamp}-{n:03d}"
            if not folder.exists():
                return folder
        raise AssertionError("unreachable")

    def __call__(
        self,
        paths: Iterable[str | os.PathLike[str]],
        model: Model,
        *,
        batch_size: int = 64,
        workers: int | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> Iterator[EmbeddedBatch]:
        """Embed `paths` as one Ray job (`workers` is ignored: the cluster's size decides)."""
        if self._stack is None:
            raise DistributedError("use RayEmbedder as a context manager: `with RayEmbedder(...)`")
        folder = embed_to_shards(
            list(paths),
            model,
            self._next_folder(),
            batch_size=batch_size,
            actors=self.actors,
            files_per_task=self.files_per_task,
            shard_rows=self.shard_rows,
            decode=self.decode,
        )
        self.jobs.append(folder)
        for batch in read_batches(folder, batch_size):
            yield batch
            if on_progress:
                on_progress(len(batch.indices) + len(batch.errors))
