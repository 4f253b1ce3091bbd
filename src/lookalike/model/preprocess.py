"""How an image becomes the encoder input: decode, trim uniform borders, squash, standardise."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter

from lookalike.io import load_image


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the encoder's input (stored in every checkpoint).

    The picture is decoded at reduced size, uniform borders are trimmed, it is squashed
    to `input_size` square and standardised by its own mean and spread, so brightness and
    contrast changes barely move it.
    """

    input_size: int = 128
    trim_borders: bool = True
    trim_tolerance: int = 12
    trim_canvas: bool = False
    """Also trim a smooth canvas (a gradient or an even grain) around a pasted picture, not
    just a uniform border (`canvas_box`)."""
    min_spread: float = 0.04
    decode_min_side: int = 0
    """Shortest side JPEGs are decoded at (reduced-size decoding); 0 = `input_size`."""

    @property
    def decode_side(self) -> int:
        """The side passed to `load_image(min_side=...)` when preparing encoder input."""
        return self.decode_min_side or self.input_size


def _trim_box(arr: np.ndarray, tolerance: int) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box inside a uniform border; the whole image if none."""
    h, w = arr.shape[:2]
    whole = (0, 0, w, h)
    if h < 8 or w < 8:
        return whole
    ring = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    # Twice the median is an integer (medians may end in .5), so the test stays exact in int16;
    # a per-channel maximum is far faster than a reduction over the short colour axis.
    twice = np.round(2 * np.median(ring, axis=0)).astype(np.int16)

    def off_colour(pixels: np.ndarray) -> np.ndarray:
        gap = np.abs(2 * pixels.astype(np.int16) - twice)
        return np.maximum(np.maximum(gap[..., 0], gap[..., 1]), gap[..., 2]) > 2 * tolerance

    # Most pictures have no border: when all four edges differ from the ring's colour
    # the box below would be the whole image, so skip the full pass (same result).
    if all(off_colour(edge).mean() > 0.02 for edge in (arr[0], arr[-1], arr[:, 0], arr[:, -1])):
        return whole
    differs = off_colour(arr)
    rows = np.flatnonzero(differs.mean(axis=1) > 0.02)
    cols = np.flatnonzero(differs.mean(axis=0) > 0.02)
    if rows.size == 0 or cols.size == 0:
        return whole
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if (bottom - top) < 8 or (right - left) < 8:
        return whole
    if (bottom - top) * (right - left) > 0.97 * h * w:
        return whole
    return int(left), int(top), int(right), int(bottom)


CANVAS_RADIUS = 3
"""Half the side of the box blur that evens out a grainy canvas before it is modelled."""

CANVAS_MIN_SIDE = 64
"""Smaller pictures keep their canvas: at 32 px a blur and a ramp fitted along 21 px see
shapes of the picture as canvas (on the 32-px calibrate set 94 of 4,663 pictures, most of
them not on a canvas at all, were trimmed, and copies were lost)."""


def _smoothed_edge(strip: np.ndarray, radius: int) -> np.ndarray:
    """An image edge (N, 3) float32 from the outermost rows of it (depth, N, 3): their mean,
    then a moving mean over 2 x radius + 1 along the edge."""
    line = strip.mean(axis=0, dtype=np.float32)
    summed = np.cumsum(np.pad(line, ((radius + 1, radius), (0, 0)), mode="edge"), axis=0)
    return np.asarray((summed[2 * radius + 1 :] - summed[: -2 * radius - 1]) / (2 * radius + 1))


def _straight_edge(line: np.ndarray, tolerance: int) -> np.ndarray | None:
    """The least-squares straight colour ramp (N, 3) along an edge, or None when more than
    5 % of the edge strays from it by more than `tolerance` in some channel."""
    t = np.linspace(-1.0, 1.0, len(line), dtype=np.float32)[:, None]
    mean = line.mean(axis=0)
    ramp = mean + t * ((t * (line - mean)).sum(axis=0) / (t * t).sum())
    strays = np.abs(line - ramp).max(axis=1) > tolerance
    return ramp if strays.mean() <= 0.05 else None


def canvas_box(
    image: Image.Image, tolerance: int, radius: int = CANVAS_RADIUS
) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box of a picture pasted inside a smooth canvas (a flat
    colour, a linear gradient or an even grain), or the whole image if there is none.

    Each edge of the image, evened out, must be a straight colour ramp; the canvas is then
    modelled by blending the four ramps across the image (a Coons patch: exact for flat
    colours and linear gradients), and the box holds what differs from it by more than
    `tolerance` once blurred. Only a large rectangle counts (each side at least a fifth of
    the image, at most 90 % of its area, differing along most of its outline, with contrast
    inside): a cloud in a clear sky or a blotch on a wall is not a pasted picture.
    """
    image = image if image.mode == "RGB" else image.convert("RGB")
    arr = np.asarray(image)
    h, w = arr.shape[:2]
    whole = (0, 0, w, h)
    if min(h, w) < CANVAS_MIN_SIDE:
        return whole
    ramps = []
    for strip in (arr[:2], arr[-2:], arr[:, :2].transpose(1, 0, 2), arr[:, -2:].transpose(1, 0, 2)):
        ramp = _straight_edge(_smoothed_edge(strip, 3 * radius + 1), tolerance)
        if ramp is None:  # most photos leave here, after one or two edges
            return whole
        ramps.append(ramp)
    top, bottom, left, right = ramps
    u = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
    v = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    corners = (1 - u) * (1 - v) * top[0] + u * (1 - v) * top[-1]
    corners = corners + (1 - u) * v * bottom[0] + u * v * bottom[-1]
    canvas = (1 - v) * top + v * bottom + (1 - u) * left[:, None] + u * right[:, None] - corners
    blurred = np.asarray(image.filter(ImageFilter.BoxBlur(radius)), np.float32)
    differs = np.abs(blurred - canvas).max(axis=2) > tolerance
    # The edges are canvas (tested above); the blur, short of neighbours there, is not.
    differs[:radius], differs[-radius:], differs[:, :radius], differs[:, -radius:] = (False,) * 4
    # A pasted picture fills at least a fifth of the rows it crosses; a grain's blotches
    # that the blur leaves do not.
    rows = np.flatnonzero(differs.mean(axis=1) > 0.1)
    cols = np.flatnonzero(differs.mean(axis=0) > 0.1)
    if rows.size == 0 or cols.size == 0:
        return whole
    top_, bottom_, left_, right_ = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    height, width = bottom_ - top_, right_ - left_
    if height < 0.2 * h or width < 0.2 * w or height * width > 0.9 * h * w:
        return whole
    inside, k = differs[top_:bottom_, left_:right_], radius + 1
    outline = (
        inside[:k].max(axis=0).mean(),
        inside[-k:].max(axis=0).mean(),
        inside[:, :k].max(axis=1).mean(),
        inside[:, -k:].max(axis=1).mean(),
    )
    if min(outline) < 0.6:
        return whole
    # A picture has contrast; a blotch of a near-flat wall or sky (grey spread 3-15 levels
    # on the calibrate sets, pasted pictures 24 and more) is no picture.
    if arr[top_:bottom_, left_:right_].mean(axis=2).std() < 1.5 * tolerance:
        return whole
    s = radius - 1  # the blur spreads the picture's edge outwards
    return int(left_ + s), int(top_ + s), int(right_ - s), int(bottom_ - s)


