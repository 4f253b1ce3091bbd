"""The decision rule's scales, their mappings, which pairs are ambiguous, and the decision.

Two scales, both in [0, 1], higher = more alike:

- *CNN similarity*: (1 + cosine) / 2 of two L2-normalised embeddings. The verification
  band (`VerifyConfig.min_cnn_similarity`, `confident_cnn_similarity`) is on it.
- *similarity*: what a pair is finally scored, the CNN similarity or, for a verified
  pair, its fusion with the local-feature evidence (`verify.fuse_similarity`). The
  calibrated cut-off `min_similarity` is on it: `decide`.

Searches run on cosine, so CNN cut-offs go through `cosine_from_cnn_similarity`.

>>> cnn_similarity_from_cosine(0.8), cosine_from_cnn_similarity(0.9)
(0.9, 0.8)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

from lookalike.verify import VerifyConfig

if TYPE_CHECKING:
    import torch

IDENTICAL = 1.0 - 1e-6
"""At or above this CNN similarity two pictures are the same to the network: nothing to
verify."""

Scores = TypeVar("Scores", float, np.ndarray, "torch.Tensor")


def cnn_similarity_from_cosine(cosine: Scores) -> Scores:
    """Cosine in [-1, 1] -> CNN similarity in [0, 1] (rounding never leaves the range).

    Also takes torch tensors (Grad-CAM and training differentiate it).
    """
    if isinstance(cosine, float | int):
        return min(1.0, max(0.0, (1.0 + float(cosine)) / 2.0))
    if isinstance(cosine, np.ndarray):
        return np.clip((1.0 + cosine) / 2.0, 0.0, 1.0)
    return ((1.0 + cosine) / 2.0).clamp(0.0, 1.0)  # a torch tensor: stays differentiable


def cosine_from_cnn_similarity(similarity: float) -> float:
    """The cosine a search needs to find every pair at or above this CNN similarity."""
    return 2.0 * float(similarity) - 1.0


def is_ambiguous(similarity: float | np.ndarray, config: VerifyConfig | None) -> bool | np.ndarray:
    """Which CNN similarities are ambiguous: at or above the candidate cut-off, below the
    confident one, and not identical (a bool, or a bool array for an array)."""
    if isinstance(similarity, np.ndarray):
        if config is None:
            return np.zeros(similarity.shape, bool)
        high = min(config.confident_cnn_similarity, IDENTICAL)
        return (similarity >= config.min_cnn_similarity) & (similarity < high)
    if config is None:
        return False
    high = min(config.confident_cnn_similarity, IDENTICAL)
    return config.min_cnn_similarity <= float(similarity) < high


def decide(similarity: float | np.ndarray, min_similarity: float) -> bool | np.ndarray:
    """Duplicate or not: a pair's final similarity at or above the calibrated cut-off."""
    if isinstance(similarity, np.ndarray):
        return similarity >= min_similarity
    return float(similarity) >= min_similarity
