"""The edit families: named, seeded, composable transforms that make replicated images."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

FAMILIES: tuple[str, ...] = (
    "crop",
    "contrast",
    "saturation",
    "lightness",
    "rotation",
    "pixelate",
    "angle",
    "heavy",
    "jpeg",
    "resize",
    "flip",
    "blur",
    "noise",
    "overlay",
    "border",
    "grayscale",
)
"""Every edit family id, in the order reports list them."""

Edit = Callable[[Image.Image, np.random.Generator, float], Image.Image]


def _lerp(lo: float, hi: float, strength: float) -> float:
    return lo + (hi - lo) * strength


def _either_side(
    rng: np.random.Generator,
    mild_down: float,
    severe_down: float,
    mild_up: float,
    severe_up: float,
    strength: float,
) -> float:
    """A factor below or above 1, further from 1 as `strength` grows."""
    if rng.random() < 0.5:
        return _lerp(mild_down, severe_down, strength)
    return _lerp(mild_up, severe_up, strength)


def _crop(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    w, h = image.size
    keep = _lerp(0.9, 0.55, strength)
    aspect = float(np.exp(rng.uniform(-0.25, 0.25)))
    cw = min(w, max(8, round(w * keep * np.sqrt(aspect))))
    ch = min(h, max(8, round(h * keep / np.sqrt(aspect))))
    x = int(rng.integers(0, w - cw + 1))
    y = int(rng.integers(0, h - ch + 1))
    return image.crop((x, y, x + cw, y + ch))


def _contrast(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    return ImageEnhance.Contrast(image).enhance(_either_side(rng, 0.75, 0.35, 1.3, 2.2, strength))


def _saturation(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    return ImageEnhance.Color(image).enhance(_either_side(rng, 0.6, 0.15, 1.5, 3.0, strength))


def _lightness(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(_either_side(rng, 0.75, 0.4, 1.25, 1.8, strength))


def _rotation(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    if rng.random() < 0.5:
        turn = (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)
        return image.transpose(turn[int(rng.integers(0, 3))])
    angle = _lerp(3.0, 25.0, strength) * (1 if rng.random() < 0.5 else -1)
    fill = tuple(int(v) for v in rng.integers(0, 256, 3))
    return image.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=fill)


def _pixelate(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    w, h = image.size
    # At least 2 px blocks, so a small picture is pixelated too.
    block = max(2.0, _lerp(max(w, h) / 128, max(w, h) / 40, strength))
    small = (max(2, round(w / block)), max(2, round(h / block)))
    return image.resize(small, Image.Resampling.BOX).resize((w, h), Image.Resampling.NEAREST)


def _angle(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    w, h = image.size
    amount = _lerp(0.06, 0.22, strength)
    dx = rng.uniform(0, amount, 4) * w
    dy = rng.uniform(0, amount, 4) * h
    # Where each output corner samples the input: the picture as seen from another angle.
    quad = (dx[0], dy[0], dx[1], h - dy[1], w - dx[2], h - dy[2], w - dx[3], dy[3])
    fill = tuple(int(v) for v in rng.integers(0, 256, 3))
    return image.transform(
        (w, h), Image.Transform.QUAD, quad, Image.Resampling.BILINEAR, fillcolor=fill
    )


def _jpeg(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=round(_lerp(30, 5, strength)))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def _resize(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    w, h = image.size
    scale = _lerp(0.5, 0.12, strength)
    return image.resize(
        (max(16, round(w * scale)), max(16, round(h * scale))), Image.Resampling.BILINEAR
    )


def _flip(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    if rng.random() < 0.8:
        return ImageOps.mirror(image)
    return ImageOps.flip(image)


def _blur(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    radius = _lerp(1.0, 4.0, strength) * max(image.size) / 512
    return image.filter(ImageFilter.GaussianBlur(max(0.6, radius)))


def _noise(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    arr = np.asarray(image, dtype=np.float32)
    sigma = _lerp(8.0, 40.0, strength)
    if rng.random() < 0.3:
        grain = rng.normal(0, sigma, arr.shape[:2])[..., None]
    else:
        grain = rng.normal(0, sigma, arr.shape)
    return Image.fromarray(np.clip(arr + grain, 0, 255).astype(np.uint8), "RGB")


_WORDS = (
    "SAMPLE",
    "COPY",
    "© lookalike",
    "breaking news",
    "LOL",
    "stock photo",
    "draft",
    "www.example.com",
    "when you see it",
    "2026",
    "Follow me!",
    "not for sale",
)


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


def _overlay(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    out = image.copy()
    w, h = out.size
    draw = ImageDraw.Draw(out)
    budget = _lerp(0.05, 0.3, strength) * w * h
    used = 0.0
    while used < budget:
        kind = rng.integers(0, 3)
        if kind == 0:
            size = max(8, round(rng.uniform(0.06, 0.16) * h))
            text = _WORDS[int(rng.integers(0, len(_WORDS)))]
            font = ImageFont.load_default(size=size)
            x0, y0, x1, y1 = (round(v) for v in draw.textbbox((0, 0), text, font=font))
            tx = int(rng.integers(0, max(1, w - (x1 - x0))))
            ty = int(rng.integers(0, max(1, h - (y1 - y0))))
            draw.text(
                (tx, ty),
                text,
                fill=_random_colour(rng),
                font=font,
                stroke_width=max(1, size // 12),
                stroke_fill=_random_colour(rng),
            )
            used += (x1 - x0) * (y1 - y0)
        else:
            bw = rng.uniform(0.08, 0.3) * w
            bh = rng.uniform(0.08, 0.3) * h
            bx = rng.uniform(0, w - bw)
            by = rng.uniform(0, h - bh)
            if kind == 1:
                draw.rectangle((bx, by, bx + bw, by + bh), fill=_random_colour(rng))
            else:
                draw.ellipse(
                    (bx, by, bx + bw, by + bh),
                    fill=_random_colour(rng),
                    outline=_random_colour(rng),
                    width=max(1, round(bw / 10)),
                )
            used += bw * bh
    return out


def _border(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    w, h = image.size
    scale = _lerp(0.85, 0.5, strength)
    stretch = float(np.exp(rng.uniform(-0.35, 0.35)))
    cw = max(8, round(w / scale * np.sqrt(stretch)))
    ch = max(8, round(h / scale / np.sqrt(stretch)))
    fit = min(cw * scale / w, ch * scale / h)
    pw, ph = max(4, round(w * fit)), max(4, round(h * fit))
    kind = rng.random()
    if kind < 0.7:
        canvas = Image.new("RGB", (cw, ch), _random_colour(rng))
    elif kind < 0.85:
        top = np.array(_random_colour(rng), dtype=np.float32)
        bottom = np.array(_random_colour(rng), dtype=np.float32)
        t = np.linspace(0, 1, ch, dtype=np.float32)[:, None, None]
        grad = np.broadcast_to(top * (1 - t) + bottom * t, (ch, cw, 3))
        canvas = Image.fromarray(grad.astype(np.uint8), "RGB")
    else:
        base = np.array(_random_colour(rng), dtype=np.float32)
        tex = base + rng.normal(0, 25, (ch, cw, 3))
        canvas = Image.fromarray(np.clip(tex, 0, 255).astype(np.uint8), "RGB")
    picture = image.resize((pw, ph), Image.Resampling.BILINEAR)
    x = int(rng.integers(0, cw - pw + 1))
    y = int(rng.integers(0, ch - ph + 1))
    canvas.paste(picture, (x, y))
    return canvas


def _grayscale(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    return image.convert("L").convert("RGB")


_SIMPLE: dict[str, Edit] = {
    "crop": _crop,
    "contrast": _contrast,
    "saturation": _saturation,
    "lightness": _lightness,
    "rotation": _rotation,
    "pixelate": _pixelate,
    "angle": _angle,
    "jpeg": _jpeg,
    "resize": _resize,
    "flip": _flip,
    "blur": _blur,
    "noise": _noise,
    "overlay": _overlay,
    "border": _border,
    "grayscale": _grayscale,
}


def _heavy(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    names = sorted(_SIMPLE)
    count = 2 + int(rng.integers(0, 2)) + (1 if strength > 0.7 else 0)
    chosen = rng.choice(len(names), size=count, replace=False)
    for index in chosen:
        image = _SIMPLE[names[int(index)]](image, rng, float(rng.uniform(0.0, 0.7)))
    return image


def apply_edit(
    image: Image.Image,
    family: str,
    *,
    seed: int | np.random.Generator = 0,
    strength: float | None = None,
) -> Image.Image:
    """Return an edited copy of an RGB image; the same seed gives the same edit.

    `strength` in [0, 1] runs from mild to severe; by default it is drawn from the seed.

    >>> edited = apply_edit(photo, "crop", seed=3)
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown edit family {family!r}; expected one of {', '.join(FAMILIES)}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    level = float(rng.uniform(0.0, 1.0)) if strength is None else float(np.clip(strength, 0, 1))
    edit = _heavy if family == "heavy" else _SIMPLE[family]
    return edit(image.convert("RGB"), rng, level)


