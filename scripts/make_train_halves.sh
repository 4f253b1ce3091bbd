#!/usr/bin/env bash
# Link the even / odd entries of data/splits/train.txt into runs/train_half_a / _b: extra
# distractor photos for the calibration set (a) and the test sets (b), never shared.
# Usage: scripts/make_train_halves.sh PHOTO_DIR
set -euo pipefail
photos="$(cd "$1" && pwd)"
cd "$(dirname "$0")/.."
mkdir -p runs/train_half_a runs/train_half_b
i=0
while read -r name; do
  [ -n "$name" ] || continue
  if [ $((i % 2)) -eq 0 ]; then half=a; else half=b; fi
  ln -sf "$photos/$name" "runs/train_half_$half/$name"
  i=$((i + 1))
done < data/splits/train.txt
