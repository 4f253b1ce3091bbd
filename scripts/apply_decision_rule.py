"""Give a checkpoint's weights the decision rule of a training config (no retraining).

    python scripts/apply_decision_rule.py IN.pt OUT.pt [--config CONFIG.json] [--model-id ID]
        [--keep-cut-offs] [--trim-canvas]

Copies the config's `verify` settings and `preprocess.decode_min_side` onto the model in
IN.pt and writes OUT.pt; calibrate OUT.pt afterwards (`lookalike calibrate`), since the
cut-offs depend on the rule. This is how a new rule reaches already trained weights (v1.1,
v1.2, v1.3 and v1.4 are v1's weights with newer rules). With `--keep-cut-offs` IN.pt's
calibrated cut-offs stay (its calibration and CNN-confident cut-off): for a change the
calibrate set does not move, as v1.12's thumbnail threshold
(`python scripts/apply_decision_rule.py <v1.11 checkpoint> OUT.pt --model-id
lookalike-default-v1.12 --keep-cut-offs`). `--trim-canvas` also trims smooth canvases
(`Preprocess.trim_canvas`), as v1.17 does.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from lookalike.model import load_model, save_model
from lookalike.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "default.json")
    parser.add_argument("--model-id")
    parser.add_argument("--keep-cut-offs", action="store_true")
    parser.add_argument("--trim-canvas", action="store_true")
    args = parser.parse_args()
    config = TrainConfig.from_json(args.config)
    model = load_model(args.checkpoint)
    verify = config.verify
    if args.keep_cut_offs:
        verify = replace(verify, confident_cnn_similarity=model.verify.confident_cnn_similarity)
    model = replace(
        model,
        verify=verify,
        preprocess=replace(
            model.preprocess,
            decode_min_side=config.preprocess.decode_min_side,
            trim_canvas=model.preprocess.trim_canvas or args.trim_canvas,
        ),
        model_id=args.model_id or model.model_id,
    )
    save_model(model, args.out)
    print(f"wrote {args.out}: {model.model_id}, verify {config.verify}")


if __name__ == "__main__":
    main()
