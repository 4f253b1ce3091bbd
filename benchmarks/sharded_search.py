"""Sharded pair search under a memory cap, against brute force; the same search on Ray.

    python benchmarks/sharded_search.py --n 200000 --shard-rows 10000 --budget-mb 32 \
        --ivf-shard-rows 50000 --ivf-budget-mb 112 --photos /work/shared/photos \
        --json-out benchmarks/results/sharded_search.json

N synthetic 128-d unit embeddings (`ann_scale.planted_vectors`: topics plus planted
near-copies), searched at the cosine of the scan's review cut-off (the bundled model's
min_similarity - 0.03), where pairs are most numerous. Brute force finds every pair
with all vectors in this process: the truth for everything below.

1. Exact shards: the vectors as Parquet shards of `--shard-rows` (the schema of
   `lookalike.distributed`). `--processes` capped processes (default one per core, as
   Ray runs one task per core) run the shard tasks between them: each task is
   `lookalike.distributed.search.search_shard`, what `find_pairs_sharded` runs as a Ray
   task. Each process limits its address space (RLIMIT_AS) to what it holds after
   importing its libraries and running one search block, plus `--budget-mb`. Their
   pairs, merged, must equal brute force; one more process under the same cap tries to
   load every vector at once and must fail. Then the same search as Ray tasks on a
   local Ray instance (`find_pairs_sharded(engine="ray")`, all cores; skip: `--no-ray`).
2. Inverted-file shards (`--ivf-shard-rows`, above the scan's `exact_limit`; 0 skips):
   each task builds an IndexIVFFlat over its shard (16 cells probed) and queries every
   shard; capped processes again (`--ivf-budget-mb`); recall against brute force.
3. Embedding (`--photos`): `embed_all` here vs the Ray Data pipeline, same photos.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import write_results  # type: ignore[import-not-found]
from ann_scale import planted_vectors  # type: ignore[import-not-found]

MB = 2**20


def _status(key: str) -> int:
    """A /proc/self/status figure (kB) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def write_shards(x: np.ndarray, folder: Path, rows: int) -> list[Path]:
    """Vectors as Parquet shards of `rows` rows (row groups of 8192 rows)."""
    import pyarrow.parquet as pq

    from lookalike.distributed import shard_table

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, start in enumerate(range(0, len(x), rows)):
        block = x[start : start + rows]
        table = shard_table(
            np.arange(start, start + len(block)),
            [f"img_{k}.jpg" for k in range(start, start + len(block))],
            block,
            [(640, 480)] * len(block),
            [None] * len(block),
        )
        paths.append(folder / f"part-{n:04d}.parquet")
        pq.write_table(table, paths[-1], row_group_size=8192)
    return paths


def brute_force(x: np.ndarray, min_cosine: float, block: int = 2048) -> set[tuple[int, int]]:
    """Every pair i < j with cosine >= min_cosine, with all vectors in memory."""
    found: set[tuple[int, int]] = set()
    for start in range(0, len(x), block):
        rows = x[start : start + block]
        for col in range(start, len(x), 8 * block):
            scores = rows @ x[col : col + 8 * block].T
            i, j = np.nonzero(scores >= min_cosine - 1e-4)
            i, j = i + start, j + col
            keep = i < j
            i, j = i[keep], j[keep]
            exact = np.einsum("ij,ij->i", x[i].astype(np.float64), x[j].astype(np.float64))
            ok = exact >= min_cosine
            found.update(zip(i[ok].tolist(), j[ok].tolist(), strict=True))
    return found


