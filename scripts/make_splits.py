"""Split the training photos once, by photo, into train / calibrate / test name lists.

    python scripts/make_splits.py /work/shared/photos data/splits

Each source (file-name prefix) is split 75 / 10 / 15 by a salted SHA-256 of the file name,
so the split is stable and does not depend on file order. The lists are committed; rerun
only to check them (the output must not change).
"""

from __future__ import annotations

import argparse
import hashlib
from collections import defaultdict
from pathlib import Path

SALT = "lookalike-split-v1:"


def split_names(names: list[str]) -> dict[str, list[str]]:
    """Per source prefix: 15% test, 10% calibrate, the rest train."""
    by_source: dict[str, list[str]] = defaultdict(list)
    for name in names:
        by_source[name.split("_")[0]].append(name)
    splits: dict[str, list[str]] = {"train": [], "calibrate": [], "test": []}
    for _, members in sorted(by_source.items()):
        members.sort(key=lambda n: hashlib.sha256((SALT + n).encode()).hexdigest())
        n_test, n_cal = round(len(members) * 0.15), round(len(members) * 0.10)
        splits["test"] += members[:n_test]
        splits["calibrate"] += members[n_test : n_test + n_cal]
        splits["train"] += members[n_test + n_cal :]
    return {k: sorted(v) for k, v in splits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    names = sorted(p.name for p in args.photos.iterdir() if p.suffix.lower() == ".jpg")
    args.out.mkdir(parents=True, exist_ok=True)
    for split, members in split_names(names).items():
        (args.out / f"{split}.txt").write_text("\n".join(members) + "\n")
        print(f"{split}: {len(members)} photos")


if __name__ == "__main__":
    main()
