"""Retrain the bundled default model from ../shared/photos (the committed train split).

    python scripts/train_default.py PHOTO_DIR OUT.pt [--clothing DIR] [--resume] [--init CKPT]

Model selection and calibration use the committed calibrate split; the test split is
never read. With `--clothing`, the photos of its committed clothing splits join training
and validation, each with its place (contributor) and subject (garment class): photos of
one place are batched together as hard negatives. Prints one line per epoch (loss,
val_loss, validation recall at p=0.99).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from lookalike.records import EpochLog
from lookalike.train import EpochStats, TrainConfig, photo_paths, train_model

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "default.json")
    parser.add_argument("--splits", type=Path, default=ROOT / "data" / "splits")
    parser.add_argument("--clothing", type=Path, help="../shared/clothing (images.csv, images/)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--init", type=Path, help="Start from this checkpoint's weights.")
    args = parser.parse_args()
    config = TrainConfig.from_json(args.config)
    train = photo_paths(args.photos, args.splits / "train.txt")
    val = photo_paths(args.photos, args.splits / "calibrate.txt")
    places = None
    if args.clothing is not None:
        images = args.clothing / "images"
        train += photo_paths(images, args.splits / "clothing_train.txt")
        val += photo_paths(images, args.splits / "clothing_calibrate.txt")
        with (args.clothing / "images.csv").open(encoding="utf-8") as handle:
            places = {
                images / (row["image"] + ".jpg"): (row["sender_id"], row["label"])
                for row in csv.DictReader(handle)
            }
    began = time.time()

    def report(log: EpochLog, stats: EpochStats) -> None:
        print(
            json.dumps(
                {
                    "epoch": log.epoch,
                    "loss": round(log.loss, 4),
                    "val_loss": round(log.val_loss, 4),
                    "val_recall_at_p99": round(stats.val_recall_at_p99, 4),
                    "lr": stats.lr,
                    "epoch_seconds": round(log.seconds, 1),
                    "elapsed_minutes": round((time.time() - began) / 60, 1),
                }
            ),
            flush=True,
        )

    result = train_model(
        train,
        args.out,
        config,
        val_photos=val,
        places=places,
        resume=args.resume,
        init=args.init,
        on_epoch=report,
    )
    print(
        json.dumps(
            {"best_epoch": result.best_epoch, "best_val_recall_at_p99": result.best_recall_at_p99}
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