def capped_worker(spec_path: str) -> None:
    """Run inside a subprocess: cap the address space, then run shard tasks (or load all)."""
    import io

    import pyarrow.parquet as pq

    from lookalike.distributed import read_vectors, shard_offsets, shard_table
    from lookalike.distributed.search import search_shard
    from lookalike.index import build_search

    spec = json.loads(Path(spec_path).read_text())
    # Start BLAS's (NumPy's and FAISS's own) and Arrow's buffers and pools before the cap:
    # they are the libraries' fixed cost, not the search's.
    dim = pq.read_schema(spec["shards"][0]).field("vector").type.list_size
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(4096, dim)).astype(np.float32)
    _ = queries @ rng.normal(size=(256, dim)).astype(np.float32).T
    del queries, _
    sample = rng.normal(size=(4096, dim)).astype(np.float32)
    build_search(sample, exact_limit=100).range_search(sample[:256], 0.9)  # FAISS's BLAS
    del sample
    buffer = io.BytesIO()
    pq.write_table(shard_table([0], ["a"], np.eye(1, 8), [(1, 1)], [None]), buffer)
    buffer.seek(0)
    pq.read_table(buffer)
    offsets = shard_offsets(spec["shards"]).tolist()
    with contextlib.suppress(OSError):  # restart the RSS peak (VmHWM) from here
        Path("/proc/self/clear_refs").write_text("5")
    base, base_rss = _status("VmSize"), _status("VmRSS")
    cap = base + spec["budget_mb"] * MB
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    started, cpu = time.perf_counter(), time.process_time()
    out: dict[str, Any] = {"tasks": spec.get("tasks", []), "libraries_mb": base / MB}
    out["cap_mb"] = cap / MB
    if spec["mode"] == "search":
        parts = [
            search_shard(spec["shards"], offsets, j, spec["min_cosine"], spec["exact_limit"])
            for j in spec["tasks"]
        ]
        i, j, cosine = (np.concatenate([p[k] for p in parts]) for k in range(3))
        np.savez(spec["out"], i=i, j=j, cosine=cosine)
    else:
        try:
            vectors = np.concatenate([read_vectors(s) for s in spec["shards"]])
            out["loaded"] = f"all {vectors.nbytes / MB:.0f} MB loaded"
        except MemoryError as exc:  # pyarrow's ArrowMemoryError is one too
            out["loaded"] = f"failed: {type(exc).__name__}"
    out["seconds"] = time.perf_counter() - started
    out["cpu_seconds"] = time.process_time() - cpu
    out["base_rss_mb"] = base_rss / MB
    out["peak_rss_mb"] = _status("VmHWM") / MB
    out["rss_growth_mb"] = (_status("VmHWM") - base_rss) / MB
    out["address_space_growth_mb"] = (_status("VmPeak") - base) / MB
    print(json.dumps(out))


def _start_capped(spec: dict[str, Any], path: Path) -> subprocess.Popen[str]:
    path.write_text(json.dumps(spec))
    # One core per process, like one Ray task. glibc reserves 64 MB of address space per
    # thread arena and Arrow's default allocator more: plain malloc with two arenas keeps
    # the address space close to what is used.
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",
        "MALLOC_MMAP_THRESHOLD_": str(1 << 20),
        "ARROW_DEFAULT_MEMORY_POOL": "system",
    }
    command = [sys.executable, __file__, "--capped-worker", str(path)]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _finish(process: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"capped worker failed (exit {process.returncode}):\n{stderr}")
    return dict(json.loads(stdout.strip().splitlines()[-1]))


def _share_tasks(costs: Sequence[float], processes: int) -> list[list[int]]:
    """Shard tasks dealt to processes, largest first to the least loaded (as a pool would)."""
    loads = [0.0] * processes
    shares: list[list[int]] = [[] for _ in range(processes)]
    for j in sorted(range(len(costs)), key=lambda k: -costs[k]):
        k = loads.index(min(loads))
        shares[k].append(j)
        loads[k] += costs[j]
    return [sorted(s) for s in shares if s]


def capped_search(
    shards: list[Path], cut: float, exact_limit: int, budget_mb: int, processes: int, work: Path
) -> tuple[set[tuple[int, int]], np.ndarray, np.ndarray, dict[str, Any]]:
    """Every shard task in `processes` capped processes at once; their pairs merged."""
    from lookalike.distributed.shards import vector_rows

    rows = [vector_rows(s) for s in shards]
    exact = max(rows) <= exact_limit
    # An exact task j queries shards 0..j; an inverted-file task queries every shard.
    costs = [r * (sum(rows[: j + 1]) if exact else 1) for j, r in enumerate(rows)]
    spec = {"shards": [str(s) for s in shards], "min_cosine": cut, "budget_mb": budget_mb}
    spec.update(exact_limit=exact_limit, mode="search")
    started = time.perf_counter()
    running = [
        _start_capped(
            {**spec, "tasks": tasks, "out": str(work / f"pairs-{k}.npz")}, work / f"spec-{k}.json"
        )
        for k, tasks in enumerate(_share_tasks(costs, processes))
    ]
    figures = [_finish(p) for p in running]
    seconds = time.perf_counter() - started
    parts = [np.load(work / f"pairs-{k}.npz") for k in range(len(figures))]
    i = np.concatenate([p["i"] for p in parts])
    j = np.concatenate([p["j"] for p in parts])
    _, first = np.unique(i * (sum(rows) + 1) + j, return_index=True)
    i, j = i[first], j[first]
    load = _finish(_start_capped({**spec, "mode": "load"}, work / "spec-load.json"))
    summary = {
        "processes": figures,
        "wall_seconds": seconds,
        "cpu_seconds": sum(f["cpu_seconds"] for f in figures),
        "pairs": len(i),
        "exact_search": exact,
        "all_at_once": load["loaded"],
    }
    return set(zip(i.tolist(), j.tolist(), strict=True)), i, j, summary


