"""Which member of a group to keep, and why: the keep policies and what `best` measures.

`best` (the default) keeps the copy the others look like edits of. It compares small
standardised thumbnails and keeps the member that best explains the others: each one,
blurred a little or not, matched against every other in all eight flips and quarter
turns. An original is the hub of its edits, since each edit moves away from it in its
own direction, and a blurred, compressed or shrunk copy cannot give back the detail it
lost. When members are that close (within HUB_TIE, e.g. a mirrored copy), or the group
is a pair (a hub needs at least two edits around it), it prefers the member that is a
duplicate of the most others (an original is one of each of its edits, which keeps
groups whole), then clearly more pixels inside any frame, then a less compressed JPEG,
then more colour, then the oldest file, then the path that sorts first. `largest`
(pixels, then bytes) is won by a frame, an upscale or added noise (more bytes);
benchmarks/keepers.py measures how often each policy keeps the original.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from lookalike.io import UnreadableImage, open_image
from lookalike.records import Traits

KEEP_POLICIES = ("best", "largest", "oldest", "newest", "shortest-path", "first")
"""How a group's keeper is chosen; ties always go to the path that sorts first."""

KEEP_REASONS = {
    "reference": "in a reference folder",
    "user": "chosen by you",
    "inside-root": "the others are links out of the scanned folders",
    "most-duplicates": "a duplicate of the most others",
    "closest-to-others": "the others look like edits of it",
    "most-pixels": "most pixels",
    "more-bytes": "most bytes",
    "less-compressed": "least compressed",
    "more-colour": "most colour",
    "oldest": "oldest",
    "newest": "newest",
    "shortest-path": "shortest path",
    "first-found": "found first",
    "first-by-path": "first by path",
}
"""Why a keeper won (the code stored in the index and JSON -> words for people)."""

TRAITS_VERSION = 1
"""Bumped when `measure_traits` changes, so stored traits are measured again."""
THUMB_SIDE = 64
MEASURE_CHUNK = 16
HUB_TIE = 0.01
"""Members within 1 % of the best at explaining the others are tied."""
BLURS = (0.0, 0.7, 1.4)
"""Gaussian blurs (thumbnail pixels) tried when a member explains another."""
HUB_SAMPLE = 24
"""In a bigger group each member is compared with this many others (evenly spaced)."""
MORE_PIXELS = 1.2
"""More pixels only count when at least this many times as many."""
LESS_COMPRESSED = 5
"""JPEG quality points that count as less compressed."""
LESS_COLOUR = 0.7
"""A member with less than this share of the most colourful member's colour loses."""

_STANDARD_LUMA = np.array(
    [
        *(16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55),
        *(14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62),
        *(18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92),
        *(49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99),
    ],
    dtype=np.float64,
)
"""The JPEG standard's luminance table (quality 50), which libjpeg scales by quality."""


@dataclass(frozen=True)
class Candidate:
    """What grouping and the keep policies look at for one file."""

    id: int
    path: str
    width: int
    height: int
    size: int
    mtime_ns: int
    order: int
    hash: str
    outside: bool = False
    """A symbolic link leading out of its scan root: never a keeper while a group has
    another member (the review page refuses to show such a file, and a keeper must stay)."""
    traits: Traits | None = None
    """Measured for the `best` policy; without them it falls back on the file's size."""
    reference: bool = False
    """Under a reference folder: never removed, the keeper of any group it is in."""


def _jpeg_quality(table: Sequence[int]) -> int:
    """libjpeg's quality setting that gives this luminance table (order-free estimate)."""
    scale = 100.0 * float(np.sum(table)) / float(_STANDARD_LUMA.sum())
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return int(np.clip(round(quality), 1, 100))


def measure_traits(path: str | os.PathLike[str]) -> Traits:
    """Measure one file for the `best` policy (raises io.UnreadableImage)."""
    from lookalike.model import Preprocess, trim_box  # the network's trim, not the network

    decoded = open_image(path, min_side=2 * THUMB_SIDE)
    quality = None
    if decoded.format == "JPEG":
        with Image.open(path) as header:
            tables = getattr(header, "quantization", None) or {}
            if 0 in tables:
                quality = _jpeg_quality(tables[0])
    image = decoded.image
    left, top, right, bottom = trim_box(image, Preprocess())
    inner = image.crop((left, top, right, bottom))
    share = (right - left) * (bottom - top) / (image.width * image.height)
    colour = float(np.asarray(inner.convert("HSV"), dtype=np.float32)[..., 1].mean())
    thumb = inner.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX)
    return Traits(
        pixels=round(decoded.width * decoded.height * share),
        colour=colour,
        jpeg_quality=quality,
        thumb=np.asarray(thumb, dtype=np.uint8).tobytes(),
    )


def _measure_one(path: str) -> Traits | None:
    try:
        return measure_traits(path)
    except UnreadableImage:
        return None
    except Exception:  # a decoder bug: this file is judged by its size alone
        return None


def measure_many(
    paths: Sequence[str], workers: int = 1, on_done: Callable[[int], None] | None = None
) -> Iterator[Traits | None]:
    """Traits of each path in order (None for a file that cannot be read now)."""
    if workers <= 1 or len(paths) < 2 * MEASURE_CHUNK:
        for done, path in enumerate(paths, 1):
            yield _measure_one(path)
            if on_done:
                on_done(done)
        return
    context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        for done, traits in enumerate(pool.map(_measure_one, paths, chunksize=MEASURE_CHUNK), 1):
            yield traits
            if on_done:
                on_done(done)


