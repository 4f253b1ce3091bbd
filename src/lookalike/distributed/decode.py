"""The decode stage of a Ray job: files to pixels, surviving decoders that crash workers."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lookalike.embed import Prepared
from lookalike.model import Preprocess

Decode = Callable[[int, str, Preprocess], Prepared]
"""Decodes one file for the encoder, like `lookalike.embed.prepare_file`."""


class _Journal:
    """What a decode batch was doing when its worker died, kept next to the shards.

    Ray runs the batch again after a worker dies. The first retry records each file
    before decoding it, so if that retry dies too, the file it was on is known: the
    next retry makes it an error row instead of decoding it again (a file that crashes
    the decoder can never stall the job). A finished batch removes its record.
    """

    def __init__(self, folder: str, first: int) -> None:
        self.path = Path(folder) / f"batch-{first}.json"
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError):
            state = {}
        self.attempt = int(state.get("attempt", 0)) + 1
        self.poison = {int(i) for i in state.get("poison", [])}
        if state.get("current") is not None:
            self.poison.add(int(state["current"]))
        self.careful = self.attempt > 1
        self.write(None)

    def write(self, current: int | None) -> None:
        """Record the attempt, the files known to crash, and the file being decoded."""
        state = {"attempt": self.attempt, "poison": sorted(self.poison), "current": current}
        with contextlib.suppress(OSError):  # no record: Ray still retries, only less wisely
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(self.path.name + ".partial")
            partial.write_text(json.dumps(state))
            partial.replace(self.path)

    def done(self) -> None:
        """The batch finished: forget it."""
        self.path.unlink(missing_ok=True)


CRASHED = "the decoder crashed on this file (its worker died twice)"


def _decode_batch(
    batch: dict[str, np.ndarray], preprocess: Preprocess, decode: Decode, journal: str
) -> dict[str, np.ndarray]:
    """Decode a batch of files; a file that cannot be read becomes an error, never a raise."""
    n = len(batch["index"])
    side = preprocess.input_size
    pixels = np.zeros((n, side, side, 3), dtype=np.uint8)
    width = np.zeros(n, dtype=np.int32)
    height = np.zeros(n, dtype=np.int32)
    errors: list[str] = []
    record = _Journal(journal, int(batch["index"][0]))
    for k, (index, path) in enumerate(zip(batch["index"].tolist(), batch["path"], strict=True)):
        if index in record.poison:
            errors.append(CRASHED)
            continue
        if record.careful:
            record.write(index)
        try:
            prepared = decode(index, str(path), preprocess)
        except Exception as exc:  # a decoder bug must not end the job
            prepared = Prepared(index, None, error=f"unexpected decoder failure ({exc!r})")
        if prepared.pixels is None:
            errors.append(prepared.error or "unreadable")
        else:
            pixels[k], width[k], height[k] = prepared.pixels, prepared.width, prepared.height
            errors.append("")
    record.done()
    return {
        "index": batch["index"],
        "path": batch["path"],
        "pixels": pixels,
        "width": width,
        "height": height,
        "error": np.array(errors, dtype=object),
    }
