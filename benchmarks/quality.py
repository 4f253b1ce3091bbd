"""Quality benchmark: build sets from photos, score the model and the peers side by side.

    python benchmarks/quality.py /work/shared/photos --photos-list data/splits/test.txt \\
        --originals 60 --distractors 75 --tiles 4 --seeds 0,1,2 \\
        --peers phash,dhash,whash,ahash,pdq --json-out benchmarks/results/quality.json

For every seed a set is built (`lookalike make-benchmark`), then the model and every peer
are run on it (`lookalike evaluate`); the side-by-side table is printed per seed, then a
summary over the seeds and the positives found per edit family, summed over the seeds.
`--tiny` runs a seconds-long version (used by the test suite so this script cannot rot).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _common import write_results  # type: ignore[import-not-found]
from rich.console import Console
from rich.table import Table

from lookalike.augment import FAMILIES
from lookalike.evaluate import (
    comparison_table,
    evaluate_hash,
    evaluate_model,
    evaluation_payload,
    families_table,
    make_benchmark,
    model_payload,
    print_table,
    read_photo_list,
)
from lookalike.model import load_model
from lookalike.records import Evaluation

TINY = {
    "originals": 2,
    "distractors": 2,
    "tiles": 2,
    "seeds": "0,1",
    "peers": "phash,pdq",
    "families": "jpeg,flip,crop",
}
SUMMARY_ROWS = {
    "recall_at_p99": ".4f",
    "recall_at_p999": ".4f",
    "pr_auc": ".4f",
    "roc_auc": ".4f",
    "precision": ".4f",
    "recall": ".4f",
    "f1": ".4f",
    "images_per_s": ",.1f",
    "cpu_util": ".0%",
    "peak_rss_mb": ",.0f",
}
"""Figures summarised over seeds, and how they are printed."""


def summary_table(runs: Sequence[list[Evaluation]]) -> Table:
    """Mean (min-max) over seeds of the headline figures, one column per system."""
    systems = [e.metrics.system for e in runs[0]]
    table = Table(title=f"mean over {len(runs)} set(s) (min-max)")
    table.add_column("")
    for name in systems:
        table.add_column(name, justify="right")
    for key, fmt in SUMMARY_ROWS.items():
        cells = []
        for k in range(len(systems)):
            values = [float(getattr(run[k].metrics, key)) for run in runs]
            cell = format(statistics.fmean(values), fmt)
            if len(values) > 1:
                cell += f" ({min(values):{fmt}} - {max(values):{fmt}})"
            cells.append(cell)
        table.add_row(key, *cells)
    return table


def family_counts(runs: Sequence[list[Evaluation]]) -> Table:
    """Positives found per family, summed over the seeds (decision · precision 0.99)."""
    systems = [e.metrics.system for e in runs[0]]
    families = list(runs[0][0].metrics.positives_by_family)
    table = Table(
        title="positives found per edit family, all sets together",
        caption="at the system's decision cut-off · at the cut-off giving precision 0.99",
    )
    table.add_column("family")
    table.add_column("pairs", justify="right")
    for name in systems:
        table.add_column(name, justify="right")
    for family in families:
        total = sum(run[0].metrics.positives_by_family.get(family, 0) for run in runs)
        cells = []
        for k in range(len(systems)):
            found = found99 = 0
            for run in runs:
                m = run[k].metrics
                n = m.positives_by_family.get(family, 0)
                found += round(m.recall_by_family.get(family, 0.0) * n)
                found99 += round(m.recall_by_family_at_p99.get(family, 0.0) * n)
            cells.append(f"{found} · {found99}")
        table.add_row(family, str(total), *cells)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo_dir", type=Path)
    parser.add_argument("--photos-list", type=Path, help="Only these photos (one name a line).")
    parser.add_argument("--originals", type=int, default=60)
    parser.add_argument("--distractors", type=int, default=75)
    parser.add_argument("--tiles", type=int, default=0)
    parser.add_argument("--more-distractors", type=Path)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--model", type=Path, help="Checkpoint (default: the bundled model).")
    parser.add_argument("--min-similarity", type=float)
    parser.add_argument("--peers", default="phash,dhash,whash,ahash,pdq")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--work", type=Path, help="Build the sets here (default: a temp dir).")
    parser.add_argument("--json-out", type=Path, help="Also write every figure here (JSON).")
    parser.add_argument("--tiny", action="store_true", help="A seconds-long smoke run.")
    args = parser.parse_args(argv)
    if args.tiny:
        for key, value in TINY.items():
            setattr(args, key, value)
    if args.json_out and args.json_out.exists():
        parser.error(f"{args.json_out} already exists")
    console = Console(highlight=False)
    names = read_photo_list(args.photos_list) if args.photos_list else None
    peers = [p for p in args.peers.split(",") if p]
    model = load_model(args.model)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs: list[list[Evaluation]] = []
    payloads = []
    with tempfile.TemporaryDirectory(prefix="lookalike-quality-") as tmp:
        work = args.work or Path(tmp)
        for seed in seeds:
            out = work / f"set-seed{seed}"
            began = time.perf_counter()
            truth = make_benchmark(
                args.photo_dir,
                out,
                originals=args.originals,
                distractors=args.distractors,
                seed=seed,
                tiles=args.tiles,
                more_distractors=args.more_distractors,
                families=args.families.split(","),
                photo_names=names,
                workers=args.workers,
            )
            built = time.perf_counter() - began
            run = [
                evaluate_model(
                    truth, model, min_similarity=args.min_similarity, workers=args.workers
                )
            ]
            run += [evaluate_hash(truth, p, workers=args.workers) for p in peers]
            runs.append(run)
            payload = evaluation_payload(run, truth, model_payload(model))
            payload["seed"], payload["build_seconds"] = seed, round(built, 1)
            payloads.append(payload)
            counts = payload["benchmark"]
            print_table(
                console,
                comparison_table(
                    run,
                    f"seed {seed}: {counts['images']:,} images, {counts['positives']:,} positive "
                    f"and {counts['negatives']:,} negative pairs (model {model.model_id})",
                ),
            )
            if len(seeds) == 1:
                print_table(console, families_table(run))
    if len(seeds) > 1:
        print_table(console, summary_table(runs))
        print_table(console, family_counts(runs))
    if args.json_out:
        write_results(
            args.json_out,
            "quality.py",
            argv,
            {
                "runs": payloads,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
