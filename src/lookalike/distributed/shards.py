"""Embedding shards: Parquet files of one row per input file (vector or error), and a manifest.

Schema (one row per file given to the pipeline; see docs/SCALING.md):

| column | type | meaning |
|---|---|---|
| `index` | int64 | position of the file in the job's input list |
| `path` | string | the file as it was read |
| `width`, `height` | int32, null on error | size of the decoded image (EXIF orientation applied) |
| `vector` | fixed_size_list<float32>[D], null on error | the unit-length embedding |
| `error` | string, null when read | why the file could not be read |

Only PyArrow is needed here (no Ray), so a capped search process stays small.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lookalike.errors import LookalikeError
from lookalike.model import Model, fingerprint

FORMAT = "lookalike-embeddings"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class ShardError(LookalikeError):
    """A shard folder or file that is missing, not lookalike's, or made by another model."""


def shard_schema(dim: int) -> pa.Schema:
    """The Parquet schema of embedding shards with `dim`-dimensional vectors."""
    return pa.schema(
        [
            pa.field("index", pa.int64(), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            pa.field("width", pa.int32()),
            pa.field("height", pa.int32()),
            pa.field("vector", pa.list_(pa.float32(), dim)),
            pa.field("error", pa.string()),
            pa.field("detail", pa.float64()),  # lookalike.model.measure_detail
        ]
    )


def shard_table(
    index: Sequence[int] | np.ndarray,
    paths: Sequence[str],
    vectors: np.ndarray,
    sizes: Sequence[tuple[int, int]],
    errors: Sequence[str | None],
    details: Sequence[float] | np.ndarray | None = None,
) -> pa.Table:
    """Rows of a shard; row k has a vector unless `errors[k]` (then its vector is null),
    and its measured detail (`details`; null where not given, not finite or failed)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    failed = np.array([e is not None for e in errors], dtype=bool)
    vector = pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.reshape(-1)), dim, mask=pa.array(failed)
    )
    width = [None if f else int(w) for f, (w, _) in zip(failed, sizes, strict=True)]
    height = [None if f else int(h) for f, (_, h) in zip(failed, sizes, strict=True)]
    return pa.Table.from_arrays(
        [
            pa.array(np.asarray(index, dtype=np.int64)),
            pa.array(list(paths), pa.string()),
            pa.array(width, pa.int32()),
            pa.array(height, pa.int32()),
            vector,
            pa.array(list(errors), pa.string()),
            pa.array(
                [
                    None if f or not np.isfinite(d) else float(d)
                    for f, d in zip(
                        failed,
                        np.full(len(failed), np.nan) if details is None else details,
                        strict=True,
                    )
                ],
                pa.float64(),
            ),
        ],
        schema=shard_schema(dim),
    )


def vectors_of(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """The non-null vectors of a shard table or batch as a float32 (N, D) array."""
    column = table.column("vector")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count:
        column = column.filter(column.is_valid())
    dim = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)


def shard_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The Parquet shards under a folder (any depth), in name order."""
    root = Path(folder)
    if not root.is_dir():
        raise ShardError(f"no shard folder at {root}")
    return sorted(root.rglob("*.parquet"))


def vector_rows(shard: str | os.PathLike[str]) -> int:
    """How many rows of a shard have a vector (those without an error)."""
    errors = pq.read_table(shard, columns=["error"], use_threads=False).column("error")
    return int(errors.null_count)


def iter_vectors(shard: str | os.PathLike[str], rows: int = 8192) -> Iterator[np.ndarray]:
    """A shard's non-null vectors in file order, at most `rows` at a time (bounded memory)."""
    handle = pq.ParquetFile(shard, pre_buffer=False)  # pre-buffering reads the whole column
    try:
        for batch in handle.iter_batches(batch_size=rows, columns=["vector"], use_threads=False):
            block = vectors_of(batch)
            if len(block):
                yield block
    finally:
        handle.close()


def read_vectors(shard: str | os.PathLike[str]) -> np.ndarray:
    """All non-null vectors of one shard as a float32 (N, D) array."""
    return vectors_of(pq.read_table(shard, columns=["vector"], use_threads=False))


def read_paths(shard: str | os.PathLike[str]) -> list[str]:
    """Paths of a shard's rows that have a vector, in the order of `read_vectors`."""
    table = pq.read_table(shard, columns=["path", "error"])
    return [p for p, e in zip(table["path"].to_pylist(), table["error"].to_pylist(), strict=True)
            if e is None]  # fmt: skip


@dataclass(frozen=True)
class Manifest:
    """What made a shard folder: the model (id, fingerprint, preprocessing) and counts."""

    format: str
    format_version: int
    model_id: str
    model_fingerprint: str
    embed_dim: int
    preprocess: dict[str, object]
    rows: int
    errors: int
    files: list[str]


def write_manifest(folder: Path, model: Model, rows: int, errors: int) -> Path:
    """Describe a finished shard folder in `manifest.json` (written last: its presence = done)."""
    manifest = Manifest(
        FORMAT,
        FORMAT_VERSION,
        model.model_id,
        fingerprint(model),
        model.encoder.config.embed_dim,
        asdict(model.preprocess),
        rows,
        errors,
        [p.relative_to(folder).as_posix() for p in shard_files(folder)],
    )
    path = folder / MANIFEST
    temporary = path.with_name(MANIFEST + ".partial")
    temporary.write_text(json.dumps(asdict(manifest), indent=1))
    temporary.replace(path)
    return path


def read_manifest(folder: str | os.PathLike[str]) -> Manifest:
    """The manifest of a finished shard folder (ShardError if absent or not lookalike's)."""
    path = Path(folder) / MANIFEST
    try:
        payload = json.loads(path.read_text())
        manifest = Manifest(**payload)
    except FileNotFoundError:
        raise ShardError(
            f"{folder}: no {MANIFEST} (not a finished lookalike shard folder)"
        ) from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise ShardError(f"{path}: not a lookalike shard manifest ({exc})") from None
    if manifest.format != FORMAT or manifest.format_version != FORMAT_VERSION:
        raise ShardError(
            f"{path}: format {manifest.format} v{manifest.format_version}, "
            f"expected {FORMAT} v{FORMAT_VERSION}"
        )
    return manifest
