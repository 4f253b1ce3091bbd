"""Give a model a detail gate: near-flat pictures stop being copies on the CNN's word.

    python scripts/fit_detail_gate.py MODEL.pt runs/train_half_a -o OUT.pt \
        [--min-detail 0.015] [--side 64] [--clear-detail 0.06]

Fits `lookalike.model.detail.fit_detail_gate` on training photos only (each whole photo
and six random square crops of it, 20–50 % of its shorter side: crops of skies and walls
are where flat pictures come from), then saves MODEL with the gate. `--side` is the side
of the grey picture detail is measured on: 64 reads texture, 16 structure (a tile of one
wall has grain but no shapes). `--clear-detail` lets the detail embedders measure at 16 px
overrule the read-out: a picture measured at least that detailed is never flat. Calibrate
the result afterwards (`lookalike calibrate
OUT.pt runs/bench/calibrate-cc -o ...`): the gate changes which pairs the CNN vouches
for, so the cut-offs move.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from lookalike.io import iter_image_files, load_image
from lookalike.model import (
    detail_of_pixels,
    fit_detail_gate,
    load_model,
    prepare_image,
    save_model,
)
from lookalike.model.detail import DETAIL_SIDE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("photos", type=Path, help="Training photos (never calibrate or test).")
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--min-detail", type=float, default=0.015)
    parser.add_argument("--side", type=int, default=DETAIL_SIDE)
    parser.add_argument("--clear-detail", type=float, default=None)
    parser.add_argument("--crops", type=int, default=6)
    args = parser.parse_args(argv)
    model = load_model(args.model)
    rng = np.random.default_rng(0)
    inputs = []
    photos = sorted(iter_image_files([args.photos]))
    for path in photos:
        image = load_image(str(path), min_side=400)
        inputs.append(prepare_image(image, model.preprocess))
        width, height = image.size
        for _ in range(args.crops):
            side = int(rng.integers(min(width, height) // 5, min(width, height) // 2))
            x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
            crop = image.crop((x, y, x + side, y + side))
            inputs.append(prepare_image(crop, model.preprocess))
    pixels = np.stack(inputs)
    details = np.array([detail_of_pixels(p, args.side) for p in pixels])
    vectors = np.concatenate(
        [model.embed_arrays(pixels[i : i + 64]) for i in range(0, len(pixels), 64)]
    )
    gate = fit_detail_gate(
        vectors,
        details,
        args.min_detail,
        method=f"ridge on {len(photos)} training photos + {args.crops} crops each",
        side=args.side,
    )
    predicted = gate.detail(vectors)
    correlation = np.corrcoef(np.log(details + 1e-4), np.log(predicted + 1e-4))[0, 1]
    model.detail = replace(gate, clear_detail=args.clear_detail)
    save_model(model, args.out)
    print(
        f"{len(pixels)} pictures, {int((details < args.min_detail).sum())} flat by measure, "
        f"{int(gate.flat(vectors).sum())} by the read-out (log correlation {correlation:.3f}); "
        f"wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
