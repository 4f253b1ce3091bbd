"""Golden outputs: prove a refactor changes no behaviour, by running two revisions.

    python scripts/golden.py OUT.json                 # this checkout's outputs
    python scripts/golden.py --compare REV [REV2]     # REV against REV2 (default: here)

Runs the command line only (so any revision answers), in a fresh folder: the demo folder
is scanned (`scan --json`: pairs, groups, keepers, shots), a small benchmark made from its
photos is evaluated (`evaluate --json`), two halves of it are checked for leaks (`leaks
--json`), and the scan's duplicates are quarantined (the manifest, read back). Timings,
memory and the folder's own path are masked; everything else must be equal. A revision
other than this checkout runs from a `git worktree` in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STAMP = re.compile(r"manifest-[0-9]{8}-[0-9]{6}")
MEASURED = {
    "seconds",
    "images_per_s",
    "cpu_util",
    "peak_rss_mb",
    "cpu_seconds",
    "scoring_seconds",
    "seconds_per_image",
    "embedded",
}


def _mask(value: Any, work: str) -> Any:
    """Timings and memory as "<measured>"; the work folder's path and manifest times out."""
    if isinstance(value, dict):
        return {
            _mask(k, work): "<measured>" if k in MEASURED else _mask(v, work)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask(v, work) for v in value]
    if isinstance(value, str):
        return STAMP.sub("manifest-<time>", value.replace(work, "<work>"))
    return value


def outputs(src: Path) -> dict[str, Any]:
    """The masked outputs of the revision whose package sources are in `src`."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(src)}

        def run(*args: str, codes: tuple[int, ...] = (0,)) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "lookalike", *args],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if done.returncode not in codes:
                raise SystemExit(f"lookalike {' '.join(args)}: {done.returncode}\n{done.stderr}")
            return done.stdout

        found: dict[str, Any] = {}
        run("demo", str(work / "demo"))
        photos = work / "demo" / "photos"
        index = str(work / "a.db")
        found["scan"] = json.loads(run("scan", str(photos), "--index", index, "--json"))
        run(
            "make-benchmark",
            str(photos),
            str(work / "bench"),
            "--originals",
            "4",
            "--distractors",
            "4",
            "--tiles",
            "2",
            "--families",
            "jpeg,crop,flip,overlay",
            "--seed",
            "1",
            "--workers",
            "1",
        )
        found["evaluate"] = json.loads(
            run("evaluate", str(work / "bench"), "--peers", "phash", "--json", "--workers", "1")
        )
        images = sorted((work / "bench" / "images").iterdir())
        for k, image in enumerate(images):
            half = work / "splits" / ("train" if k % 2 else "test")
            half.mkdir(parents=True, exist_ok=True)
            shutil.copy2(image, half / image.name)
        found["leaks"] = json.loads(
            run(
                "leaks",
                str(work / "splits" / "train"),
                str(work / "splits" / "test"),
                "--json",
                codes=(0, 1),
            )
        )
        moved = json.loads(run("quarantine", index, "--to", str(work / "q"), "--json"))
        manifest = Path(moved["manifest"]) if moved["manifest"] else None
        found["quarantine"] = moved
        found["manifest"] = (
            [json.loads(line) for line in manifest.read_text().splitlines()] if manifest else []
        )
        return _mask(found, str(work))


def _at(revision: str, tmp: Path) -> Path:
    """The package sources of a revision, checked out in `tmp`."""
    tree = tmp / revision.replace("/", "_")
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), revision],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return tree / "src"


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only in one" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += _differences(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for k, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _differences(x, y, f"{where}[{k}]")
        ]
    return [] if a == b else [f"{where}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path)
    parser.add_argument("--compare", nargs="+", metavar="REV")
    args = parser.parse_args()
    if not args.compare:
        if args.out is None:
            parser.error("give OUT.json or --compare REV")
        args.out.write_text(json.dumps(outputs(ROOT / "src"), indent=1) + "\n")
        return
    with tempfile.TemporaryDirectory() as tmp:
        trees = [_at(rev, Path(tmp)) for rev in args.compare]
        try:
            first = outputs(trees[0])
            second = outputs(trees[1] if len(trees) > 1 else ROOT / "src")
        finally:
            for tree in trees:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(tree.parent)],
                    cwd=ROOT,
                    capture_output=True,
                )
    found = _differences(first, second)
    for line in found:
        print(line)
    print(f"{len(found)} differences" if found else "identical outputs")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
