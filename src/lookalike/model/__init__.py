"""The model: the Siamese network, its preprocessing, the decision, and checkpoints.

    network.py     the twin network alone (EncoderConfig, Encoder)
    preprocess.py  image -> encoder input (Preprocess, trim_box, prepare_image, ...)
    core.py        Model: an encoder with its preprocessing, calibration and verification
    detail.py      how much detail a picture holds, read from its embedding (DetailGate)
    checkpoint.py  save_model, load_model (the bundled default), read_checkpoint

>>> from lookalike.model import load_model
>>> load_model().compare("a.jpg", "b.jpg").similarity
"""

from lookalike.model.checkpoint import (
    CHECKPOINT_FORMAT,
    DEFAULT_CHECKPOINT,
    CheckpointError,
    load_model,
    model_from_payload,
    new_model,
    read_checkpoint,
    save_model,
)
from lookalike.model.core import Calibration, Model, fingerprint, rule_fingerprint
from lookalike.model.detail import (
    MEASURED_SIDE,
    DetailGate,
    detail_of_pixels,
    fit_detail_gate,
    measure_detail,
)
from lookalike.model.network import Encoder, EncoderConfig
from lookalike.model.preprocess import (
    Preprocess,
    load_prepared,
    prepare_image,
    standardise,
    to_tensor,
    trim_box,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_CHECKPOINT",
    "MEASURED_SIDE",
    "Calibration",
    "CheckpointError",
    "DetailGate",
    "Encoder",
    "EncoderConfig",
    "Model",
    "Preprocess",
    "detail_of_pixels",
    "fingerprint",
    "fit_detail_gate",
    "load_model",
    "load_prepared",
    "measure_detail",
    "model_from_payload",
    "new_model",
    "prepare_image",
    "read_checkpoint",
    "rule_fingerprint",
    "save_model",
    "standardise",
    "to_tensor",
    "trim_box",
]
