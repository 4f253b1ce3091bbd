"""Distributed scale: sharded pair search under a memory cap and on Ray; the Ray embedding stage.

    python benchmarks/sharded_search.py --n 300000 --shard-rows 20000 --budget-mb 48 \
        --photos /work/shared/photos --photos-count 400 --json-out benchmarks/results/sharded.json

1. Writes N synthetic 128-d embeddings (`ann_scale.planted_vectors`: topics plus planted
   near-copies) as Parquet shards with the schema of `lookalike.distributed`.
2. Brute force: every pair at or above the scan's review cut-off, all vectors in memory,
   block by block (float32 products, candidates re-scored in float64).
3. Capped: a one-core subprocess (like one Ray task) limits its address space
   (RLIMIT_AS) to what it holds after importing its libraries and running one search
   block on random data, plus `--budget-mb`, then runs
   `find_pairs_sharded(engine="local")`; a second capped subprocess tries to load every
   vector at once and must fail. The pairs must equal brute force.
4. Ray: the same search as one Ray task per shard on a local Ray instance (all cores).
5. Inverted-file shards: the search with `exact_limit` below the shard size (each shard
   an IndexIVFFlat, 16 cells probed), time and recall against brute force.
6. Embedding (with `--photos`): `embed_all` on this machine vs the Ray Data pipeline
   (`embed_to_shards`) on the same photos, images per second.
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
from pathlib import Path
from typing import Any

import numpy as np
from _common import machine  # type: ignore[import-not-found]
from ann_scale import planted_vectors  # type: ignore[import-not-found]


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
    """Run inside a subprocess: cap the address space, then search (or load everything)."""
    import io

    import pyarrow.parquet as pq

    from lookalike.distributed import find_pairs_sharded, read_vectors, shard_table

    spec = json.loads(Path(spec_path).read_text())
    # Start FAISS's and Arrow's thread pools before the cap: their stacks are the
    # libraries' fixed cost, not the search's.
    dim = pq.read_schema(spec["shards"][0]).field("vector").type.list_size
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(4096, dim)).astype(np.float32)
    _ = queries @ rng.normal(size=(512, dim)).astype(np.float32).T  # BLAS's buffers
    del queries, _
    buffer = io.BytesIO()
    pq.write_table(shard_table([0], ["a"], np.eye(1, 8), [(1, 1)], [None]), buffer)
    buffer.seek(0)
    pq.read_table(buffer)
    with contextlib.suppress(OSError):  # restart the RSS peak (VmHWM) from here
        Path("/proc/self/clear_refs").write_text("5")
    base, base_rss = _status("VmSize"), _status("VmRSS")
    cap = base + spec["budget_mb"] * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    started = time.perf_counter()
    out: dict[str, Any] = {"base_mb": base / 2**20, "cap_mb": cap / 2**20}
    if spec["mode"] == "search":
        found = find_pairs_sharded(
            spec["shards"], spec["min_cosine"], engine="local", exact_limit=spec["exact_limit"]
        )
        np.savez(spec["out"], i=found.i, j=found.j, cosine=found.cosine)
        out["pairs"] = len(found)
    else:
        try:
            vectors = np.concatenate([read_vectors(s) for s in spec["shards"]])
            out["loaded"] = f"all {vectors.nbytes / 2**20:.0f} MB loaded"
        except MemoryError as exc:  # pyarrow's ArrowMemoryError is one too
            out["loaded"] = f"failed: {type(exc).__name__}"
    out["seconds"] = time.perf_counter() - started
    out["rss_growth_mb"] = (_status("VmHWM") - base_rss) / 2**20
    out["address_space_growth_mb"] = (_status("VmPeak") - base) / 2**20
    print(json.dumps(out))


def run_capped(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    path = work / f"spec-{spec['mode']}.json"
    path.write_text(json.dumps(spec))
    # One core, like one Ray task. glibc reserves 64 MB of address space per thread
    # arena and Arrow's default allocator more: plain malloc with two arenas keeps the
    # address space close to what is used.
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",
        "MALLOC_MMAP_THRESHOLD_": str(1 << 20),
        "ARROW_DEFAULT_MEMORY_POOL": "system",
    }
    done = subprocess.run(
        [sys.executable, __file__, "--capped-worker", str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"capped worker failed (exit {done.returncode}):\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def pair_set(found: Any) -> set[tuple[int, int]]:
    return set(zip(found.i.tolist(), found.j.tolist(), strict=True))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300_000, help="vectors")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--shard-rows", type=int, default=20_000)
    parser.add_argument("--budget-mb", type=int, default=48, help="memory above the libraries")
    parser.add_argument("--min-similarity", type=float, default=None)
    parser.add_argument("--ivf-rows", type=int, default=0, help="shard rows for step 5 (0: skip)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray steps (4 and 6)")
    parser.add_argument("--photos", type=Path, default=None)
    parser.add_argument("--photos-count", type=int, default=400)
    parser.add_argument("--work", type=Path, default=None, help="folder for the shards")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long run for the tests")
    parser.add_argument("--capped-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.capped_worker:
        capped_worker(args.capped_worker)
        return
    if args.tiny:
        args.n, args.shard_rows, args.budget_mb, args.ivf_rows = 6000, 1500, 64, 3000
    from lookalike.model import load_model
    from lookalike.scan.run import REVIEW_MARGIN

    ms = args.min_similarity or load_model().min_similarity
    cut = 2.0 * (ms - REVIEW_MARGIN) - 1.0
    report: dict[str, Any] = {"machine": machine(), "command": " ".join(sys.argv)}
    report.update(n=args.n, dim=args.dim, shard_rows=args.shard_rows, min_cosine=cut)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        x = planted_vectors(args.n, args.dim, seed=0)
        shards = write_shards(x, work / "shards", args.shard_rows)
        report["vectors_mb"] = x.nbytes / 2**20
        report["shards"] = len(shards)
        report["parquet_bytes_per_row"] = sum(s.stat().st_size for s in shards) / args.n
        started = time.perf_counter()
        truth = brute_force(x, cut)
        report["brute_force"] = {"seconds": time.perf_counter() - started, "pairs": len(truth)}
        brute = report["brute_force"]
        print(
            f"{args.n:,} vectors ({report['vectors_mb']:.0f} MB) in {len(shards)} shards; "
            f"brute force: {len(truth):,} pairs in {brute['seconds']:.1f} s"
        )

        spec = {"shards": [str(s) for s in shards], "min_cosine": cut, "budget_mb": args.budget_mb}
        spec.update(exact_limit=args.shard_rows, out=str(work / "capped.npz"))
        capped = run_capped({**spec, "mode": "search"}, work)
        saved = np.load(work / "capped.npz")
        got = set(zip(saved["i"].tolist(), saved["j"].tolist(), strict=True))
        capped["equal_to_brute_force"] = got == truth
        capped["all_at_once"] = run_capped({**spec, "mode": "load"}, work)["loaded"]
        report["capped"] = capped
        print(
            f"capped process (libraries {capped['base_mb']:.0f} MB + budget "
            f"{args.budget_mb} MB = cap {capped['cap_mb']:.0f} MB): {capped['pairs']:,} pairs "
            f"in {capped['seconds']:.1f} s, RSS growth {capped['rss_growth_mb']:.0f} MB, "
            f"equal to brute force: {capped['equal_to_brute_force']}; loading every vector "
            f"under the same cap: {capped['all_at_once']}"
        )

        if not args.no_ray:
            from lookalike.distributed import find_pairs_sharded, ray_cluster

            cores = os.cpu_count() or 1
            with ray_cluster(num_cpus=cores):
                started = time.perf_counter()
                found = find_pairs_sharded(shards, cut, engine="ray", exact_limit=args.shard_rows)
                seconds = time.perf_counter() - started
            report["ray"] = {
                "seconds": seconds,
                "cores": cores,
                "equal_to_brute_force": pair_set(found) == truth,
            }
            print(
                f"Ray, {cores} cores, one task per shard: {seconds:.1f} s, "
                f"equal to brute force: {report['ray']['equal_to_brute_force']}"
            )
        pairs_total = args.n * (args.n - 1) / 2
        report["exact_pairs_per_core_s"] = pairs_total / report["capped"]["seconds"]
        print(f"exact search: {report['exact_pairs_per_core_s']:.3g} vector pairs per core-second")

        if args.ivf_rows:
            from lookalike.distributed import find_pairs_sharded

            ivf_shards = write_shards(x, work / "ivf", args.ivf_rows)
            started = time.perf_counter()
            found = find_pairs_sharded(ivf_shards, cut, engine="local", exact_limit=1000)
            seconds = time.perf_counter() - started
            got = pair_set(found)
            report["ivf"] = {
                "shard_rows": args.ivf_rows,
                "shards": len(ivf_shards),
                "seconds": seconds,
                "pairs": len(got),
                "recall": len(got & truth) / max(1, len(truth)),
                "false_pairs": len(got - truth),
                "queries_per_shard_core_s": args.n
                * len(ivf_shards)
                / seconds
                / (os.cpu_count() or 1),
            }
            ivf = report["ivf"]
            print(
                f"inverted-file shards ({len(ivf_shards)} x {args.ivf_rows:,}): "
                f"{seconds:.1f} s, recall {ivf['recall']:.4f}, "
                f"{ivf['queries_per_shard_core_s']:.3g} query-shards per core-second"
            )

        if args.photos and not args.no_ray:
            rates = embedding_rates(args.photos, args.photos_count, work)
            report["embedding"] = rates
            print(
                f"embedding {rates['photos']} photos: local {rates['local_images_per_s']:.1f}"
                f" images/s, Ray pipeline {rates['ray_images_per_s']:.1f} images/s"
            )
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
