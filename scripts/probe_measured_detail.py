"""The CNN alone with near-flat pictures found by measure instead of by read-out.

    python scripts/probe_measured_detail.py MODEL.pt runs/bench/calibrate-cc [more sets] \
        [--cache runs/detail-probe] [--synthetic 400]

Each image of a benchmark set is embedded once; its detail is measured from the prepared
encoder input (`lookalike.model.detail_of_pixels`) at 16 and 64 px. A pair scores its
mapped cosine, or 0 where either picture is flat by one of the gates: none, MODEL's own
read-out, measured detail under several cut-offs, and the read-out where the measure
agrees (`read-out & 16px<c`: what `DetailGate.clear_detail` c does). Prints recall of the
CNN alone at precision 0.99 and 0.999, per family, and how many images each gate calls
flat; with `--synthetic N`, the share of N of the test suite's and of the million
benchmark's synthetic pictures each gate calls flat. Use calibrate material only to choose.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from probe_views import Pairs, cached_arrays

from lookalike.model import Model, detail_of_pixels, load_model
from lookalike.model.preprocess import load_prepared
from lookalike.score import cnn_similarity_from_cosine


def embed_and_measure(model: Model, paths: list[Path]) -> dict[str, np.ndarray]:
    """Embeddings (N, D) and measured detail at 16 and 64 px (N,) of every image."""
    vectors, d16, d64, batch = [], [], [], []
    for k, path in enumerate(paths):
        pixels = load_prepared(path, model.preprocess)
        d16.append(detail_of_pixels(pixels, 16))
        d64.append(detail_of_pixels(pixels, 64))
        batch.append(pixels)
        if len(batch) == 64 or k == len(paths) - 1:
            vectors.append(model.embed_arrays(np.stack(batch)))
            batch = []
    return {"vectors": np.concatenate(vectors), "d16": np.array(d16), "d64": np.array(d64)}


def gates_of(model: Model, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each gate's flat flags (N,) bool."""
    vectors = data["vectors"]
    gates: dict[str, np.ndarray] = {"none": np.zeros(len(vectors), dtype=bool)}
    if model.detail is not None:
        gates[f"read-out {model.detail.side}px<{model.detail.min_detail}"] = model.detail.flat(
            vectors
        )
    for cut in (0.02, 0.03, 0.04, 0.05, 0.06):
        gates[f"measured 16px<{cut}"] = data["d16"] < cut
    gates["measured 64px<0.015"] = data["d64"] < 0.015
    if model.detail is not None:
        read = model.detail.flat(vectors)
        for cut in (0.05, 0.06, 0.08, 0.1):
            gates[f"read-out & 16px<{cut}"] = read & (data["d16"] < cut)
    return gates


def synthetic(model: Model, count: int) -> None:
    """Print the share of the suite's and the million benchmark's synthetic pictures each
    gate calls flat (they all have clear shapes)."""
    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root / "tests"), str(root / "benchmarks")]
    from scan_scale import _procedural

    from conftest import make_picture
    from lookalike.model.preprocess import prepare_image

    kinds = {
        "make_picture": [make_picture(seed) for seed in range(count)],
        "_procedural": [_procedural(rank, (320, 640), 0) for rank in range(count)],
    }
    for kind, images in kinds.items():
        pixels = np.stack([prepare_image(im, model.preprocess) for im in images])
        data = {
            "vectors": np.concatenate(
                [model.embed_arrays(pixels[i : i + 64]) for i in range(0, count, 64)]
            ),
            "d16": np.array([detail_of_pixels(p, 16) for p in pixels]),
            "d64": np.array([detail_of_pixels(p, 64) for p in pixels]),
        }
        print(f"\n{kind}: {count} pictures, share flat by each gate", flush=True)
        for label, flat in gates_of(model, data).items():
            print(f"  {label:<24} {flat.mean():.3f}", flush=True)


def report(name: str, model: Model, data: dict[str, np.ndarray], bench: Path) -> None:
    """Print the CNN alone's recall under each gate."""
    pairs = Pairs(bench)
    vectors = data["vectors"]
    plain = np.asarray(cnn_similarity_from_cosine(vectors @ vectors.T), dtype=np.float32)
    print(f"\n{name}: {len(vectors)} images, {pairs.a.size} copies", flush=True)
    for label, flat in gates_of(model, data).items():
        scores = plain.copy()
        scores[flat, :] = 0.0
        scores[:, flat] = 0.0
        r99, cut99, r999, _, fams = pairs.recall(scores)
        print(
            f"  {label:<24} flat {int(flat.sum()):>4}  @0.99 {r99:.3f} (cut {cut99:.4f})  "
            f"@0.999 {r999:.3f}\n      {fams}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("benches", type=Path, nargs="*")
    parser.add_argument("--synthetic", type=int, default=0, help="this many synthetic pictures")
    parser.add_argument("--cache", type=Path, help="keep each set's embeddings and details here")
    args = parser.parse_args()
    model = load_model(args.model).without_verification()
    if args.synthetic:
        synthetic(model, args.synthetic)
    for bench in args.benches:
        data = cached_arrays(bench, model, args.cache, lambda p: embed_and_measure(model, list(p)))
        report(bench.name, model, data, bench)


if __name__ == "__main__":
    main()
