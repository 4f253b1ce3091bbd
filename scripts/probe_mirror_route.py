"""Could the CNN tell which verified pairs need the mirrored match? Measured, not kept.

    python scripts/probe_band.py MODEL.pt runs/bench/lone-101 ... --cache runs/band-probe
    python scripts/probe_mirror_route.py runs/bench/lone-101 runs/bench/lone-102 \
        runs/bench/calibrate-cc-101-96 --cache runs/band-probe

Verification matches the first picture of a pair with the second directly and then, unless
the direct match is strong, its mirror image too. For each pair `probe_band.py` cached
(the pairs an evaluation verifies), this embeds the first picture's mirror image with the
bundled model and matches both ways, timing each. A route "try the mirror only where the
mirror image's CNN similarity is at least the direct one's minus delta" is then replayed:
the share of today's mirrored matches it keeps, and the pairs whose winning match was the
mirrored one that it would skip. Use calibrate material only.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _probes import keypoint_sets  # type: ignore[import-not-found]
from PIL import ImageOps

from lookalike.evaluate import load_truth, pair_layout
from lookalike.io import load_image
from lookalike.model import Model, load_model
from lookalike.verify import VerifyConfig, single_threaded_search
from lookalike.verify import _agreeing_match as agreeing_match

DELTAS = (0.0, 0.02, 0.05, 0.1, 0.2)


def mirror_vectors(model: Model, paths: list[str], rows: np.ndarray, dim: int) -> np.ndarray:
    """Embeddings (dim wide) of the mirror images of pictures `rows`, zeros elsewhere."""
    found = np.zeros((len(paths), dim), dtype=np.float32)
    for s in range(0, len(rows), 64):
        part = rows[s : s + 64]
        found[part] = model.embed_images([ImageOps.mirror(load_image(paths[r])) for r in part])
    return found


def both_matches(paths: list[str], pairs: np.ndarray, config: VerifyConfig) -> np.ndarray:
    """(P, 4): inliers of the direct and the mirrored match of each pair, and the seconds
    of CPU each took."""
    with ThreadPoolExecutor(2, initializer=single_threaded_search) as pool:
        keys = keypoint_sets(paths, config, pool)

        def both(pair: list[int]) -> tuple[float, float, float, float]:
            a, b = keys[paths[pair[0]]], keys[paths[pair[1]]]
            t0 = time.thread_time()
            direct = agreeing_match(a[0], b[0], config).inliers
            t1 = time.thread_time()
            mirror = agreeing_match(a[1], b[0], config).inliers
            return direct, mirror, t1 - t0, time.thread_time() - t1

        return np.array(list(pool.map(both, pairs.tolist())), dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benches", nargs="+", type=Path)
    parser.add_argument("--cache", type=Path, default=Path("runs/band-probe"))
    args = parser.parse_args()
    model = load_model()
    config = model.verify
    assert config is not None
    for bench in args.benches:
        layout = pair_layout(load_truth(bench))
        data = np.load(args.cache / f"{bench.name}.npz")
        vectors, pairs = data["vectors"], data["pairs"]
        paths = [str(p) for p in layout.paths]
        firsts = np.unique(pairs[:, 0])
        started = time.process_time()
        mirrored = mirror_vectors(model, paths, firsts, vectors.shape[1])
        embed_ms = (time.process_time() - started) / len(firsts) * 1e3
        found = both_matches(paths, pairs, config)
        direct, mirror = found[:, 0], found[:, 1]
        sd = np.einsum("ij,ij->i", vectors[pairs[:, 0]], vectors[pairs[:, 1]])
        sm = np.einsum("ij,ij->i", mirrored[pairs[:, 0]], vectors[pairs[:, 1]])
        copy = layout.group[pairs[:, 0]] == layout.group[pairs[:, 1]]
        tried = direct < 4 * config.inlier_offset  # the mirror is tried today
        wins = tried & (mirror > direct)
        direct_ms, mirror_ms = found[:, 2].mean() * 1e3, found[:, 3].mean() * 1e3
        print(
            f"{bench.name}: {len(pairs)} pairs ({int(copy.sum())} copies), mirror tried for "
            f"{int(tried.sum())}, wins {int(wins.sum())} ({int((wins & copy).sum())} copies); "
            f"ms of CPU: mirror embedding {embed_ms:.2f} a picture (decode included), "
            f"direct match {direct_ms:.2f}, mirrored {mirror_ms:.2f} a pair"
        )
        for delta in DELTAS:
            route = sm >= sd - delta
            print(
                f"  mirror iff CNN(mirror) >= CNN(direct) - {delta}: keeps "
                f"{(route & tried).sum() / max(1, tried.sum()):.3f} of the mirrored matches; "
                f"winning mirrors skipped: {int((wins & copy & ~route).sum())} copies, "
                f"{int((wins & ~copy & ~route).sum())} others"
            )


if __name__ == "__main__":
    main()
