"""Write docs/explain-example.png: `lookalike explain` on a bundled sample photo and its crop.

    python scripts/make_explain_example.py [--photo chelsea.jpg] [--keep 0.8] [--model PATH]

The crop keeps `--keep` of each side, from near the top-left corner; the panel shows the
photo and the crop, their Grad-CAM overlays, and the model's verdict.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from lookalike.explain import explain_pair, panel
from lookalike.io import load_image
from lookalike.model import load_model

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "lookalike" / "samples"
DOCS = Path(__file__).resolve().parents[1] / "docs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default="chelsea.jpg", help="a file in lookalike/samples")
    parser.add_argument("--keep", type=float, default=0.8, help="share of each side kept")
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: bundled)")
    parser.add_argument("--out", type=Path, default=DOCS / "explain-example.png")
    args = parser.parse_args()
    photo = load_image(SAMPLES / args.photo)
    w, h = photo.size
    left, top = 0.05 * w, 0.05 * h
    crop = photo.crop(
        (round(left), round(top), round(left + args.keep * w), round(top + args.keep * h))
    )
    explanation = explain_pair(photo, crop, load_model(args.model))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # 256 colours keep the docs image small (about 150 KB) and look the same.
    picture = panel(explanation, height=240).quantize(256, dither=Image.Dither.FLOYDSTEINBERG)
    picture.save(args.out, optimize=True)
    print(f"{args.out}: similarity {explanation.similarity:.4f}, duplicate {explanation.duplicate}")


if __name__ == "__main__":
    main()
