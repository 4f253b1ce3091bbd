"""Scale benchmark: a whole `lookalike scan` of N generated images, against pHash.

    python benchmarks/scan_scale.py /tmp/scale100k --generate 100000 --photos /work/shared/photos

Generates (once, in one process per core) N JPEG images under DIR/images: distinct
pictures cut from the photos (`--layout`: random regions, or whole photos and
non-overlapping tiles) at random scales (`--sides`, default 320-640 px), and a share
`--copies` (default 0.1) edited copies of an earlier distinct picture (a random edit
family); `--squash 32` makes every picture 32 x 32 (CIFAR-style). Then,
on a warm page cache, it times a fresh scan into a new index (walk, hash, decode, embed,
search, verify, group, store: all of `scan_folder`), then the peer over the same files
on all cores, and prints both rates, their ratio, the peak memory of each, and the time
to write the HTML report. The peer `phash-plain` is pHash as most scripts call it,
`imagehash.phash(Image.open(path))`, one process per core (faster than `phash`, which
applies EXIF orientation and converts to RGB first). `--tiny` is a seconds-long smoke run.

The ratio table of BENCHMARKS.md (three photo folders and two small-image ones; the
distinct layout: no two distinct pictures share a pixel):

    for c in 0.01 0.15 0.94; do python benchmarks/scan_scale.py /tmp/ratio-$c --generate 2000 \
        --photos ../shared/photos --layout distinct --copies $c --sides 640,1024 \
        --peer phash-plain --no-report; done
    python benchmarks/scan_scale.py /tmp/ratio-320 --generate 2000 --photos ../shared/photos \
        --layout distinct --copies 0.1 --peer phash-plain --no-report
    python benchmarks/scan_scale.py /tmp/ratio-32 --generate 2000 --photos ../shared/photos \
        --layout distinct --copies 0.1 --squash 32 --peer phash-plain --no-report

The million (5 % edited copies; past the photos' 8,029 distinct pictures, procedural
ones: `_procedural`), generated once, then scanned into a named index so a killed scan
can be resumed (`--index`; the figures printed are that run's):

    python benchmarks/scan_scale.py runs/scale1m --generate 1000000 --photos ../shared \
        --layout distinct --copies 0.05 --generate-only
    python benchmarks/scan_scale.py runs/scale1m --index runs/scale1m/million.lookalike \
        --layout distinct --copies 0.05 --peer phash-plain --no-report \
        --json-out benchmarks/results/scan_scale_1m.json

With `--layout distinct` (and the `--copies` it was generated with) the scan's duplicate
pairs are also judged against the generator's truth (`judge`): copy pairs found, false
pairs, precision and recall.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from _common import write_results  # type: ignore[import-not-found]
from PIL import Image, ImageDraw

from lookalike.augment import FAMILIES, apply_edit
from lookalike.evaluate import ResourceMonitor, hash_files
from lookalike.io import iter_image_files, load_image
from lookalike.model import load_model
from lookalike.records import Pair, ScanProgress
from lookalike.report import write_html
from lookalike.scan import scan_folder


@functools.lru_cache(maxsize=8)
def _photo(path: str) -> Image.Image:
    return load_image(path, min_side=700)


def _picture(
    photos: list[str], seed: int, sides: tuple[int, int] = (320, 640), squash: int = 0
) -> Image.Image:
    """A distinct picture: a random region of a random photo, its longer side in `sides`
    (or squashed to `squash` x `squash`)."""
    rng = np.random.default_rng(seed)
    photo = _photo(photos[int(rng.integers(len(photos)))])
    w, h = photo.size
    scale = rng.uniform(0.35, 0.9)
    cw, ch = max(32, int(w * scale)), max(32, int(h * scale))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    crop = photo.crop((left, top, left + cw, top + ch))
    side = int(rng.integers(sides[0], sides[1] + 1))
    crop.thumbnail((side, side))
    return crop.resize((squash, squash), Image.Resampling.BILINEAR) if squash else crop


def _procedural(rank: int, sides: tuple[int, int], squash: int) -> Image.Image:
    """A procedural distinct picture (seeded by `rank`): a "dead leaves" image, shapes of
    power-law sizes in random colours over a two-colour gradient, with mild sensor-like
    noise. Used when the photos cannot supply enough distinct pictures (a million needs
    them)."""
    rng = np.random.default_rng(40_000_000 + rank)
    side = int(rng.integers(sides[0], sides[1] + 1))
    short = int(side * rng.uniform(0.6, 1.0))
    width, height = (side, short) if rng.random() < 0.6 else (short, side)
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    start, end = rng.uniform(0, 255, (2, 1, 1, 3)).astype(np.float32)
    gradient = np.broadcast_to(start + (end - start) * ramp, (height, width, 3))
    canvas = Image.fromarray(gradient.astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    palette = rng.integers(0, 256, (int(rng.integers(3, 9)), 3))
    count = int(rng.integers(25, 140))
    radii = np.minimum(side / 2, 0.015 * side * rng.uniform(0, 1, count) ** -0.7)
    centres = rng.uniform(0, 1, (count, 2)) * (width, height)
    squeeze = rng.uniform(0.3, 1.0, count)
    colours = np.clip(
        palette[rng.integers(len(palette), size=count)] + rng.normal(0, 18, (count, 3)), 0, 255
    )
    kinds = rng.random(count)
    turns = np.sort(rng.uniform(0, 2 * np.pi, (count, 6)), axis=1)
    corners = rng.integers(3, 7, count)
    for r, (cx, cy), sq, colour, kind, angles, n in zip(
        radii, centres, squeeze, colours.astype(int).tolist(), kinds, turns, corners, strict=True
    ):
        fill = tuple(colour)
        box = (cx - r, cy - r * sq, cx + r, cy + r)
        if kind < 0.45:
            draw.ellipse(box, fill=fill)
        elif kind < 0.8:
            points = np.stack([cx + r * np.cos(angles[:n]), cy + r * np.sin(angles[:n])], 1)
            draw.polygon(points.ravel().tolist(), fill=fill)
        else:
            draw.line(box, fill=fill, width=max(1, int(r / 6)))
    noise = rng.standard_normal((height, width, 1), dtype=np.float32) * rng.uniform(1, 3)
    pixels = np.clip(np.asarray(canvas, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    picture = Image.fromarray(pixels)
    return picture.resize((squash, squash), Image.Resampling.BILINEAR) if squash else picture


def _distinct(photos: list[str], rank: int, sides: tuple[int, int], squash: int) -> Image.Image:
    """The `rank`-th distinct picture of the `distinct` layout: no two share a pixel. The
    first half of the photos are used whole, the second half as 2 x 2 non-overlapping
    tiles (2.5 pictures per photo in all); past those, procedural pictures."""
    whole = len(photos) // 2
    tiles = 4 * (len(photos) - whole)
    if rank >= whole + tiles:
        return _procedural(rank - whole - tiles, sides, squash)
    if rank < whole:
        picture = _photo(photos[rank])
    else:
        tile = rank - whole
        photo = _photo(photos[whole + tile // 4])
        w, h = photo.size
        col, row = tile % 4 % 2, tile % 4 // 2
        picture = photo.crop((col * w // 2, row * h // 2, (col + 1) * w // 2, (row + 1) * h // 2))
    rng = np.random.default_rng(30_000_000 + rank)
    side = int(rng.integers(sides[0], sides[1] + 1))
    picture = picture.copy()
    picture.thumbnail((side, side))
    return picture.resize((squash, squash), Image.Resampling.BILINEAR) if squash else picture


def _is_copy(k: int, copies: float) -> bool:
    """Whether image k is an edited copy (the legacy layout: one in ten, k % 10 == 9)."""
    if copies == 0.1:
        return k % 10 == 9
    return k > 0 and np.random.default_rng(20_000_000 + k).random() < copies


def _original(k: int, copies: float) -> int:
    """The distinct picture image k shows (distinct layout): itself, or for a copy the last
    distinct picture before it."""
    while k > 0 and _is_copy(k, copies):
        k -= 1
    return k


def judge(pairs: Sequence[Pair], paths: Sequence[Path], copies: float) -> dict[str, Any]:
    """The scan's duplicate pairs against the generator's truth (distinct layout, files named
    as `generate` names them): a pair is a copy pair when both files show one distinct
    picture (an original and its copies). Byte-identical files are counted apart: two
    procedural pictures can come out alike."""
    number = re.compile(r"img(\d+)\.jpg$")
    originals: dict[str, int] = {}  # by file name: the generator's names are unique
    for path in paths:
        found = number.search(path.name)
        if found:
            originals[path.name] = _original(int(found.group(1)), copies)
    sizes = Counter(originals.values())
    truth = sum(n * (n - 1) // 2 for n in sizes.values())
    duplicates = [p for p in pairs if p.duplicate]
    same = [originals.get(p.a.name, -1) == originals.get(p.b.name, -2) for p in duplicates]
    true = sum(same)
    exact_other = sum(p.exact and not one for p, one in zip(duplicates, same, strict=True))
    false = len(duplicates) - true - exact_other
    return {
        "copy_pairs": truth,
        "duplicate_pairs": len(duplicates),
        "true_pairs": true,
        "byte_identical_across_pictures": exact_other,
        "false_pairs": false,
        "precision": round(true / max(1, true + false), 5),
        "recall": round(true / max(1, truth), 5),
    }


def _write_chunk(
    photos: list[str],
    out: str,
    copies: float,
    sides: tuple[int, int],
    squash: int,
    ranks: dict[int, int] | None,
    numbers: list[int],
) -> int:
    """Write images `numbers`; `ranks` (distinct layout) numbers the distinct pictures."""

    def picture(k: int, small: int) -> Image.Image:
        if ranks is None:
            return _picture(photos, k, sides, small)
        return _distinct(photos, ranks[k], sides, small)

    for k in numbers:
        rng = np.random.default_rng(10_000_000 + k)
        if _is_copy(k, copies):  # an edited copy of an earlier distinct picture
            if ranks is None:  # any earlier one (early pictures collect more copies)
                source = int(rng.integers(0, k))
                while source > 0 and _is_copy(source, copies):
                    source = int(rng.integers(0, source))
            else:  # the last one before it: each original and its copies, side by side
                source = _original(k - 1, copies)
            family = FAMILIES[int(rng.integers(len(FAMILIES)))]
            image = apply_edit(picture(source, 0), family, seed=k, strength=0.5)
            if squash:
                image = image.resize((squash, squash), Image.Resampling.BILINEAR)
        else:
            image = picture(k, squash)
        folder = Path(out) / f"{k // 1000:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        image.convert("RGB").save(folder / f"img{k:07d}.jpg", quality=90)
    return len(numbers)


def generate(
    photos_dir: Path,
    out: Path,
    n: int,
    workers: int,
    copies: float = 0.1,
    sides: tuple[int, int] = (320, 640),
    squash: int = 0,
    layout: str = "crops",
) -> int:
    """Write images 0..n-1 that are not there yet (a rerun resumes); returns how many.

    `layout` "crops": each distinct picture a random region of a random photo (overlapping
    crops of one photo are partial copies of each other: a stress case), a copy's original
    any earlier picture; "distinct": no two distinct pictures share a pixel (`_distinct`),
    a copy's original the last distinct picture before it (groups of 1 / (1 - copies) on
    average)."""
    photos = sorted(str(p) for p in iter_image_files([photos_dir]))
    if not photos:
        raise SystemExit(f"no photos in {photos_dir}")
    rank_of = None
    if layout == "distinct":  # rank_of[k]: how many distinct pictures come before image k
        originals = np.array([not _is_copy(k, copies) for k in range(n)])
        rank_of = np.cumsum(originals) - originals
        made = int(originals.sum())
        capacity = len(photos) // 2 + 4 * (len(photos) - len(photos) // 2)
        if made > capacity:
            print(f"{capacity:,} distinct pictures from the photos, {made - capacity:,} procedural")
    todo = [k for k in range(n) if not (out / f"{k // 1000:04d}" / f"img{k:07d}.jpg").exists()]
    chunks = [todo[i : i + 200] for i in range(0, len(todo), 200)]

    def ranks(chunk: list[int]) -> dict[int, int] | None:  # this chunk's own (small to send)
        if rank_of is None:
            return None
        wanted = set(chunk)
        for k in chunk:  # and the original each copy is made from
            wanted.add(max(_original(k - 1, copies), 0))
        return {k: int(rank_of[k]) for k in wanted}

    with ProcessPoolExecutor(max_workers=workers) as pool:
        write = functools.partial(_write_chunk, photos, str(out), copies, sides, squash)
        done = sum(pool.map(write, [ranks(c) for c in chunks], chunks))
    return done


def _plain_phash_chunk(paths: list[str]) -> int:
    import imagehash

    for path in paths:
        imagehash.phash(Image.open(path))
    return len(paths)


def plain_phash(paths: Sequence[Path], workers: int) -> int:
    """`imagehash.phash(Image.open(path))` over every file, one process per core."""
    names = [str(p) for p in paths]
    chunks = [names[i : i + 256] for i in range(0, len(names), 256)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(_plain_phash_chunk, chunks))


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
    parser.add_argument(
        "--generate-only", action="store_true", help="Stop after generating (no scan)."
    )
    parser.add_argument("--model", type=Path, help="Checkpoint (default: the bundled model).")
    parser.add_argument(
        "--peer", default="phash", help="Hash to compare with: phash-plain, phash (default), ..."
    )
    parser.add_argument("--copies", type=float, default=0.1, help="Share of edited copies.")
    parser.add_argument("--sides", default="320,640", help="Longer side range of the pictures.")
    parser.add_argument("--squash", type=int, default=0, help="Squash every picture to N x N.")
    parser.add_argument(
        "--layout",
        choices=("crops", "distinct"),
        default="crops",
        help="crops: random regions of the photos (overlapping: a stress case); distinct: "
        "whole photos and non-overlapping tiles, no shared pixels.",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-report", action="store_true", help="Skip the HTML report.")
    parser.add_argument(
        "--no-verify", action="store_true", help="Scan without geometric verification."
    )
    parser.add_argument("--json-out", type=Path, help="Also write the figures here (JSON).")
    parser.add_argument(
        "--index",
        type=Path,
        help="Scan into this index (default: a new one in DIR); an index a killed scan left "
        "is resumed, and the figures are this run's.",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="ray: embed and verify on a local Ray instance (extra [ray]), as `scan --engine ray`.",
    )
    parser.add_argument("--tiny", action="store_true", help="A seconds-long smoke run.")
    args = parser.parse_args(argv)
    if args.tiny:
        args.generate = 40
    images = args.dir / "images"
    if args.generate:
        if not args.photos:
            parser.error("--generate needs --photos")
        started = time.perf_counter()
        low, high = (int(v) for v in args.sides.split(","))
        made = generate(
            args.photos,
            images,
            args.generate,
            args.workers,
            args.copies,
            (low, high),
            args.squash,
            args.layout,
        )
        print(f"generated {made} images in {time.perf_counter() - started:.0f} s")
        if args.generate_only:
            return 0
    paths = list(iter_image_files([images]))
    if not paths:
        parser.error(f"no images under {images}; use --generate N --photos DIR")
    size = 0
    for path in paths:  # a warm page cache for both sides
        size += len(path.read_bytes())
    print(f"{len(paths):,} images, {size / 2**20:,.0f} MB, under {images}")

    model = load_model(args.model)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    index = args.index or args.dir / f"scan-{stamp}.lookalike"
    stages: dict[str, float] = {}

    verified = [0]

    def note_stage(progress: ScanProgress) -> None:
        stages.setdefault(progress.stage, time.perf_counter() - began)
        if progress.stage == "verify":
            verified[0] = max(verified[0], progress.done)

    with contextlib.ExitStack() as stack:
        engine: dict[str, Any] = {}
        if args.engine == "ray":
            from lookalike.distributed import RayEmbedder

            ray = stack.enter_context(RayEmbedder(args.dir / f"shards-{stamp}"))
            engine = {"embedder": ray, "verifier": ray.verifier}
        began = time.perf_counter()
        with ResourceMonitor(interval=0.5) as monitor:
            result = scan_folder(
                [images],
                index,
                model=model,
                workers=args.workers,
                verify=not args.no_verify,
                on_progress=note_stage,
                **engine,
            )
    # Seconds from the start to the first event of each later stage: walk + hash + decode +
    # embed + index ends where the pair search begins.
    ingest = stages.get("search", stages.get("group", monitor.cost.seconds))
    after = stages.get("keepers", stages.get("group", 0.0))  # the stage after verification
    verify_seconds = after - stages.get("verify", after)
    scan = {
        **_figures(len(paths), monitor),
        "engine": args.engine,
        "verify_seconds": round(verify_seconds, 2),
        "stage_start_seconds": {k: round(v, 2) for k, v in stages.items()},
        "ingest_seconds": round(ingest, 2),
        "ingest_images_per_s": round(len(paths) / ingest, 2),
        "verify": not args.no_verify,
        "groups": result.stats.groups,
        "pairs": len(result.pairs),
        "verified_pairs": verified[0],
        "errors": result.stats.errors,
    }
    if args.layout == "distinct":
        scan["truth"] = judge(result.pairs, paths, args.copies)
        print(f"against the generator's truth: {scan['truth']}")
    with ResourceMonitor(interval=0.5) as monitor:
        if args.peer == "phash-plain":
            errors = len(paths) - plain_phash(paths, args.workers)
        else:
            errors = len(hash_files(paths, args.peer, workers=args.workers).errors)
    peer = {**_figures(len(paths), monitor), "errors": errors}
    ratio = scan["images_per_s"] / peer["images_per_s"]
    ingest_ratio = scan["ingest_images_per_s"] / peer["images_per_s"]
    print(
        f"scan ({model.model_id}): {scan['seconds']:.1f} s, {scan['images_per_s']:.1f} images/s, "
        f"CPU {scan['cpu_util']:.0%}, peak {scan['peak_rss_mb']:,.0f} MB; "
        f"{scan['groups']:,} groups, {scan['pairs']:,} pairs, {scan['errors']} unreadable, "
        f"{scan['verified_pairs']:,} pairs verified in {verify_seconds:.1f} s "
        f"({scan['verified_pairs'] / max(verify_seconds, 1e-9):,.0f} pairs/s, {args.engine})"
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
                "copies": args.copies,
                "sides": args.sides,
                "squash": args.squash,
                "layout": args.layout,
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
