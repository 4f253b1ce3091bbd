"""Grad-CAM for a pair: which regions of each image drive the pair's similarity.

>>> from lookalike import explain_pair
>>> explanation = explain_pair("photo.jpg", "crop.jpg")
>>> explanation.similarity, explanation.heatmap_a.shape  # (height, width) of photo.jpg
>>> panel(explanation).save("why.png")

Both images go through the shared encoder in one batch with gradients on; a *target*
(by default the pair's similarity, (1 + cosine) / 2) is backpropagated once, hooks on the
encoder's last convolutional block catch its feature maps and their gradients, and each
twin's maps are weighted by their spatially pooled gradients (Grad-CAM) or by Grad-CAM++'s
positive-gradient weights. Like pytorch-grad-cam, the target is a callable, so other
scores of the two embeddings can be explained the same way.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch.nn import functional as F

from lookalike.io import load_image, write_new
from lookalike.model import Model, load_model, measure_detail, prepare_image, to_tensor, trim_box
from lookalike.records import Explanation
from lookalike.score import cnn_similarity_from_cosine, decide
from lookalike.verify import (
    Matches,
    Verified,
    fuse_evidence,
    hash_counts,
    load_for_matching,
    pair_evidence,
)

MATCH_LINES = 60
"""Matched points joined by a line in a panel (evenly picked when there are more)."""

METHODS = ("gradcam", "gradcam++")
"""Ways of weighting the feature maps, for `explain_pair(method=...)`."""

Target = Callable[[torch.Tensor], torch.Tensor]
"""Maps the pair's embeddings, shape (2, D), to the scalar whose gradient is explained."""

ImageInput = str | os.PathLike[str] | Image.Image

# Below this gradient norm at the unit-length embeddings, what is left is float32 rounding
# (the target is at an extremum, e.g. the similarity of identical inputs): no heatmap.
_NO_GRADIENT = 1e-5

# Hooks go on the model's own encoder, so two explanations must not run on it at once.
_HOOKS_LOCK = threading.Lock()


def similarity_target(embeddings: torch.Tensor) -> torch.Tensor:
    """The pair's CNN similarity, as `Model.cnn_similarity` defines it (lookalike.score)."""
    return cnn_similarity_from_cosine(
        F.cosine_similarity(embeddings[0:1], embeddings[1:2]).squeeze(0)
    )


