"""Grad-CAM on crop pairs: does the heat fall on what the two images share, in both?

    python benchmarks/explain_heat.py ../shared/photos --photos-list data/splits/test.txt \
        [--pairs 60] [--model PATH] [--json-out FILE]

For each photo (scaled to 512 px at most), two overlapping crops are cut at random
(each 60-85 % of a side): A and B. The region they share is known in both frames. For
each image the heat share inside the shared region is compared with the region's share
of the image's area (equal = no better than chance). A second case keeps all of A and
crops B out of it (B is then all shared: only A is measured).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from _common import write_results
from PIL import Image

from lookalike.evaluate import read_photo_list
from lookalike.explain import explain_pair
from lookalike.io import load_image
from lookalike.model import load_model

SIDE = 512


def _box(rng: np.random.Generator, w: int, h: int) -> tuple[int, int, int, int]:
    cw, ch = int(w * rng.uniform(0.6, 0.85)), int(h * rng.uniform(0.6, 0.85))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return x, y, x + cw, y + ch


def _mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((size[1], size[0]), bool)
    mask[box[1] : box[3], box[0] : box[2]] = True
    return mask


def _share(heat: np.ndarray, mask: np.ndarray) -> tuple[float, float] | None:
    total = float(heat.sum())
    if total <= 0:
        return None  # no heat at all (nothing to explain)
    return float(heat[mask].sum()) / total, float(mask.mean())


def _summary(rows: list[tuple[float, float]]) -> dict[str, Any]:
    heat = np.array([r[0] for r in rows])
    area = np.array([r[1] for r in rows])
    return {
        "pairs": len(rows),
        "mean_heat_share": round(float(heat.mean()), 3),
        "mean_area_share": round(float(area.mean()), 3),
        "ratio": round(float(heat.sum() / area.sum()), 3),
        "above_chance": round(float((heat > area).mean()), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("--photos-list", type=Path)
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    names = read_photo_list(args.photos_list) if args.photos_list else None
    files = [args.photos / n for n in names] if names else sorted(args.photos.glob("*.jpg"))
    model = load_model(args.model)
    rng = np.random.default_rng(0)
    overlap_a: list[tuple[float, float]] = []
    overlap_b: list[tuple[float, float]] = []
    crop_a: list[tuple[float, float]] = []
    for path in files[: args.pairs]:
        photo = load_image(path)
        photo.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
        w, h = photo.size
        first, second = _box(rng, w, h), _box(rng, w, h)
        shared = (
            max(first[0], second[0]),
            max(first[1], second[1]),
            min(first[2], second[2]),
            min(first[3], second[3]),
        )
        if shared[2] - shared[0] < 16 or shared[3] - shared[1] < 16:
            continue
        a, b = photo.crop(first), photo.crop(second)
        result = explain_pair(a, b, model)
        for box, image, heat, out in (
            (first, a, result.heatmap_a, overlap_a),
            (second, b, result.heatmap_b, overlap_b),
        ):
            inner = (shared[0] - box[0], shared[1] - box[1], shared[2] - box[0], shared[3] - box[1])
            measured = _share(heat, _mask(image.size, inner))
            if measured:
                out.append(measured)
        crop = _box(rng, w, h)
        heat = explain_pair(photo, photo.crop(crop), model).heatmap_a
        measured = _share(heat, _mask((w, h), crop))
        if measured:
            crop_a.append(measured)
    figures = {
        "overlapping crops, A": _summary(overlap_a),
        "overlapping crops, B": _summary(overlap_b),
        "B cropped from A, A": _summary(crop_a),
        "model": model.model_id,
    }
    for name, row in figures.items():
        print(f"{name:24s} {row}")
    if args.json_out:
        write_results(args.json_out, "explain_heat.py", None, figures)
        print(json.dumps({"written": str(args.json_out)}))


if __name__ == "__main__":
    main()
