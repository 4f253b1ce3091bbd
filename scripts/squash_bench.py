"""Make a small-image copy of a benchmark set: every image squashed to SIDE x SIDE.

    python scripts/squash_bench.py runs/bench/test-cc-s0 runs/bench/test-cc-s0-32 [--side 32]

Many ML datasets hold 32-64 px pictures (CIFAR-style). The copy keeps the set's
truth.json (the same originals, edits and distractors), so `lookalike evaluate` measures
the same pairs at the small size. Refuses to write into an existing folder.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from PIL import Image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--side", type=int, default=32)
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} already exists; choose another folder")
    images = sorted((args.bench / "images").iterdir())
    if not (args.bench / "truth.json").is_file() or not images:
        parser.error(f"{args.bench} is not a benchmark set (truth.json, images/)")
    (args.out / "images").mkdir(parents=True)
    shutil.copy2(args.bench / "truth.json", args.out / "truth.json")
    for path in images:
        with Image.open(path) as image:
            small = image.convert("RGB").resize((args.side, args.side), Image.Resampling.BILINEAR)
        small.save(args.out / "images" / path.name, quality=95)
    print(f"wrote {len(images)} images of {args.side} x {args.side} px to {args.out / 'images'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