@contextmanager
def _capture(module: torch.nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Record `module`'s output on the forward pass and its gradient on the backward pass."""
    caught: dict[str, torch.Tensor] = {}

    def keep_gradient(grad: torch.Tensor) -> None:
        caught["gradients"] = grad.detach()

    def on_forward(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        caught["activations"] = output
        output.register_hook(keep_gradient)

    handle = module.register_forward_hook(on_forward)
    try:
        yield caught
    finally:
        handle.remove()


def _channel_weights(
    activations: torch.Tensor, gradients: torch.Tensor, method: str
) -> torch.Tensor:
    """(N, C, h, w) maps and gradients -> (N, C) weight of each map."""
    if method == "gradcam":
        return gradients.mean(dim=(2, 3))
    # Grad-CAM++ (Chattopadhyay et al. 2018) in its usual closed form: pixel-wise
    # coefficients from the second and third powers of the gradient.
    grad2 = gradients.pow(2)
    grad3 = grad2 * gradients
    total = activations.sum(dim=(2, 3), keepdim=True)
    alpha = grad2 / (2.0 * grad2 + total * grad3 + 1e-7)
    alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
    return (alpha * gradients.clamp(min=0)).sum(dim=(2, 3))


def pair_heatmaps(
    model: Model,
    prepared: np.ndarray,
    method: str = "gradcam",
    target: Target = similarity_target,
) -> np.ndarray:
    """Grad-CAM of both twins on prepared inputs (2, S, S, 3) -> (2, h, w) float32 in [0, 1].

    The maps are in the encoder's view (the squashed input square), at the resolution of
    the last convolutional block. A twin gets an all-zero map when no region raises the
    target, or when the target has no gradient there (identical inputs: the similarity is
    already at its maximum).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    encoder = model.encoder
    with (
        _HOOKS_LOCK,
        torch.inference_mode(False),
        torch.enable_grad(),
        _capture(encoder.last_conv) as caught,
    ):
        if encoder.training:
            raise RuntimeError("explain needs the encoder in eval mode")
        embeddings = encoder(to_tensor(prepared, model.preprocess))
        score = target(embeddings)
        if score.numel() != 1 or not score.requires_grad:
            raise ValueError("the target must map the embeddings to one differentiable number")
        score.backward(inputs=[caught["activations"], embeddings])
        activations = caught["activations"].detach()
        gradients = caught["gradients"]
        steady = torch.as_tensor(embeddings.grad).norm(dim=1) < _NO_GRADIENT
    weights = _channel_weights(activations, gradients, method)
    cams = F.relu((weights[:, :, None, None] * activations).sum(dim=1))
    peak = cams.amax(dim=(1, 2), keepdim=True)
    empty = (peak <= 0) | steady[:, None, None]
    cams = torch.where(empty, torch.zeros_like(cams), cams / peak.clamp(min=1e-30))
    return cams.numpy().astype(np.float32)


def _to_image_frame(
    heatmap: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int]
) -> np.ndarray:
    """Map a heatmap of the encoder's view back onto the image: (height, width) float32.

    `box` (left, top, right, bottom) is the part of the image the encoder saw, squashed to
    a square; the heatmap is stretched back over it and the trimmed border gets no heat.
    """
    width, height = size
    left, top, right, bottom = box
    full = np.zeros((height, width), dtype=np.float32)
    stretched = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(heatmap, dtype=np.float32))[None, None],
        size=(bottom - top, right - left),
        mode="bilinear",
        align_corners=False,
    )[0, 0]
    # Interpolation lowers the peak a little: rescale so every non-empty map reaches 1.
    peak = float(stretched.max())
    full[top:bottom, left:right] = (stretched / peak if peak > 0 else stretched).clamp(0, 1)
    return full


def _scaled_box(
    box: tuple[int, int, int, int], seen: tuple[int, int], size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A box found on a reduced decode (`seen` size), in the full image's pixels."""
    sx, sy = size[0] / seen[0], size[1] / seen[1]
    left, top, right, bottom = box
    return (
        min(size[0] - 1, round(left * sx)),
        min(size[1] - 1, round(top * sy)),
        max(1, min(size[0], round(right * sx))),
        max(1, min(size[1], round(bottom * sy))),
    )


def _open(item: ImageInput, decode_side: int) -> tuple[Image.Image, Image.Image, Path | None]:
    """(full image, the image the model sees, path) — files decoded as `Model.compare` does."""
    if isinstance(item, Image.Image):
        image = item.convert("RGB")
        return image, image, None
    path = Path(item)
    full = load_image(path)
    return full, load_image(path, min_side=decode_side), path


def explain_pair(
    a: ImageInput,
    b: ImageInput,
    model: Model | None = None,
    method: str = "gradcam",
    target: Target = similarity_target,
) -> Explanation:
    """Score a pair and show why: one heatmap per image, at that image's own size.

    `a` and `b` are image files or PIL images; `model` defaults to the bundled one.
    Similarity and decision are the ones `model.compare` gives. Raises UnreadableImage,
    ValueError for an unknown `method`.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    model = model or load_model()
    preprocess = model.preprocess
    (full_a, seen_a, path_a), (full_b, seen_b, path_b) = (
        _open(item, preprocess.decode_side) for item in (a, b)
    )
    prepared = np.stack([prepare_image(seen_a, preprocess), prepare_image(seen_b, preprocess)])
    cams = pair_heatmaps(model, prepared, method, target)
    heatmaps = [
        _to_image_frame(
            cam, _scaled_box(trim_box(seen, preprocess), seen.size, full.size), full.size
        )
        for cam, seen, full in zip(cams, (seen_a, seen_b), (full_a, full_b), strict=True)
    ]
    embeddings = model.embed_arrays(prepared)
    flat = model.flat(embeddings, np.array([measure_detail(p) for p in prepared]))
    raw, check = model.verification_prior(embeddings[:1], embeddings[1:], flat[:1] | flat[1:])
    score = float(raw[0])
    evidence = None
    if model.verify is not None and check[0]:
        # The same matching as Model.refine, on the same decodes, keeping what it found.
        config = model.verify
        seen = [
            source if isinstance(source, Image.Image) else load_for_matching(source, config)
            for source in (path_a or full_a, path_b or full_b)
        ]
        found = pair_evidence(seen[0], seen[1], model.verify)
        inliers = found.inliers if found.confirmed else 0
        matches = Matches.of([Verified(inliers, found.coverage, hash_bits=found.hash_bits)])
        scores = np.array([score])
        hashed = bool(hash_counts(scores, matches, config)[0])  # as the scan decides it
        scale = np.array([[full_a.width / seen[0].width, full_a.height / seen[0].height]])
        scale_b = np.array([[full_b.width / seen[1].width, full_b.height / seen[1].height]])
        evidence = replace(
            found,
            points_a=(found.points_a * scale).astype(np.float32),
            points_b=(found.points_b * scale_b).astype(np.float32),
            outline=None if found.outline is None else (found.outline * scale).astype(np.float32),
            hash_bits=found.hash_bits if hashed else -1,
        )
        score = float(fuse_evidence(scores, matches, config)[0])
    return Explanation(
        a=path_a,
        b=path_b,
        image_a=full_a,
        image_b=full_b,
        heatmap_a=heatmaps[0],
        heatmap_b=heatmaps[1],
        similarity=score,
        duplicate=bool(decide(score, model.min_similarity)),
        min_similarity=model.min_similarity,
        method=method,
        model=model.model_id,
        evidence=evidence,
    )


# matplotlib's "jet" (its segment data), so overlays need no plotting library.
_JET = (
    ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
)


def _colour_table(colormap: str) -> np.ndarray:
    """256 RGB colours (uint8) of a colormap: "jet" built in, others from matplotlib."""
    levels = np.linspace(0.0, 1.0, 256)
    if colormap == "jet":
        channels = [
            np.interp(levels, [x for x, _ in points], [y for _, y in points]) for points in _JET
        ]
        return np.round(np.stack(channels, axis=1) * 255).astype(np.uint8)
    try:
        import matplotlib
    except ImportError:
        raise ValueError(
            f"colormap {colormap!r} needs matplotlib (pip install 'lookalike[plots]'); "
            "'jet' is built in"
        ) from None
    try:
        table = matplotlib.colormaps[colormap](levels)[:, :3]
    except KeyError:
        raise ValueError(f"unknown colormap {colormap!r}") from None
    return np.round(table * 255).astype(np.uint8)


def overlay(
    image: Image.Image, heatmap: np.ndarray, alpha: float = 0.5, colormap: str = "jet"
) -> Image.Image:
    """The image with its heatmap blended over it in colour (same size as the image)."""
    if heatmap.shape != (image.height, image.width):
        raise ValueError(
            f"heatmap of shape {heatmap.shape} does not match the image's "
            f"{image.height}x{image.width} pixels"
        )
    levels = np.round(np.clip(heatmap, 0.0, 1.0) * 255).astype(np.uint8)
    colours = _colour_table(colormap)[levels].astype(np.float32)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    blended = (1.0 - alpha) * pixels + alpha * colours
    return Image.fromarray(np.round(blended).astype(np.uint8), "RGB")


def _tiles(image: Image.Image, heatmap: np.ndarray, height: int) -> tuple[Image.Image, ...]:
    """The image scaled to `height` pixels, and its overlay at that size."""
    size = (max(1, round(image.width * height / image.height)), height)
    small = image.resize(size, Image.Resampling.LANCZOS)
    heat = Image.fromarray(np.ascontiguousarray(heatmap, dtype=np.float32), "F")
    return small, overlay(small, np.asarray(heat.resize(size, Image.Resampling.BILINEAR)))


def decided_by(explanation: Explanation) -> str:
    """What set the similarity, in words: the verified matches or the CNN alone."""
    found = explanation.evidence
    if found is None:
        return "CNN alone (no local-feature check needed)"
    if found.confirmed:
        mirror = ", mirrored" if found.mirrored else ""
        over = f" over {round(100 * found.coverage)} % of the picture"
        return f"verified: {found.inliers} local-feature matches{over}{mirror}"
    if found.hash_bits >= 0:
        bits = found.hash_bits
        return f"CNN and perceptual hash: no local-feature match, hashes {bits} bits apart"
    if found.verdict == "content differs":
        return f"CNN alone: {found.inliers} matches, but the aligned pictures differ"
    if found.verdict == "misses the centre":
        return f"CNN alone: {found.inliers} matches, none at the centre"
    return "CNN alone: local features found no match"


def _caption(explanation: Explanation) -> str:
    """One line: similarity, decision, cut-off, what decided, method and model."""
    verdict = "duplicate" if explanation.duplicate else "not a duplicate"
    return (
        f"similarity {explanation.similarity:.4f}: {verdict} "
        f"(min_similarity {explanation.min_similarity:.4f}); {decided_by(explanation)}; "
        f"{explanation.method}, model {explanation.model}"
    )


def panel(
    explanation: Explanation, height: int = 320, gap: int = 8, heatmaps: bool = True
) -> Image.Image:
    """A | B on top, with the matched points joined and B's outline drawn in A when
    local features were checked; their Grad-CAM overlays below (unless `heatmaps` is
    False); the verdict and what decided it as a caption (one RGB image)."""
    columns = (
        _tiles(explanation.image_a, explanation.heatmap_a, height),
        _tiles(explanation.image_b, explanation.heatmap_b, height),
    )
    tiles = list(zip(*columns, strict=True))[: 2 if heatmaps else 1]
    font = ImageFont.load_default(size=max(12, height // 20))
    text = _caption(explanation) if heatmaps else decided_by(explanation)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, right, bottom = (int(v) for v in measure.textbbox((0, 0), text, font=font))
    width = max(sum(t.width for t in tiles[0]) + 3 * gap, right - left + 2 * gap)
    rows = len(tiles)
    canvas = Image.new(
        "RGB", (width, rows * height + (bottom - top) + (rows + 2) * gap), (255, 255, 255)
    )
    for r, row in enumerate(tiles):
        x = gap
        for tile in row:
            canvas.paste(tile, (x, gap + r * (height + gap)))
            x += tile.width + gap
    draw = ImageDraw.Draw(canvas)
    draw.text((gap - left, rows * height + (rows + 1) * gap - top), text, fill=(0, 0, 0), font=font)
    if explanation.evidence is not None:
        _draw_matches(draw, explanation, height, gap, tiles[0][0].width)
    return canvas


def _draw_matches(
    draw: ImageDraw.ImageDraw, explanation: Explanation, height: int, gap: int, width_a: int
) -> None:
    """On the top row: B's outline mapped into A, and lines joining matched points."""
    found = explanation.evidence
    assert found is not None
    scale_a = height / explanation.image_a.height
    scale_b = height / explanation.image_b.height
    colour = (40, 220, 60) if found.confirmed else (230, 60, 40)
    if found.outline is not None:
        corners = [(gap + x * scale_a, gap + y * scale_a) for x, y in found.outline.tolist()]
        draw.line([*corners, corners[0]], fill=(255, 210, 0), width=max(2, height // 160))
    shown = np.linspace(0, len(found.points_a) - 1, min(len(found.points_a), MATCH_LINES))
    for k in shown.astype(int).tolist():
        (xa, ya), (xb, yb) = found.points_a[k].tolist(), found.points_b[k].tolist()
        draw.line(
            (
                gap + xa * scale_a,
                gap + ya * scale_a,
                2 * gap + width_a + xb * scale_b,
                gap + yb * scale_b,
            ),
            fill=colour,
            width=1,
        )


def write_explanation(
    result: Explanation, out: str | os.PathLike[str], stems: tuple[str, str]
) -> tuple[Path, Path, Path]:
    """Save both overlays and the panel as PNGs into `out` (created if needed), never
    over an existing file: (overlay A, overlay B, panel). `stems` name the two pictures."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem_a, stem_b = stems if stems[0] != stems[1] else (f"{stems[0]}_a", f"{stems[1]}_b")

    def save(image: Image.Image, stem: str) -> Path:
        buffer = io.BytesIO()
        # Level 3 writes a 12-megapixel overlay twice as fast as the default, 18% larger.
        image.save(buffer, format="PNG", compress_level=3)
        return write_new(buffer.getvalue(), out, stem, ".png")

    return (
        save(overlay(result.image_a, result.heatmap_a), f"{stem_a}_heatmap"),
        save(overlay(result.image_b, result.heatmap_b), f"{stem_b}_heatmap"),
        save(panel(result), f"{stems[0]}_vs_{stems[1]}_explained"),
    )
