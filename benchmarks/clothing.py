"""Precision in the wild: a default scan of ../shared/clothing, pairs judged by garment class.

    python benchmarks/clothing.py ../shared/clothing [--model PATH] \
        [--list data/splits/clothing_calibrate.txt]

Many contributors photographed garment after garment on one carpet, bed or wall: two photos
of different classes (`label`) share at most a place, never a picture, so every duplicate
pair across classes is a false positive. Prints the duplicate pairs and groups, how many
pairs cross classes, and each group's members with their classes and contributors (to look
at by eye). Pairs with an unsure label ("Not sure", "Skip", "Other") are counted apart. The
near-duplicate shots (photos of one scene, never grouped) are listed too.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

from lookalike import scan_folder
from lookalike.model import load_model

UNSURE = {"Not sure", "Skip", "Other"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clothing", type=Path)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--list", type=Path, help="Only these image names (a split list).")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    with (args.clothing / "images.csv").open(encoding="utf-8") as handle:
        rows = {r["image"] + ".jpg": r for r in csv.DictReader(handle)}
    images = args.clothing / "images"
    files = [images / n for n in args.list.read_text().split()] if args.list else None
    with tempfile.TemporaryDirectory() as tmp:
        result = scan_folder(
            images,
            Path(tmp) / "clothing.idx",
            model=load_model(args.model),
            files_from=files,
        )
    duplicates = [p for p in result.pairs if p.duplicate]

    def label(path: Path) -> str:
        return rows[path.name]["label"]

    sure = [p for p in duplicates if label(p.a) not in UNSURE and label(p.b) not in UNSURE]
    across = [p for p in sure if label(p.a) != label(p.b)]
    summary = {
        "images": result.stats.images,
        "groups": len(result.groups),
        "duplicate_pairs": len(duplicates),
        "pairs_with_known_classes": len(sure),
        "pairs_across_classes": len(across),
        "near_duplicate_shots": len(result.shots),
        "shots_across_classes": sum(
            label(t.a) not in UNSURE and label(t.b) not in UNSURE and label(t.a) != label(t.b)
            for t in result.shots
        ),
        "min_similarity": result.min_similarity,
        "model": result.model,
    }
    print(json.dumps(summary))
    for p in across:
        print(f"ACROSS {p.similarity:.5f} {p.a.name} ({label(p.a)}) ~ {p.b.name} ({label(p.b)})")
    groups = []
    for k, group in enumerate(result.groups):
        members = [
            {
                "file": m.path.name,
                "label": label(m.path),
                "sender": rows[m.path.name]["sender_id"],
                "similarity_to_keep": round(m.similarity_to_keep, 5),
            }
            for m in group.members
        ]
        groups.append(members)
        print(
            f"group {k}: "
            + ", ".join(
                f"{m['file'][:8]} {m['label']}/{m['sender']} {m['similarity_to_keep']}"
                for m in members
            )
        )
    shots = [
        {
            "a": t.a.name,
            "b": t.b.name,
            "labels": [label(t.a), label(t.b)],
            "senders": [rows[t.a.name]["sender_id"], rows[t.b.name]["sender_id"]],
            "similarity": round(t.similarity, 5),
            "coverage": round(t.coverage, 3),
        }
        for t in result.shots
    ]
    for t in shots:
        print(f"shot {t['similarity']} {t['a'][:8]} {t['b'][:8]} {t['labels']} {t['senders']}")
    if args.json_out:
        payload = {"summary": summary, "groups": groups, "shots": shots}
        args.json_out.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
