"""Test support: generated photo-like pictures whose parts do not look alike."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def smooth(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth random field (h, w) of unit spread: bicubic upsampling of a coarse grid."""
    grid = rng.normal(0, 1, (h // cell + 2, w // cell + 2)).astype(np.float32)
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC))


def texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """One distinctive texture (h, w, 3): its own kind, two colours, period and angle."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    kind = int(rng.integers(5))
    if kind == 0:
        level = 0.5 + 0.5 * np.sin(2 * np.pi * u / period)
    elif kind == 1:
        level = ((u // period + v // period) % 2).astype(np.float32)
    elif kind == 2:
        dots = (u % period - period / 2) ** 2 + (v % period - period / 2) ** 2
        level = (dots < (period / 3) ** 2).astype(np.float32)
    elif kind == 3:
        level = np.clip(0.5 + 0.6 * smooth(rng, h, w, max(2, int(period / 2))), 0, 1)
    else:
        level = 0.5 + 0.5 * np.sin(2 * np.pi * u / period + 3 * smooth(rng, h, w, 12))
    low, high = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    return low * (1 - level[..., None]) + high * level[..., None]


def finish(pixels: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Sensor noise and a little lens blur."""
    noisy = pixels + rng.normal(0, 3, pixels.shape)
    image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
    return image.filter(ImageFilter.GaussianBlur(0.7))


def mosaic_photo(seed: int, size: tuple[int, int] = (320, 240), regions: int = 14) -> Image.Image:
    """A 'photo' of irregular regions, each with its own texture: no two parts look alike,
    so a crop's content appears nowhere else in the picture."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    sites = rng.uniform(0, 1, (regions, 2)) * (w, h)
    warp = 10 * smooth(rng, h, w, 24)
    distance = (x + warp - sites[:, :1, None]) ** 2 + (y - warp - sites[:, 1:, None]) ** 2
    label = distance.argmin(axis=0)
    pixels = np.zeros((h, w, 3), np.float32)
    for region in range(regions):
        inside = label == region
        pixels[inside] = texture(rng, h, w)[inside]
    shading = 1 + 0.15 * smooth(rng, h, w, 80)[..., None]
    return finish(pixels * shading, rng)


def second_shot(photo: Image.Image, seed: int, shift: float = 8.0, cell: int = 100) -> Image.Image:
    """The same scene shot again: every part displaced a little, each its own way (a
    smooth random displacement of about `shift` pixels), as when a garment is laid again
    or the camera moves in front of something that is not flat. No single homography
    maps one shot onto the other."""
    import cv2

    rng = np.random.default_rng(seed)
    w, h = photo.size
    dx, dy = (shift * smooth(rng, h, w, cell) for _ in range(2))
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    moved = cv2.remap(
        np.asarray(photo.convert("RGB")),
        x + dx.astype(np.float32),
        y + dy.astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    return Image.fromarray(moved)


def scene_photo(seed: int) -> Image.Image:
    """A mosaic photo softened as real textures are (fabric, floors): content that still
    agrees when a second shot displaces it by a few pixels."""
    return mosaic_photo(seed).filter(ImageFilter.GaussianBlur(2))
