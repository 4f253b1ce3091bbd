"""Where an image's time goes: each step of lookalike's embedding path beside pHash, on one core.

    python benchmarks/steps.py '/work/shared/photos/*.jpg'
    python benchmarks/steps.py '/tmp/s5k/images/*/*' --limit 1000

Prints milliseconds per image for: decoding at reduced size, preparation (border trim and
resize), standardisation, the network (ONNX Runtime on one thread when installed, else
PyTorch, in batches), and, for comparison, pHash as the other benchmarks run it
(`lookalike.evaluate.peers.hash_files`: full decode with EXIF orientation, imagehash)
and a plain full decode. Everything runs in this process on one core, one step at a
time, so the figures add up; the scan itself runs the steps in one process per core.
"""

from __future__ import annotations

import argparse
import glob
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import write_results  # type: ignore[import-not-found]
from PIL import Image

from lookalike.evaluate.peers import hash_files
from lookalike.io import UnreadableImage, open_image
from lookalike.model import load_model, prepare_image, standardise
from lookalike.runtime import OnnxEncoder, onnx_available

BATCH = 64


def _per_image(count: int, work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    return (time.perf_counter() - started) / count * 1e3, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pattern", help="A glob of image files (quote it).")
    parser.add_argument("--limit", type=int, default=1000, help="At most this many files.")
    parser.add_argument("--model", help="Checkpoint (default: the bundled model).")
    parser.add_argument("--json-out", help="Also write the figures here.")
    args = parser.parse_args()
    paths = sorted(glob.glob(args.pattern))[: args.limit]
    if not paths:
        parser.error(f"no files match {args.pattern}")
    torch.set_num_threads(1)
    model = load_model(args.model)
    pre = model.preprocess
    readable = []
    for path in paths:  # also fills the page cache
        try:
            open_image(path)
            readable.append(path)
        except UnreadableImage:
            pass
    skipped, paths = len(paths) - len(readable), readable
    if not paths:
        parser.error("no readable images")
    n = len(paths)

    ms: dict[str, float] = {}
    ms["decode (reduced size)"], decoded = _per_image(
        n, lambda: [open_image(p, min_side=pre.decode_side).image for p in paths]
    )
    ms["trim + resize"], prepared = _per_image(
        n, lambda: np.stack([prepare_image(im, pre) for im in decoded])
    )
    batches = [prepared[i : i + BATCH] for i in range(0, n, BATCH)]
    # Each batch's input is dropped before the next, as in a scan (keeping them all would
    # time the page faults of fresh memory instead).
    ms["standardise"], _ = _per_image(n, lambda: [standardise(b, pre).shape for b in batches])
    inputs = [standardise(b, pre) for b in batches]
    if onnx_available():
        network = OnnxEncoder(model.onnx_bytes(), threads=1)
        network(inputs[0])  # warm-up
        ms["network (ONNX Runtime, 1 thread)"], _ = _per_image(
            n, lambda: [network(x) for x in inputs]
        )
    else:
        model.embed_arrays(batches[0])
        ms["network (PyTorch, 1 thread)"], _ = _per_image(
            n, lambda: [model.embed_arrays(b) for b in batches]
        )
    ours = sum(ms.values())

    def full_decode() -> None:
        for p in paths:
            with Image.open(p) as image:
                image.load()

    ms["pHash (imagehash, from the file)"], _ = _per_image(
        n, lambda: hash_files(paths, "phash", workers=1)
    )
    ms["full decode (PIL)"], _ = _per_image(n, full_decode)

    print(f"{n} files matching {args.pattern}; milliseconds per image on one core")
    if skipped:
        print(f"  ({skipped} unreadable file(s) left out)")
    for name, value in ms.items():
        print(f"  {name:<36} {value:7.3f}")
    print(f"  {'lookalike, sum of its steps':<36} {ours:7.3f}")
    print(f"pHash ÷ lookalike per image: {ms['pHash (imagehash, from the file)'] / ours:.2f}")
    if args.json_out:
        write_results(Path(args.json_out), "steps.py", None, {"files": n, "ms_per_image": ms})


if __name__ == "__main__":
    main()