def apply_edits(
    image: Image.Image, families: list[str], *, seed: int | np.random.Generator = 0
) -> Image.Image:
    """Apply several edit families in order, all drawn from one seed."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    for family in families:
        image = apply_edit(image, family, seed=rng)
    return image


def composite(
    background: Image.Image,
    subject: Image.Image,
    *,
    seed: int | np.random.Generator = 0,
    area: tuple[float, float] = (0.25, 0.5),
) -> Image.Image:
    """Paste a crop of `subject` near the centre of `background`: a different picture
    taken in the same place (a hard negative: two composites on one background share the
    place, not the subject).

    The pasted crop covers `area` (a range of shares) of the background, keeps a random
    aspect and sits at a random place within the central region.

    >>> a = composite(carpet, shirt, seed=1); b = composite(carpet, shoe, seed=2)
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out = background.convert("RGB").copy()
    w, h = out.size
    share = float(rng.uniform(*area))
    aspect = float(np.exp(rng.uniform(-0.4, 0.4)))
    pw = min(w, max(4, round(np.sqrt(share * w * h * aspect))))
    ph = min(h, max(4, round(share * w * h / pw)))
    source = subject.convert("RGB")
    sw, sh = source.size
    keep = float(rng.uniform(0.5, 1.0))
    cw = max(4, min(sw, round(sw * keep)))
    ch = max(4, min(sh, round(cw * ph / pw)))
    cx = int(rng.integers(0, sw - cw + 1))
    cy = int(rng.integers(0, sh - ch + 1))
    piece = source.crop((cx, cy, cx + cw, cy + ch)).resize((pw, ph), Image.Resampling.BILINEAR)
    # "Near the centre": the piece's centre lies in the middle third of each side.
    x = round(w / 2 - pw / 2 + rng.uniform(-w / 6, w / 6))
    y = round(h / 2 - ph / 2 + rng.uniform(-h / 6, h / 6))
    out.paste(piece, (min(max(0, x), w - pw), min(max(0, y), h - ph)))
    return out
