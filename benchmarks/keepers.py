"""Keepers: how often each keep policy keeps the original, on benchmark sets.

    python benchmarks/keepers.py runs/bench/keep-test-s0 runs/bench/keep-test-s1 ... \
        [--work runs/keepers] [--model PATH] [--json-out FILE]

Each set (`lookalike make-benchmark`, e.g. with `--edits-per-original 4`) is scanned once
with the default settings (the index is kept in --work and reused); then the stored
pairs are grouped under every keep policy. A group counts when it holds exactly one
original; its keeper is right when it is that original. `best, file times ignored`
gives every file the same modification time: make-benchmark writes each original
before its edits, so "oldest" would otherwise favour it in a way real folders may not.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import write_results

from lookalike import scan_folder
from lookalike.evaluate import load_truth
from lookalike.index import open_index
from lookalike.model import load_model
from lookalike.scan import KEEP_POLICIES, build_groups
from lookalike.scan.stored import candidates

NO_TIMES = "best, file times ignored"


def keeper_shares(bench: Path, work: Path, model_path: Path | None) -> dict[str, Any]:
    """Scan one set (or reuse its index) and score every policy's keepers."""
    truth = load_truth(bench)
    index = work / f"{bench.name}.idx"
    result = scan_folder(bench / "images", index, model=load_model(model_path))
    originals = set(truth.originals)
    family = truth.edits
    out: dict[str, Any] = {"set": str(bench), "images": result.stats.images}
    with open_index(index) as store:
        files = candidates(store)
        pairs = store.pairs()
        cut = result.min_similarity
        timeless = {k: replace(c, mtime_ns=0) for k, c in files.items()}
        runs = {p: build_groups(files, pairs, min_similarity=cut, keep=p) for p in KEEP_POLICIES}
        runs[NO_TIMES] = build_groups(timeless, pairs, min_similarity=cut, keep="best")
        for policy, plans in runs.items():
            counted = right = 0
            wrong: Counter[str] = Counter()
            reasons: Counter[str] = Counter()
            for plan in plans:
                names = [Path(files[f].path).name for f, _ in plan.members]
                held = [n for n in names if n in originals]
                if len(held) != 1:
                    continue
                counted += 1
                keeper = Path(files[plan.keep].path).name
                reasons[plan.keep_by] += 1
                if keeper == held[0]:
                    right += 1
                else:
                    wrong[family.get(keeper, "another original's group")] += 1
            out[policy] = {
                "groups": counted,
                "original_kept": right,
                "share": round(right / counted, 4) if counted else None,
                "kept_instead": dict(wrong.most_common()),
                "reasons": dict(reasons.most_common()),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", type=Path, nargs="+")
    parser.add_argument("--work", type=Path, default=Path("runs/keepers"))
    parser.add_argument("--model", type=Path)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [keeper_shares(s, args.work, args.model) for s in args.sets]
    policies = [*KEEP_POLICIES, NO_TIMES]
    total = {
        p: (sum(r[p]["original_kept"] for r in rows), sum(r[p]["groups"] for r in rows))
        for p in policies
    }
    print(f"{'policy':26s}" + "".join(f"{Path(r['set']).name:>18s}" for r in rows) + "   all")
    for p in policies:
        cells = "".join(
            f"{r[p]['original_kept']:>10d}/{r[p]['groups']:<3d} {r[p]['share'] or 0:.2f}"
            for r in rows
        )
        kept, groups = total[p]
        print(f"{p:26s}{cells}   {kept}/{groups} = {kept / max(1, groups):.3f}")
    for p in ("best", NO_TIMES):
        wrong: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        for r in rows:
            wrong.update(r[p]["kept_instead"])
            reasons.update(r[p]["reasons"])
        print(f"{p}: kept instead of the original: {dict(wrong.most_common())}")
        print(f"{p}: reasons: {dict(reasons.most_common())}")
    if args.json_out:
        figures = {"sets": rows, "totals": {p: list(v) for p, v in total.items()}}
        write_results(args.json_out, "keepers.py", None, figures)
        print(json.dumps({"written": str(args.json_out)}))


if __name__ == "__main__":
    main()