def _describe(label: str, capped: dict[str, Any], budget: int) -> None:
    first = capped["processes"][0]
    peaks = ", ".join(f"{p['peak_rss_mb']:.0f}" for p in capped["processes"])
    growth = max(p["rss_growth_mb"] for p in capped["processes"])
    print(
        f"{label}: {len(capped['processes'])} capped processes (libraries "
        f"{first['libraries_mb']:.0f} MB of address space + budget {budget} MB each): "
        f"{capped['pairs']:,} pairs in {capped['wall_seconds']:.1f} s "
        f"({capped['cpu_seconds']:.0f} CPU s), peak RSS {peaks} MB (at most {growth:.0f} MB "
        f"above the libraries); loading every vector under the same cap: "
        f"{capped['all_at_once']}"
    )


def search_runs(args: argparse.Namespace, cut: float, work: Path) -> dict[str, Any]:
    """Steps 1 and 2: exact and inverted-file shards, capped and on Ray, against brute force."""
    x = planted_vectors(args.n, args.dim, seed=0)
    report: dict[str, Any] = {"vectors": args.n, "dim": args.dim, "vectors_mb": x.nbytes / MB}
    started = time.perf_counter()
    truth = brute_force(x, cut)
    report["brute_force"] = {"seconds": time.perf_counter() - started, "pairs": len(truth)}
    print(
        f"{args.n:,} vectors ({report['vectors_mb']:.0f} MB); brute force (all in memory): "
        f"{len(truth):,} pairs in {report['brute_force']['seconds']:.1f} s"
    )
    runs = [("exact", args.shard_rows, args.shard_rows, args.budget_mb)]
    if args.ivf_shard_rows:
        runs.append(("ivf", args.ivf_shard_rows, args.exact_limit, args.ivf_budget_mb))
    for name, rows, exact_limit, budget in runs:
        shards = write_shards(x, work / name, rows)
        run: dict[str, Any] = {"shard_rows": rows, "shards": len(shards)}
        run.update(
            exact_limit=exact_limit,
            parquet_mb=sum(s.stat().st_size for s in shards) / MB,
            budget_mb=budget,
        )
        got, i, j, capped = capped_search(shards, cut, exact_limit, budget, args.processes, work)
        cosine = np.einsum("ij,ij->i", x[i].astype(np.float64), x[j].astype(np.float64))
        capped.update(
            equal_to_brute_force=got == truth,
            recall=len(got & truth) / max(1, len(truth)),
            false_pairs=len(got - truth),
            pairs_below_cut=int(np.count_nonzero(cosine < cut)),
        )
        run["capped"] = capped
        _describe(f"{name}, {len(shards)} shards of {rows:,}", capped, budget)
        print(
            f"  against brute force: equal {capped['equal_to_brute_force']}, recall "
            f"{capped['recall']:.4f}, false pairs {capped['false_pairs']}"
        )
        if name == "exact":
            run["pairs_per_core_second"] = args.n * (args.n - 1) / 2 / capped["cpu_seconds"]
        else:
            run["query_shards_per_core_second"] = args.n * len(shards) / capped["cpu_seconds"]
        if name == "exact" and not args.no_ray:
            run["ray"] = ray_search(shards, cut, rows, truth)
        report[name] = run
    return report


