"""How much detail a picture holds, read from its embedding: near-flat pictures (a patch of
sky, a bare wall) all embed alike, so the CNN cannot tell two of them apart and must not
call them copies on its own word.

A picture's *detail* is the mean absolute difference of neighbouring grey levels (0–1)
of its encoder input shrunk to `side` × `side` (`detail_of_pixels`): at 64 px a clear
sky ~0.002, a photo's median ~0.06. At 16 px it reads structure rather than texture: a
tile of one wall or one lawn has grain but no shapes, and the CNN embeds such tiles
alike as it does skies. A linear read-out of the embedding predicts its logarithm
(`fit_detail_gate`, ridge regression on training pictures), so every scorer of
embeddings — scan, evaluation, leak checks, search — knows it without storing anything
more. `Model.cnn_similarity` scores a pair 0 when either picture's predicted detail is
below `DetailGate.min_detail`.

A read-out fitted on photos can misread other pictures (drawn shapes on a gradient read
as flat at 16 px). So embedders also measure each picture's detail at `MEASURED_SIDE`
from the pixels they already hold, and a gate with `clear_detail` lets that measure
overrule the read-out: a picture measured at least that detailed is never flat. Where
no measure is known (an index from before, a bare vector), the read-out decides alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from lookalike.verify.matching import neighbour_difference

DETAIL_SIDE = 64
"""Side of the grey picture detail is measured on, unless a gate says otherwise."""

MEASURED_SIDE = 16
"""Side of the grey picture embedders measure each picture's detail on."""


@dataclass(frozen=True)
class DetailGate:
    """A linear read-out of log detail from an embedding, and the least detail a picture
    needs for the CNN to vouch for it."""

    weights: tuple[float, ...]
    """D weights, then the bias: log(detail + 1e-4) ≈ vector · weights[:-1] + weights[-1]."""
    min_detail: float = 0.015
    method: str = ""
    side: int = DETAIL_SIDE
    """Side of the grey picture the detail was measured on when the read-out was fitted."""
    clear_detail: float | None = None
    """Detail measured at `MEASURED_SIDE` from which a picture is never flat (None: the
    read-out alone decides)."""

    def detail(self, vectors: np.ndarray) -> np.ndarray:
        """Predicted detail of each embedding row (N,)."""
        vectors = np.atleast_2d(vectors)
        w = np.asarray(self.weights, dtype=np.float64)
        parts = [  # in float64, a block at a time: a million rows are 1 GB in float64
            np.asarray(vectors[start : start + 65536], dtype=np.float64) @ w[:-1]
            for start in range(0, len(vectors), 65536)
        ]
        logs = np.concatenate(parts) if parts else np.zeros(0)
        return np.exp(logs + w[-1]) - 1e-4

    def flat(self, vectors: np.ndarray, measured: np.ndarray | None = None) -> np.ndarray:
        """Rows too flat for the CNN to vouch for (N,) bool; `measured` (N,) holds each
        picture's measured detail (`measure_detail`), NaN where not known."""
        flat = self.detail(vectors) < self.min_detail
        if measured is not None and self.clear_detail is not None:
            clear = np.asarray(measured, dtype=np.float64) >= self.clear_detail  # NaN: False
            flat &= ~clear
        return np.asarray(flat)


def detail_of_pixels(pixels: np.ndarray, side: int = DETAIL_SIDE) -> float:
    """Detail of one prepared encoder input (uint8 HWC RGB): mean absolute difference of
    neighbouring grey levels at `side` × `side`, both directions summed."""
    grey = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).convert("L")
    return neighbour_difference(np.asarray(grey.resize((side, side), Image.Resampling.BOX)))


def measure_detail(pixels: np.ndarray) -> float:
    """The detail embedders keep beside a picture's vector (at `MEASURED_SIDE`)."""
    return detail_of_pixels(pixels, MEASURED_SIDE)


def fit_detail_gate(
    vectors: np.ndarray,
    details: np.ndarray,
    min_detail: float = 0.015,
    ridge: float = 1.0,
    method: str = "",
    side: int = DETAIL_SIDE,
) -> DetailGate:
    """Ridge regression of log detail (measured at `side` px) on the embeddings (N, D) of
    training pictures."""
    x = np.hstack([np.asarray(vectors, dtype=np.float64), np.ones((len(vectors), 1))])
    y = np.log(np.asarray(details, dtype=np.float64) + 1e-4)
    w = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y)
    return DetailGate(tuple(float(v) for v in w), float(min_detail), method, int(side))
