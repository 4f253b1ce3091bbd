"""What `painted_max_std` verifies: copies under paint against photos of one place.

    python scripts/probe_painted.py PROBE.json [PROBE.json ...] --settings 0 0.5 0.75 1.0

Reads the pairs of `scripts/probe_content.py` outputs (overlay and heavy copies,
composites on one background, clothing pairs across garment classes) that have a match
(>= 12 inliers) and verifies each, as a scan does (direct and mirrored), with the bundled
rule under each `painted_max_std` setting (0: no painted cover, as v1.5). Prints, per kind
of pair, how many count as copies ("agree"), as near-duplicate shots, or not at all. How
v1.7's 0.5 was chosen (MODEL_CARD.md, "Painted cover"), on the calibrate split and the
clothing train and calibrate splits only.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from lookalike.model import load_model
from lookalike.verify import VerifyConfig, extract_keypoints, load_for_matching, verified_match

KINDS = ("overlay", "heavy", "composite", "clothing-cross-class")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probes", type=Path, nargs="+")
    parser.add_argument("--settings", type=float, nargs="+", default=[0.0, 0.5, 0.75, 1.0])
    args = parser.parse_args()
    base = load_model(None).verify
    assert base is not None
    pairs = [
        row
        for probe in args.probes
        for row in json.loads(probe.read_text())
        if row["kind"] in KINDS and row["inliers"] >= 12
    ]
    rules: dict[str, VerifyConfig] = {
        f"painted_max_std {v}": replace(base, painted_max_std=v) for v in args.settings
    }

    def verdicts(row: dict[str, object]) -> dict[str, str]:
        a = load_for_matching(str(row["a"]), base)
        b = load_for_matching(str(row["b"]), base)
        direct, mirrored = extract_keypoints(a, base), extract_keypoints(a, base, mirrored=True)
        other = extract_keypoints(b, base)
        out = {"kind": str(row["kind"])}
        for name, rule in rules.items():
            found = verified_match(direct, mirrored, other, rule)
            out[name] = "agree" if found.inliers else ("shot" if found.shot else "no")
        return out

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(verdicts, pairs))
    for name in rules:
        counts = {
            kind: dict(Counter(r[name] for r in results if r["kind"] == kind)) for kind in KINDS
        }
        print(f"{name}: {counts}")


if __name__ == "__main__":
    main()