def trim_box(image: Image.Image, preprocess: Preprocess) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) part of `image` that `prepare_image` squashes to input.

    Explanations map the encoder's view back onto the image with it.
    """
    if not preprocess.trim_borders:
        return (0, 0, image.width, image.height)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    box = _trim_box(np.asarray(rgb), preprocess.trim_tolerance)
    if preprocess.trim_canvas and box == (0, 0, image.width, image.height):
        box = canvas_box(rgb, preprocess.trim_tolerance)
    return box


def prepare_image(image: Image.Image, preprocess: Preprocess) -> np.ndarray:
    """An RGB PIL image -> the encoder's uint8 input, `input_size` square, HWC."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if preprocess.trim_borders:
        box = trim_box(image, preprocess)
        if box != (0, 0, image.width, image.height):
            image = image.crop(box)  # the same pixels as slicing the array, and no copy back
    size = preprocess.input_size
    resized = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(resized, dtype=np.uint8)


def load_prepared(path: str | os.PathLike[str], preprocess: Preprocess) -> np.ndarray:
    """Decode a file at reduced size and prepare it for the encoder (raises UnreadableImage)."""
    return prepare_image(load_image(path, min_side=preprocess.decode_side), preprocess)


def _statistics(pixels: np.ndarray, preprocess: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """Each image's mean and sample standard deviation (at least `min_spread`), 0-255 scale."""
    flat = pixels.reshape(len(pixels), -1)
    count = flat.shape[1]
    # Exact integer sums: much faster than torch's std on one thread, and more precise.
    total = flat.sum(axis=1, dtype=np.int64).astype(np.float64)
    squares = np.einsum("ij,ij->i", flat, flat, dtype=np.int64).astype(np.float64)
    variance = np.maximum(squares - total * total / count, 0.0) / max(1, count - 1)
    spread = np.maximum(np.sqrt(variance), preprocess.min_spread * 255.0)
    shape = (-1, 1, 1, 1)
    mean = (total / count).astype(np.float32).reshape(shape)
    return mean, spread.astype(np.float32).reshape(shape)


def to_tensor(batch: np.ndarray, preprocess: Preprocess) -> torch.Tensor:
    """uint8 NHWC batch -> standardised float NCHW tensor in channels-last memory.

    Each image is standardised by its own mean and (sample) standard deviation, the
    latter at least `min_spread` on the 0-1 scale.
    """
    # np.require copies only read-only or non-contiguous input (torch warns on read-only).
    pixels = np.require(batch, requirements=["C", "W"])
    mean, spread = _statistics(pixels, preprocess)
    x = torch.from_numpy(pixels).float().sub_(torch.from_numpy(mean)).div_(torch.from_numpy(spread))
    # NHWC memory permuted to NCHW is exactly the channels-last layout.
    return x.permute(0, 3, 1, 2)


def standardise(batch: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """`to_tensor` in NumPy: uint8 NHWC -> standardised float32 NCHW (contiguous) array."""
    mean, spread = _statistics(batch, preprocess)
    # Transposed while still bytes, then converted once and scaled in place: the same
    # values as (x - mean) / spread, with a quarter of the memory traffic.
    x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2)).astype(np.float32)
    x -= mean
    x /= spread
    return x
