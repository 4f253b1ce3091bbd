"""lookalike: find replicated images (edited copies of one picture) with a Siamese CNN."""

from lookalike.augment import FAMILIES, apply_edit
from lookalike.io import UnreadableImage, load_image
from lookalike.model import CheckpointError, Model, load_model
from lookalike.records import Comparison

__version__ = "0.1.0"

__all__ = [
    "FAMILIES",
    "CheckpointError",
    "Comparison",
    "Model",
    "UnreadableImage",
    "__version__",
    "apply_edit",
    "load_image",
    "load_model",
]