def _views(thumb: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The thumbnail standardised in all eight flips and quarter turns, (8, s, s, 3), and
    upright at each of BLURS, (len(BLURS), s, s, 3)."""
    image = np.frombuffer(thumb, dtype=np.uint8).reshape(THUMB_SIDE, THUMB_SIDE, 3)
    values = image.astype(np.float32)
    values = (values - values.mean()) / (values.std() + 1e-6)
    turns = [np.rot90(values, k) for k in range(4)]
    blurred = [cv2.GaussianBlur(values, (0, 0), sigma) if sigma else values for sigma in BLURS]
    return np.stack(turns + [t[:, ::-1] for t in turns]), np.stack(blurred)


def _hub_distances(pool: Sequence[Candidate]) -> np.ndarray:
    """How far each member is from explaining the others (inf without a thumbnail).

    Member A explains B as well as A, blurred by one of BLURS, matches B in some flip or
    quarter turn: an edit can be made from its original (plus blur, since most edits
    lose detail), but detail lost in a copy cannot come back from it.
    """
    views = [_views(c.traits.thumb) if c.traits is not None else None for c in pool]
    measured = [i for i, v in enumerate(views) if v is not None]
    out = np.full(len(pool), np.inf)
    for i in measured:
        others = [j for j in measured if j != i]
        if len(others) > HUB_SAMPLE:
            others = [others[k] for k in np.linspace(0, len(others) - 1, HUB_SAMPLE).astype(int)]
        if not others:
            continue
        source = views[i]
        assert source is not None
        total = 0.0
        for j in others:
            target = views[j]
            assert target is not None
            # The mean absolute gap of each blur of i with each view of j, the least kept
            # (OpenCV's L1 norm: no temporaries, so a group of thousands stays quick).
            total += min(
                cv2.norm(view, blurred, cv2.NORM_L1) for view in target[0] for blurred in source[1]
            )
        out[i] = total / len(others) / source[1][0].size
    return out


Stage = tuple[str, Callable[[list[Candidate]], list[Candidate]]]


def _top(score: Callable[[Candidate], float]) -> Callable[[list[Candidate]], list[Candidate]]:
    def keep(pool: list[Candidate]) -> list[Candidate]:
        best = max(score(c) for c in pool)
        return [c for c in pool if score(c) == best]

    return keep


def _closest(group: Sequence[Candidate]) -> Callable[[list[Candidate]], list[Candidate]]:
    """Keep the members that best explain the whole group (measured once, when needed)."""
    measured: dict[int, float] = {}

    def keep(pool: list[Candidate]) -> list[Candidate]:
        if len(group) < 3:  # a hub needs two edits around it; one copy alone says nothing
            return pool
        if not measured:
            measured.update(zip((c.id for c in group), _hub_distances(group), strict=True))
        least = min(measured[c.id] for c in pool)
        if not np.isfinite(least):
            return pool
        return [c for c in pool if measured[c.id] <= least * (1 + HUB_TIE)]

    return keep


def _pixels(c: Candidate) -> int:
    return c.traits.pixels if c.traits is not None else c.width * c.height


def _most_pixels(pool: list[Candidate]) -> list[Candidate]:
    most = max(_pixels(c) for c in pool)
    return [c for c in pool if _pixels(c) * MORE_PIXELS >= most]


def _less_compressed(pool: list[Candidate]) -> list[Candidate]:
    qualities = [c.traits.jpeg_quality if c.traits else None for c in pool]
    if any(q is None for q in qualities):
        return pool
    floor = max(q for q in qualities if q is not None) - LESS_COMPRESSED
    return [c for c, q in zip(pool, qualities, strict=True) if q is not None and q >= floor]


def _more_colour(pool: list[Candidate]) -> list[Candidate]:
    colours = [c.traits.colour if c.traits else 0.0 for c in pool]
    most = max(colours)
    return [c for c, v in zip(pool, colours, strict=True) if v >= LESS_COLOUR * most]


_BY_PATH: Stage = ("first-by-path", lambda pool: [min(pool, key=lambda c: c.path)])


def _best(group: Sequence[Candidate], links: Mapping[int, int] | None) -> tuple[Stage, ...]:
    count = links or {}
    return (
        ("closest-to-others", _closest(group)),
        ("most-duplicates", _top(lambda c: count.get(c.id, 0))),
        ("most-pixels", _most_pixels),
        ("less-compressed", _less_compressed),
        ("more-colour", _more_colour),
        ("oldest", _top(lambda c: -c.mtime_ns)),
    )


_STAGES: dict[str, tuple[Stage, ...]] = {
    "largest": (
        ("most-pixels", _top(lambda c: c.width * c.height)),
        ("more-bytes", _top(lambda c: c.size)),
    ),
    "oldest": (("oldest", _top(lambda c: -c.mtime_ns)),),
    "newest": (("newest", _top(lambda c: c.mtime_ns)),),
    "shortest-path": (("shortest-path", _top(lambda c: -len(c.path))),),
    "first": (("first-found", _top(lambda c: -c.order)),),
}


def choose_keeper(
    pool: Sequence[Candidate], policy: str, links: Mapping[int, int] | None = None
) -> tuple[Candidate, str]:
    """The member `policy` keeps and the reason code (a key of KEEP_REASONS).

    `links` counts, per candidate id, the other members it is a duplicate of (`best`).

    >>> keeper, why = choose_keeper(members, "best", links)
    """
    if policy not in KEEP_POLICIES:
        raise ValueError(
            f"unknown keep policy {policy!r}; choose one of {', '.join(KEEP_POLICIES)}"
        )
    if not pool:
        raise ValueError("an empty group has no keeper")
    left: list[Candidate] = list(pool)
    stages = _best(pool, links) if policy == "best" else _STAGES[policy]
    for reason, narrow in (*stages, _BY_PATH):
        if len(left) == 1:
            break
        left = narrow(left) or left
        if len(left) == 1:
            return left[0], reason
    return left[0], stages[0][0]
