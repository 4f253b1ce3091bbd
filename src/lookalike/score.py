"""The one place that maps cosine <-> similarity and says which pairs need verification.

*Similarity* is in [0, 1], higher = more alike: the CNN's is (1 + cosine) / 2 of the two
L2-normalised embeddings; verification may raise it toward 1 (`verify.fuse_similarity`).
Searches run on cosine, so cut-offs given as similarities go through `cosine_from_similarity`.

>>> similarity_from_cosine(0.8), cosine_from_similarity(0.9)
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


def similarity_from_cosine(cosine: Scores) -> Scores:
    """Cosine in [-1, 1] -> similarity in [0, 1] (rounding never leaves the range).

    Also takes torch tensors (Grad-CAM and training differentiate it).
    """
    if isinstance(cosine, float | int):
        return min(1.0, max(0.0, (1.0 + float(cosine)) / 2.0))
    if isinstance(cosine, np.ndarray):
        return np.clip((1.0 + cosine) / 2.0, 0.0, 1.0)
    return ((1.0 + cosine) / 2.0).clamp(0.0, 1.0)  # a torch tensor: stays differentiable


def cosine_from_similarity(similarity: float) -> float:
    """The cosine a search needs to find every pair at or above this similarity."""
    return 2.0 * float(similarity) - 1.0


def needs_verification(
    similarity: float | np.ndarray, config: VerifyConfig | None
) -> bool | np.ndarray:
    """Which CNN similarities are ambiguous: at or above the candidate cut-off, below the
    confident one, and not identical (a bool, or a bool array for an array)."""
    if isinstance(similarity, np.ndarray):
        if config is None:
            return np.zeros(similarity.shape, bool)
        high = min(config.confident_similarity, IDENTICAL)
        return (similarity >= config.candidate_min_similarity) & (similarity < high)
    if config is None:
        return False
    high = min(config.confident_similarity, IDENTICAL)
    return config.candidate_min_similarity <= float(similarity) < high
