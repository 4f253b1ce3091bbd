#!/usr/bin/env bash
# Rebuild the benchmark sets of BENCHMARKS.md / MODEL_CARD.md under runs/: the calibrate
# set (calibrate split, composites of the clothing calibrate split) and the three test sets
# (test split, composites of the clothing test split, seeds 0-2). Skips sets already built.
# Also the lone-copy calibrate sets lone-101..106.
# Usage: scripts/make_bench_sets.sh PHOTO_DIR CLOTHING_DIR
set -euo pipefail
photos="$(cd "$1" && pwd)"
clothing="$(cd "$2" && pwd)"
cd "$(dirname "$0")/.."
scripts/make_train_halves.sh "$photos"
for part in calibrate test; do
  mkdir -p "runs/clothing_$part"
  while read -r name; do
    [ -n "$name" ] && ln -sf "$clothing/images/$name" "runs/clothing_$part/"
  done < "data/splits/clothing_$part.txt"
done
if [ ! -d runs/bench/calibrate-cc ]; then
  lookalike make-benchmark "$photos" runs/bench/calibrate-cc --photos-list data/splits/calibrate.txt \
    --originals 45 --distractors 46 --tiles 10 --more-distractors runs/train_half_a --seed 100 \
    --composites 40 --composite-photos runs/clothing_calibrate
fi
for s in 0 1 2; do
  [ -d "runs/bench/test-cc-s$s" ] && continue
  lookalike make-benchmark "$photos" "runs/bench/test-cc-s$s" --photos-list data/splits/test.txt \
    --originals 60 --distractors 75 --tiles 10 --more-distractors runs/train_half_b \
    --composites 40 --composite-photos runs/clothing_test --seed "$s"
done
# Lone-copy calibrate sets (benchmarks/BENCHMARKS.md, "v1.16, lone copies, and
# `--verify-nearest`"): every calibrate photo gets one edited copy of a random family,
# among ~3,400 tiles of the train half A.
for s in 101 102 103 104 105 106; do
  [ -d "runs/bench/lone-$s" ] && continue
  lookalike make-benchmark "$photos" "runs/bench/lone-$s" --photos-list data/splits/calibrate.txt \
    --originals 91 --distractors 0 --tiles 10 --more-distractors runs/train_half_a \
    --edits-per-original 1 --composites 40 --composite-photos runs/clothing_calibrate --seed "$s"
done
