"""Checkpoints: save, read and load models (the bundled default among them)."""

from __future__ import annotations

import io as _bytes_io
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from lookalike.errors import LookalikeError
from lookalike.model.core import Calibration, Model
from lookalike.model.detail import DETAIL_SIDE, DetailGate
from lookalike.model.network import Encoder, EncoderConfig
from lookalike.model.preprocess import Preprocess
from lookalike.verify import (
    VerifyConfig,
)

CHECKPOINT_FORMAT = 1
"""Version of the checkpoint file layout; other versions are refused."""

DEFAULT_CHECKPOINT = Path(__file__).parent.parent / "models" / "default.pt"


class CheckpointError(LookalikeError):
    """A checkpoint that is missing, corrupt or of an unknown format."""


def save_model(model: Model, path: str | os.PathLike[str], **extra: Any) -> Path:
    """Write a checkpoint: weights, architecture, preprocessing, calibration, id, format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.encoder.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "kind": "lookalike-siamese",
        "model_id": model.model_id,
        "encoder": asdict(model.encoder.config),
        "preprocess": asdict(model.preprocess),
        "calibration": asdict(model.calibration),
        "meta": model.meta,
        "verify": asdict(model.verify) if model.verify else None,
        **({"detail": asdict(model.detail)} if model.detail is not None else {}),
        "state_dict": state,
        **extra,
    }
    buffer = _bytes_io.BytesIO()
    torch.save(payload, buffer)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint file's raw contents, checking its kind and format version."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint file there")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("kind") != "lookalike-siamese":
        raise CheckpointError(f"{path}: not a lookalike checkpoint")
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format {payload.get('format')!r} is not supported "
            f"(this lookalike reads format {CHECKPOINT_FORMAT})"
        )
    return payload


def model_from_payload(payload: dict[str, Any]) -> Model:
    """Build a Model from a checkpoint's contents."""
    try:
        enc = payload["encoder"]
        config = EncoderConfig(
            **{**enc, "widths": tuple(enc["widths"]), "depths": tuple(enc["depths"])}
        )
        encoder = Encoder(config)
        encoder.load_state_dict(payload["state_dict"])
        return Model(
            encoder=encoder,
            preprocess=Preprocess(**payload["preprocess"]),
            calibration=Calibration(**payload["calibration"]),
            model_id=str(payload["model_id"]),
            meta=dict(payload.get("meta", {})),
            verify=VerifyConfig.from_dict(payload["verify"]) if payload.get("verify") else None,
            detail=_detail_gate(payload.get("detail")),
        )
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint contents do not match the architecture: {exc}") from None


def _detail_gate(stored: Any) -> DetailGate | None:
    if not stored:
        return None
    return DetailGate(
        weights=tuple(float(w) for w in stored["weights"]),
        min_detail=float(stored["min_detail"]),
        method=str(stored.get("method", "")),
        side=int(stored.get("side", DETAIL_SIDE)),  # (gates saved before `side` existed: 64 px)
        clear_detail=None if stored.get("clear_detail") is None else float(stored["clear_detail"]),
    )


def load_model(path: str | os.PathLike[str] | None = None) -> Model:
    """Load a checkpoint; with no path, the default model bundled with lookalike."""
    if path is None:
        path = DEFAULT_CHECKPOINT
        if not path.is_file():
            raise CheckpointError(
                "the bundled default model is missing from this install; "
                "pass --model PATH (a checkpoint made by `lookalike train`)"
            )
    return model_from_payload(read_checkpoint(path))


def new_model(
    config: EncoderConfig | None = None,
    preprocess: Preprocess | None = None,
    seed: int = 0,
    model_id: str = "untrained",
) -> Model:
    """A freshly initialised model (random weights, seeded)."""
    torch.manual_seed(seed)
    return Model(Encoder(config or EncoderConfig()), preprocess or Preprocess(), model_id=model_id)