def ray_search(
    shards: list[Path], cut: float, exact_limit: int, truth: set[tuple[int, int]]
) -> dict[str, Any]:
    """The same search as one Ray task per shard, on a local Ray instance (all cores)."""
    from lookalike.distributed import find_pairs_sharded, ray_cluster
    from lookalike.score import cnn_similarity_from_cosine

    cores = os.cpu_count() or 1
    with ray_cluster(num_cpus=cores):
        started = time.perf_counter()
        found = find_pairs_sharded(
            shards, cnn_similarity_from_cosine(cut), engine="ray", exact_limit=exact_limit
        )
        seconds = time.perf_counter() - started
    equal = set(zip(found.i.tolist(), found.j.tolist(), strict=True)) == truth
    print(
        f"  Ray, {cores} cores, one task per shard: {seconds:.1f} s, equal to brute force: {equal}"
    )
    return {"seconds": seconds, "cores": cores, "equal_to_brute_force": equal}


def embedding_rates(photos: Path, count: int, work: Path) -> dict[str, Any]:
    """Images per second: embed_all here vs the Ray Data pipeline, same photos and model."""
    from lookalike.distributed import embed_to_shards, ray_cluster
    from lookalike.embed import embed_all
    from lookalike.io import iter_image_files
    from lookalike.model import load_model

    paths = [str(p) for p in iter_image_files([photos])][:count]
    for p in paths:  # warm the page cache for both
        Path(p).read_bytes()
    model = load_model()
    started = time.perf_counter()
    local = embed_all(paths, model)
    local_s = time.perf_counter() - started
    cores = os.cpu_count() or 1
    with ray_cluster(num_cpus=cores):
        started = time.perf_counter()
        out = embed_to_shards(paths, model, work / "embedded")
        ray_s = time.perf_counter() - started
    written = sum(f.stat().st_size for f in out.glob("*.parquet"))
    return {
        "photos": len(paths),
        "local_images_per_s": len(local.paths) / local_s,
        "ray_images_per_s": len(paths) / ray_s,
        "ray_actors": max(1, cores - 1),
        "local_seconds": local_s,
        "ray_seconds": ray_s,
        "parquet_bytes_per_row": written / max(1, len(paths)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="Vectors.")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--shard-rows", type=int, default=10_000, help="Exact shards' rows.")
    parser.add_argument("--budget-mb", type=int, default=32, help="Memory above the libraries.")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ivf-shard-rows", type=int, default=50_000, help="0: no step 2.")
    parser.add_argument("--ivf-budget-mb", type=int, default=112)
    parser.add_argument("--exact-limit", type=int, default=None, help="Default: the scan's.")
    parser.add_argument("--min-similarity", type=float, default=None)
    parser.add_argument("--no-ray", action="store_true", help="Skip the Ray steps.")
    parser.add_argument("--photos", type=Path, default=None)
    parser.add_argument("--photos-count", type=int, default=400)
    parser.add_argument("--work", type=Path, default=None, help="Folder for the shards.")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--tiny", action="store_true", help="A seconds-long run for the tests.")
    parser.add_argument("--capped-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.capped_worker:
        capped_worker(args.capped_worker)
        return 0
    from lookalike.index import EXACT_LIMIT
    from lookalike.model import load_model
    from lookalike.scan.run import REVIEW_MARGIN

    if args.tiny:
        args.n, args.shard_rows, args.budget_mb = 6000, 1500, 64
        args.ivf_shard_rows, args.ivf_budget_mb, args.exact_limit = 3000, 64, 1000
    args.exact_limit = args.exact_limit or EXACT_LIMIT
    similarity = args.min_similarity or load_model().min_similarity
    cut = 2.0 * (similarity - REVIEW_MARGIN) - 1.0
    figures: dict[str, Any] = {"min_similarity": similarity - REVIEW_MARGIN, "min_cosine": cut}
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        figures.update(search_runs(args, cut, work))
        if args.photos and not args.no_ray:
            rates = embedding_rates(args.photos, args.photos_count, work)
            figures["embedding"] = rates
            print(
                f"embedding {rates['photos']} photos: local {rates['local_images_per_s']:.1f}"
                f" images/s, Ray pipeline {rates['ray_images_per_s']:.1f} images/s"
            )
    if args.json_out:
        write_results(args.json_out, "sharded_search.py", argv, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
