"""Scale benchmark: embedding throughput of the model vs perceptual hashes, same files.

    python benchmarks/throughput.py /work/shared/photos --peers phash

Both sides decode the files themselves and use every core: the model decodes in one
process per core (reduced-size JPEG decoding, as `lookalike scan` does) while the
network runs on all cores in the main process; each hash runs in one process per core
with a full decode, as imagededup does. Files are read once first, so both see a warm
page cache. Prints images/s for each and the ratio. `--tiny` is a seconds-long smoke run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import write_results  # type: ignore[import-not-found]

from lookalike.embed import embed_all
from lookalike.evaluate import ResourceMonitor, hash_files
from lookalike.io import iter_image_files
from lookalike.model import load_model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files_dir", type=Path)
    parser.add_argument("--model", type=Path, help="Checkpoint (default: the bundled model).")
    parser.add_argument("--peers", default="phash", help="Comma-separated hashes to compare.")
    parser.add_argument("--limit", type=int, help="Only the first N files (sorted).")
    parser.add_argument("--workers", type=int, help="Processes (default: one per core).")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json-out", type=Path, help="Also write the figures here (JSON).")
    parser.add_argument("--tiny", action="store_true", help="A seconds-long smoke run.")
    args = parser.parse_args(argv)
    if args.tiny:
        args.limit = 8
    if args.json_out and args.json_out.exists():
        parser.error(f"{args.json_out} already exists")
    paths = list(iter_image_files([args.files_dir]))[: args.limit]
    if not paths:
        parser.error(f"no image files in {args.files_dir}")
    for path in paths:  # warm the page cache for everyone
        path.read_bytes()
    model = load_model(args.model)
    embed_all(paths[:2], model, workers=1)  # set up the network; not part of the figures
    rows: list[dict[str, Any]] = []

    with ResourceMonitor() as monitor:
        embedded = embed_all(paths, model, batch_size=args.batch_size, workers=args.workers)
    rows.append(
        {
            "system": f"lookalike ({model.model_id})",
            "errors": len(embedded.errors),
            **_figures(len(paths), monitor),
        }
    )
    for peer in [p for p in args.peers.split(",") if p]:
        with ResourceMonitor() as monitor:
            hashes = hash_files(paths, peer, workers=args.workers)
        rows.append({"system": peer, "errors": len(hashes.errors), **_figures(len(paths), monitor)})

    model_rate = rows[0]["images_per_s"]
    print(f"{len(paths)} files from {args.files_dir}")
    print(f"{'system':<34}{'images/s':>10}{'ms/image':>10}{'CPU':>6}{'peak MB':>9}  ratio")
    for row in rows:
        row["model_ratio"] = round(model_rate / row["images_per_s"], 3)
        print(
            f"{row['system']:<34}{row['images_per_s']:>10.1f}{row['ms_per_image']:>10.2f}"
            f"{row['cpu_util']:>6.0%}{row['peak_rss_mb']:>9.0f}  "
            f"lookalike ÷ this = {row['model_ratio']:.2f}"
        )
    if args.json_out:
        write_results(
            args.json_out,
            "throughput.py",
            argv,
            {
                "files": len(paths),
                "systems": rows,
            },
        )
    return 0


def _figures(count: int, monitor: ResourceMonitor) -> dict[str, float]:
    cost = monitor.cost
    return {
        "seconds": round(cost.seconds, 3),
        "images_per_s": round(count / cost.seconds, 2),
        "ms_per_image": round(1000 * cost.seconds / count, 3),
        "cpu_util": round(cost.cpu_util, 3),
        "peak_rss_mb": round(cost.peak_rss_mb, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
