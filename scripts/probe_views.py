"""What test-time views would give the CNN alone: mirror, quarter turns and regions.

    python scripts/probe_views.py MODEL.pt runs/bench/calibrate-cc-101 [more sets] \
        [--cache runs/views]

Each image of a benchmark set is embedded as it is and under 13 more views: the seven other
mirror / quarter-turn views, and six regions (the centre at 0.7 and 0.5 of each side,
the four corners at 0.7). A pair's score under a set of views is the best cosine of one
picture's view with the other picture as it is (both ways), mapped and gated as
`Model.cnn_similarity_matrix` does (a near-flat picture scores 0, read from its plain
embedding). Prints recall at precision 0.99 and 0.999 of the CNN alone, per family, for
each set of views. Use calibrate material only.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.evaluate import load_truth, pair_layout
from lookalike.evaluate.metrics import recall_at_precision
from lookalike.io import load_image
from lookalike.model import Model, load_model
from lookalike.model.preprocess import prepare_image
from lookalike.score import cnn_similarity_from_cosine

T = Image.Transpose
View = Callable[[Image.Image], Image.Image]


def _region(x0: float, y0: float, side: float) -> View:
    def crop(image: Image.Image) -> Image.Image:
        w, h = image.size
        return image.crop(
            (round(x0 * w), round(y0 * h), round((x0 + side) * w), round((y0 + side) * h))
        )

    return crop


def _turns(*steps: T) -> View:
    def turn(image: Image.Image) -> Image.Image:
        for step in steps:
            image = image.transpose(step)
        return image

    return turn


VIEWS: dict[str, View] = {
    "plain": _turns(),
    "mirror": _turns(T.FLIP_LEFT_RIGHT),
    "r90": _turns(T.ROTATE_90),
    "r180": _turns(T.ROTATE_180),
    "r270": _turns(T.ROTATE_270),
    "mirror-r90": _turns(T.FLIP_LEFT_RIGHT, T.ROTATE_90),
    "vflip": _turns(T.FLIP_TOP_BOTTOM),
    "mirror-r270": _turns(T.FLIP_LEFT_RIGHT, T.ROTATE_270),
    "centre70": _region(0.15, 0.15, 0.7),
    "centre50": _region(0.25, 0.25, 0.5),
    "tl70": _region(0.0, 0.0, 0.7),
    "tr70": _region(0.3, 0.0, 0.7),
    "bl70": _region(0.0, 0.3, 0.7),
    "br70": _region(0.3, 0.3, 0.7),
}

SETS: dict[str, tuple[str, ...]] = {
    "plain": ("plain",),
    "+mirror": ("plain", "mirror"),
    "+quarter turns": ("plain", "r90", "r180", "r270"),
    "+mirror, turns": (
        "plain",
        "mirror",
        "r90",
        "r180",
        "r270",
        "mirror-r90",
        "vflip",
        "mirror-r270",
    ),
    "+centre 0.7": ("plain", "centre70"),
    "+centres": ("plain", "centre70", "centre50"),
    "+regions": ("plain", "centre70", "centre50", "tl70", "tr70", "bl70", "br70"),
}

FLOOR = 0.8
"""Negatives under this score are dropped: no cut-off at precision 0.99 sits that low here."""


def embed_views(model: Model, paths: Sequence[Path]) -> dict[str, np.ndarray]:
    """Each view's embeddings of every image, (N, D) per view."""
    out: dict[str, list[np.ndarray]] = {name: [] for name in VIEWS}
    batch: dict[str, list[np.ndarray]] = {name: [] for name in VIEWS}

    def flush() -> None:
        for name in VIEWS:
            if batch[name]:
                out[name].append(model.embed_arrays(np.stack(batch[name])))
                batch[name] = []

    for k, path in enumerate(paths):
        image = load_image(path, min_side=model.preprocess.decode_side)
        for name, view in VIEWS.items():
            batch[name].append(prepare_image(view(image), model.preprocess))
        if len(batch["plain"]) == 64:
            flush()
        if k % 500 == 0:
            print(f"  embedded {k}/{len(paths)}", flush=True)
    flush()
    return {name: np.concatenate(chunks) for name, chunks in out.items()}


def view_scores(model: Model, views: dict[str, np.ndarray], chosen: Sequence[str]) -> np.ndarray:
    """(N, N) score of every pair: the best view of either side against the other's plain."""
    plain = views["plain"]
    best = plain @ plain.T
    for name in chosen:
        if name != "plain":
            cross = views[name] @ plain.T
            np.maximum(best, cross, out=best)
            np.maximum(best, cross.T, out=best)
    scores = np.asarray(cnn_similarity_from_cosine(best), dtype=np.float32)
    if model.detail is not None:
        flat = model.detail.flat(plain)
        scores[flat, :] = 0.0
        scores[:, flat] = 0.0
    return scores


class Pairs:
    """A benchmark set's copies (a, b, family) and its negative pairs, as masks."""

    def __init__(self, bench: Path) -> None:
        self.layout = layout = pair_layout(load_truth(bench))
        self.a, self.b = layout.positive_a, layout.positive_b
        self.family = np.array(layout.positive_family)
        group = layout.group
        upper = np.triu(np.ones((len(group), len(group)), dtype=bool), 1)
        self.negative = upper & (group[:, None] != group[None, :])

    def recall(self, scores: np.ndarray) -> tuple[float, float, float, int, str]:
        """Recall at precision 0.99 (its cut-off) and 0.999 of an (N, N) score matrix,
        negatives at 0.99 or more, and recall per family at the first cut-off."""
        pos = scores[self.a, self.b]
        neg = scores[self.negative & (scores >= FLOOR)]
        r99, cut99 = recall_at_precision(pos, neg, 0.99)
        r999, _ = recall_at_precision(pos, neg, 0.999)
        fams = " ".join(
            f"{f} {np.mean(pos[self.family == f] >= cut99):.2f}" for f in self.layout.families
        )
        return r99, cut99, r999, int(np.sum(neg >= 0.99)), fams


def cached_arrays(
    bench: Path,
    model: Model,
    cache: Path | None,
    make: Callable[[Sequence[Path]], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """`make(paths)` of a set's images, kept in `cache` (by set and model id) when given."""
    cached = cache / f"{bench.name}-{model.model_id}.npz" if cache else None
    if cached and cached.exists():
        return dict(np.load(cached))
    arrays = make(pair_layout(load_truth(bench)).paths)
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, **arrays)  # type: ignore[arg-type]
    return arrays


def report(name: str, model: Model, views: dict[str, np.ndarray], bench: Path) -> None:
    """Print recall of the CNN alone under each set of views."""
    pairs = Pairs(bench)
    print(
        f"\n{name}: {len(pairs.layout.group)} images, {pairs.a.size} copies, "
        f"{int(pairs.negative.sum())} negative pairs"
    )
    for label, chosen in SETS.items():
        r99, cut99, r999, high, fams = pairs.recall(view_scores(model, views, chosen))
        print(
            f"  {label:<16} @0.99 {r99:.3f} (cut {cut99:.4f})  @0.999 {r999:.3f}  "
            f"negatives >= 0.99: {high}\n      {fams}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("benches", type=Path, nargs="+")
    parser.add_argument("--cache", type=Path, help="keep each set's view embeddings here")
    args = parser.parse_args()
    model = load_model(args.model).without_verification()
    for bench in args.benches:
        views = cached_arrays(bench, model, args.cache, lambda paths: embed_views(model, paths))
        report(bench.name, model, views, bench)


if __name__ == "__main__":
    main()
