"""Training the Siamese encoder: pair sampling, contrastive losses and the training loop.

>>> result = train_model(photo_paths("photos"), "model.pt", TrainConfig(epochs=5))
>>> result.best_recall_at_p99
"""

from lookalike.train.batches import _PairStream as _PairStream
from lookalike.train.config import TrainConfig
from lookalike.train.data import edit_view, load_photos, photo_paths, synthetic_image
from lookalike.train.loop import EpochStats, TrainResult, train_model
from lookalike.train.loss import NegativeMemory, koleo_loss, margin_contrastive_loss, ntxent_loss
from lookalike.train.loss import _exclusion_mask as _exclusion_mask
from lookalike.train.validation import _build_val as _build_val
from lookalike.train.validation import validation_scores

__all__ = [
    "EpochStats",
    "NegativeMemory",
    "TrainConfig",
    "TrainResult",
    "edit_view",
    "koleo_loss",
    "load_photos",
    "margin_contrastive_loss",
    "ntxent_loss",
    "photo_paths",
    "synthetic_image",
    "train_model",
    "validation_scores",
]
