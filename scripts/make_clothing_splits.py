"""Split ../shared/clothing by contributor into train / calibrate / test name lists.

    python scripts/make_clothing_splits.py /work/shared/clothing data/splits

A contributor (`sender_id`) photographed many garments in one place, so the split is by
contributor, never by photo: no background is shared across splits. Contributors are
ordered by a salted SHA-256 of their id. The lists are committed;
rerun only to check them (the output must not change).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
from collections import defaultdict
from pathlib import Path

SALT = "lookalike-clothing-split-v1:"
SHARES = {"test": 0.15, "calibrate": 0.15}


def split_senders(rows: list[dict[str, str]]) -> dict[str, list[str]]:
    """Image names per split: contributors in salted-hash order fill test, calibrate,
    then train; a contributor goes to a held-out split only while it fits in that split's
    share of the photos, so one large contributor cannot fill a split alone."""
    by_sender: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_sender[row["sender_id"]].append(row["image"] + ".jpg")
    order = sorted(by_sender, key=lambda s: hashlib.sha256((SALT + s).encode()).hexdigest())
    total = len(rows)
    splits: dict[str, list[str]] = {"test": [], "calibrate": [], "train": []}
    for sender in order:
        size = len(by_sender[sender])
        target = next(
            (k for k, share in SHARES.items() if len(splits[k]) + size <= share * total),
            "train",
        )
        splits[target] += by_sender[sender]
    return {k: sorted(v) for k, v in splits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clothing", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    with (args.clothing / "images.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    args.out.mkdir(parents=True, exist_ok=True)
    for split, members in split_senders(rows).items():
        (args.out / f"clothing_{split}.txt").write_text("\n".join(members) + "\n")
        print(f"clothing {split}: {len(members)} photos")


if __name__ == "__main__":
    main()
