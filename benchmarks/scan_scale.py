"""Scale benchmark: a whole `lookalike scan` of N generated images, against pHash.

    python benchmarks/scan_scale.py /tmp/scale100k --generate 100000 --photos /work/shared/photos

Generates (once, in one process per core) N JPEG images under DIR/images: distinct
pictures cut from the photos at random places and scales (320-640 px), and one in ten
an edited copy of another (a random edit family). Then, on a warm page cache, it times
a fresh scan into a new index (walk, hash, decode, embed, search, group, store: all of
`scan_folder`), then imagehash's pHash over the same files on all cores, and prints
both rates, their ratio, the peak memory of each, and the time to write the HTML
report. `--tiny` is a seconds-long smoke run.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from _common import write_results  # type: ignore[import-not-found]
from PIL import Image

from lookalike.augment import FAMILIES, apply_edit
from lookalike.evaluate import ResourceMonitor, hash_files
from lookalike.io import iter_image_files, load_image
from lookalike.model import load_model
from lookalike.records import ScanProgress
from lookalike.report import write_html
from lookalike.scan import scan_folder


@functools.lru_cache(maxsize=8)
def _photo(path: str) -> Image.Image:
    return load_image(path, min_side=700)


def _picture(photos: list[str], seed: int) -> Image.Image:
    """A distinct picture: a random region of a random photo, scaled to 320-640 px."""
    rng = np.random.default_rng(seed)
    photo = _photo(photos[int(rng.integers(len(photos)))])
    w, h = photo.size
    scale = rng.uniform(0.35, 0.9)
    cw, ch = max(32, int(w * scale)), max(32, int(h * scale))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    crop = photo.crop((left, top, left + cw, top + ch))
    side = int(rng.integers(320, 641))
    crop.thumbnail((side, side))
    return crop


def _write_chunk(photos: list[str], out: str, numbers: list[int]) -> int:
    for k in numbers:
        rng = np.random.default_rng(10_000_000 + k)
        if k % 10 == 9:  # an edited copy of an earlier picture
            source = int(rng.integers(0, k))
            family = FAMILIES[int(rng.integers(len(FAMILIES)))]
            image = apply_edit(_picture(photos, source), family, seed=k, strength=0.5)
        else:
            image = _picture(photos, k)
        folder = Path(out) / f"{k // 1000:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        image.convert("RGB").save(folder / f"img{k:07d}.jpg", quality=90)
    return len(numbers)


def generate(photos_dir: Path, out: Path, n: int, workers: int) -> int:
    """Write images 0..n-1 that are not there yet (a rerun resumes); returns how many."""
    photos = [str(p) for p in iter_image_files([photos_dir])]
    if not photos:
        raise SystemExit(f"no photos in {photos_dir}")
    todo = [k for k in range(n) if not (out / f"{k // 1000:04d}" / f"img{k:07d}.jpg").exists()]
    chunks = [todo[i : i + 200] for i in range(0, len(todo), 200)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        done = sum(pool.map(functools.partial(_write_chunk, photos, str(out)), chunks))
    return done


def _figures(count: int, monitor: ResourceMonitor) -> dict[str, float]:
    cost = monitor.cost
    return {
        "seconds": round(cost.seconds, 2),
        "images_per_s": round(count / cost.seconds, 2),
        "cpu_util": round(cost.cpu_util, 3),
        "peak_rss_mb": round(cost.peak_rss_mb, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="Working folder (images/, indexes, reports).")
    parser.add_argument("--generate", type=int, default=0, help="Make sure N images exist.")
    parser.add_argument("--photos", type=Path, help="Photos to cut the images from.")
    parser.add_argument("--model", type=Path, help="Checkpoint (default: the bundled model).")
    parser.add_argument("--peer", default="phash", help="Hash to compare with (default phash).")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-report", action="store_true", help="Skip the HTML report.")
    parser.add_argument(
        "--no-verify", action="store_true", help="Scan without geometric verification."
    )
    parser.add_argument("--json-out", type=Path, help="Also write the figures here (JSON).")
    parser.add_argument("--tiny", action="store_true", help="A seconds-long smoke run.")
    args = parser.parse_args(argv)
    if args.tiny:
        args.generate = 40
    images = args.dir / "images"
    if args.generate:
        if not args.photos:
            parser.error("--generate needs --photos")
        started = time.perf_counter()
        made = generate(args.photos, images, args.generate, args.workers)
        print(f"generated {made} images in {time.perf_counter() - started:.0f} s")
    paths = list(iter_image_files([images]))
    if not paths:
        parser.error(f"no images under {images}; use --generate N --photos DIR")
    size = 0
    for path in paths:  # a warm page cache for both sides
        size += len(path.read_bytes())
    print(f"{len(paths):,} images, {size / 2**20:,.0f} MB, under {images}")

    model = load_model(args.model)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    index = args.dir / f"scan-{stamp}.lookalike"
    stages: dict[str, float] = {}
    began = time.perf_counter()

    def note_stage(progress: ScanProgress) -> None:
        stages.setdefault(progress.stage, time.perf_counter() - began)

    with ResourceMonitor(interval=0.5) as monitor:
        result = scan_folder(
            [images],
            index,
            model=model,
            workers=args.workers,
            verify=not args.no_verify,
            on_progress=note_stage,
        )
    # Seconds from the start to the first event of each later stage: walk + hash + decode +
    # embed + index ends where the pair search begins.
    ingest = stages.get("search", stages.get("group", monitor.cost.seconds))
    scan = {
        **_figures(len(paths), monitor),
        "stage_start_seconds": {k: round(v, 2) for k, v in stages.items()},
        "ingest_seconds": round(ingest, 2),
        "ingest_images_per_s": round(len(paths) / ingest, 2),
        "verify": not args.no_verify,
        "groups": result.stats.groups,
        "pairs": len(result.pairs),
        "errors": result.stats.errors,
    }
    with ResourceMonitor(interval=0.5) as monitor:
        hashes = hash_files(paths, args.peer, workers=args.workers)
    peer = {**_figures(len(paths), monitor), "errors": len(hashes.errors)}
    ratio = scan["images_per_s"] / peer["images_per_s"]
    ingest_ratio = scan["ingest_images_per_s"] / peer["images_per_s"]
    print(
        f"scan ({model.model_id}): {scan['seconds']:.1f} s, {scan['images_per_s']:.1f} images/s, "
        f"CPU {scan['cpu_util']:.0%}, peak {scan['peak_rss_mb']:,.0f} MB; "
        f"{scan['groups']:,} groups, {scan['pairs']:,} pairs, {scan['errors']} unreadable"
    )
    print(
        f"{args.peer} (all cores): {peer['seconds']:.1f} s, {peer['images_per_s']:.1f} images/s, "
        f"CPU {peer['cpu_util']:.0%}, peak {peer['peak_rss_mb']:,.0f} MB"
    )
    print(
        f"ingest (walk + hash + decode + embed + index) {scan['ingest_seconds']:.1f} s, "
        f"{scan['ingest_images_per_s']:.1f} images/s; stages began at {scan['stage_start_seconds']}"
    )
    print(f"whole scan ÷ {args.peer} throughput: {ratio:.2f}")
    print(f"ingest ÷ {args.peer} throughput: {ingest_ratio:.2f}")
    report: dict[str, float] = {}
    if not args.no_report:
        with ResourceMonitor(interval=0.5) as monitor:
            page = write_html(result, args.dir / f"report-{stamp}")
        report = {
            "seconds": round(monitor.cost.seconds, 2),
            "peak_rss_mb": monitor.cost.peak_rss_mb,
        }
        print(f"HTML report in {report['seconds']:.1f} s: {page}")
    if args.json_out:
        write_results(
            args.json_out,
            "scan_scale.py",
            argv,
            {
                "model": model.model_id,
                "images": len(paths),
                "megabytes": round(size / 2**20, 1),
                "scan": scan,
                "peer": {"name": args.peer, **peer},
                "scan_to_peer_ratio": round(ratio, 3),
                "ingest_to_peer_ratio": round(ingest_ratio, 3),
                "report": report,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
