"""Could pHash carry the copies local features cannot read (blur, pixelate, grayscale)?

    lookalike scan runs/bench/calibrate-cc/images -i /tmp/cc.lookalike --json-out /tmp/cc-scan.json
    python scripts/probe_hash_evidence.py runs/bench/calibrate-cc /tmp/cc-scan.json [BENCH SCAN ...]

For each set: every image's CNN embedding (the bundled model, with its detail gate) and
imagehash pHash; then, for each pair whose pHashes are at most `bits` apart, whose CNN
similarity is at least `floor` and where neither picture is near-flat, whether it is a
copy the shipped rule misses (not a duplicate in the scan's JSON: a gain) or a pair of
different pictures (a false pair it would add; two edits of one original are neither).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from lookalike.evaluate import load_truth, pair_layout
from lookalike.evaluate.peers import hash_files
from lookalike.model import load_model

BITS = (0, 2, 4, 6, 8)
FLOORS = (0.6, 0.8, 0.9, 0.95)


POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def hamming_matrix(words: np.ndarray) -> np.ndarray:
    """Bits apart of every pair of 64-bit hashes (N, 1) uint64 -> (N, N) uint8."""
    x = np.bitwise_xor(words[:, 0][:, None], words[:, 0][None, :])
    return POPCOUNT[x.view(np.uint8)].reshape(len(words), len(words), 8).sum(axis=2, dtype=np.uint8)


def probe_set(bench: Path, scan: Path) -> dict[tuple[int, float], tuple[Counter[str], int]]:
    """Per (bits, floor): the missed copies the hash would add, by family, and the false
    pairs it would add."""
    model = load_model()
    layout = pair_layout(load_truth(bench))
    paths = [str(p) for p in layout.paths]
    found = {
        frozenset((Path(p["a"]).name, Path(p["b"]).name))
        for p in json.loads(scan.read_text())["pairs"]
        if p["duplicate"]
    }
    vectors = model.embed(paths)
    similarity = model.cnn_similarity_matrix(vectors, vectors)  # near-flat pairs: 0
    distance = hamming_matrix(hash_files(paths, "phash").words)
    family = {
        (int(a), int(b)): str(f)
        for a, b, f in zip(
            layout.positive_a, layout.positive_b, layout.positive_family, strict=True
        )
    }
    names = [Path(p).name for p in paths]
    out = {}
    for bits in BITS:
        for floor in FLOORS:
            rows, cols = np.nonzero(np.triu((distance <= bits) & (similarity >= floor), 1))
            gains: Counter[str] = Counter()
            false = 0
            for a, b in zip(rows.tolist(), cols.tolist(), strict=True):
                key = (a, b) if (a, b) in family else (b, a)
                if key in family:
                    if frozenset((names[a], names[b])) not in found:
                        gains[family[key]] += 1
                elif layout.group[a] != layout.group[b]:
                    false += 1
            out[(bits, floor)] = (gains, false)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", type=Path, nargs="+", help="BENCH SCAN_JSON pairs")
    args = parser.parse_args()
    results = [
        probe_set(bench, scan) for bench, scan in zip(args.sets[::2], args.sets[1::2], strict=True)
    ]
    for key in results[0]:
        gains = sum((r[key][0] for r in results), Counter())
        false = [r[key][1] for r in results]
        print(f"pHash <= {key[0]} bits, CNN >= {key[1]}: gained {dict(gains)}, false pairs {false}")


if __name__ == "__main__":
    main()
