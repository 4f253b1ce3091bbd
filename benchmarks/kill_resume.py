"""kill -9 during verification, at scale: what a killed scan keeps and what its rerun gives.

    python benchmarks/kill_resume.py runs/k100/images --at 0.5 --json-out results/kill-resume.json

Scans the folder three ways with the bundled model (or `--model`), each into a new index
under the folder's parent: (1) `lookalike scan` as a separate process, SIGKILLed (with
its decode workers) once the index holds `--at` of the pairs an uninterrupted scan
verifies; (2) the same scan run again on that index, to the end; (3) an uninterrupted
scan into a fresh index. Prints the pairs stored at the kill, the pairs the rerun verified
(an uninterrupted scan's minus those stored: nothing stored is verified twice, and what
was lost is the chunk in progress), and whether the rerun's groups and pairs equal the
uninterrupted scan's. The first run needs the pair count, so the uninterrupted scan runs
first.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from _common import write_results  # type: ignore[import-not-found]

from lookalike.candidates import CHUNK
from lookalike.model import load_model
from lookalike.records import ScanProgress, ScanResult
from lookalike.scan import scan_folder


def _verified(index: Path) -> int:
    try:
        with sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=30) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM verified").fetchone()[0])
    except sqlite3.Error:  # not created yet
        return 0


def _scan(images: Path, index: Path, model_path: Path | None) -> tuple[ScanResult, int, float]:
    """(result, pairs verified by this run, seconds)."""
    fresh = [0]

    def note(progress: ScanProgress) -> None:
        if progress.stage == "verify" and progress.total is not None:
            fresh[0] = max(fresh[0], progress.total)

    started = time.perf_counter()
    result = scan_folder([images], index, model=load_model(model_path), on_progress=note)
    return result, fresh[0], time.perf_counter() - started


def _seen(result: ScanResult) -> tuple[list[tuple[str, str, float]], list[list[str]]]:
    pairs = sorted((str(p.a), str(p.b), round(p.similarity, 9)) for p in result.pairs)
    groups = sorted(sorted(str(m.path) for m in g.members) for g in result.groups)
    return pairs, groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path)
    parser.add_argument("--at", type=float, default=0.5, help="Share of the pairs stored.")
    parser.add_argument("--model", type=Path, help="Checkpoint (default: the bundled model).")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    work = args.images.parent
    stamp = time.strftime("%Y%m%d-%H%M%S")
    whole_index, killed_index = (
        work / f"whole-{stamp}.lookalike",
        work / f"killed-{stamp}.lookalike",
    )

    whole, verified_once, whole_seconds = _scan(args.images, whole_index, args.model)
    print(
        f"uninterrupted: {whole_seconds:.1f} s, {verified_once:,} pairs verified, "
        f"{len(whole.groups):,} groups, {len(whole.pairs):,} pairs"
    )

    command = [
        sys.executable,
        "-m",
        "lookalike",
        "scan",
        str(args.images),
        "--index",
        str(killed_index),
        "--json",
    ]
    if args.model:
        command += ["--model", str(args.model)]
    began = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    target = int(args.at * verified_once)
    while process.poll() is None and _verified(killed_index) < target:
        time.sleep(0.05)
    if process.poll() is not None:
        raise SystemExit("the scan finished before it could be killed; use a smaller --at")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_after = time.perf_counter() - began
    stored = _verified(killed_index)
    print(
        f"killed after {killed_after:.1f} s with {stored:,} verified pairs stored "
        f"({stored / max(verified_once, 1):.0%}; chunks of {CHUNK:,})"
    )

    resumed, verified_again, resumed_seconds = _scan(args.images, killed_index, args.model)
    same = _seen(resumed) == _seen(whole)
    print(
        f"rerun: {resumed_seconds:.1f} s, {verified_again:,} pairs verified "
        f"(uninterrupted {verified_once:,} - stored {stored:,} = {verified_once - stored:,}); "
        f"groups and pairs {'the same' if same else 'DIFFERENT'} as uninterrupted"
    )
    if args.json_out:
        write_results(
            args.json_out,
            "kill_resume.py",
            argv,
            {
                "model": load_model(args.model).model_id,
                "images": whole.stats.images,
                "chunk": CHUNK,
                "uninterrupted": {
                    "seconds": round(whole_seconds, 1),
                    "verified": verified_once,
                    "groups": len(whole.groups),
                    "pairs": len(whole.pairs),
                },
                "killed": {"after_seconds": round(killed_after, 1), "stored": stored},
                "rerun": {
                    "seconds": round(resumed_seconds, 1),
                    "verified": verified_again,
                    "groups": len(resumed.groups),
                    "pairs": len(resumed.pairs),
                },
                "verified_twice": verified_again - (verified_once - stored),
                "same_groups_and_pairs": same,
            },
        )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
