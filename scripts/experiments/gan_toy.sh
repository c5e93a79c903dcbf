#!/usr/bin/env bash
# Issue 14: seconds-long check of class conditioning on a toy set (as GANTrainingTests'
# testConditionalGenerationHonoursTheLabel): 12 "bright" (+0.6) and 12 "dark" (−0.6) 16×16 slices
# with a blob; conditional DCGAN width 8, 400 steps × 8, EMA 0.9; prints the mean pixel value of 16
# samples per class and their difference (the test asks > 0.3). Needs numpy.
#   bash scripts/experiments/gan_toy.sh NAME [train gan flags...]
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${MEDSYNTH_BIN:-.build/release/medsynth}
T=${TOY_OUT:-work/gan-toy}
name=${1:?name}; shift
if [ ! -d "$T/data/dark" ]; then
    python3 - "$T/data" <<'PY'
import math, os, random, sys
import numpy as np
sys.path.insert(0, "scripts/experiments")
from png_gray8 import write_png
random.seed(7)
for name, level in [("bright", 0.6), ("dark", -0.6)]:
    os.makedirs(f"{sys.argv[1]}/{name}", exist_ok=True)
    for i in range(12):
        cx, cy = 8 + random.uniform(-3, 3), 8 + random.uniform(-3, 3)
        img = np.zeros((16, 16), np.uint8)
        for y in range(16):
            for x in range(16):
                v = max(-1, min(1, level + (0.3 if math.hypot(x - cx, y - cy) < 4 else 0) + 0.05 * random.gauss(0, 1)))
                img[y, x] = int(round((v + 1) / 2 * 255))
        write_png(f"{sys.argv[1]}/{name}/{name}_{i:02d}.png", img)
PY
fi
rm -rf "$T/run-$name" "$T/gen-$name"-*
$B train gan --data "$T/data" --out "$T/run-$name" --image-size 16 --width 8 --steps 400 --batch 8 --seed 11 \
    --conditional --ema-decay 0.9 --progress none "$@" > /dev/null
for c in bright dark; do $B generate --model "$T/run-$name" --count 16 --class $c --out "$T/gen-$name-$c" --progress none > /dev/null; done
python3 - "$T" "$name" <<'PY'
import os, sys
sys.path.insert(0, "scripts/experiments")
from corner_mean import read_png
root, name = sys.argv[1], sys.argv[2]
means = {}
for c in ["bright", "dark"]:
    d = f"{root}/gen-{name}-{c}"
    values = [v / 255 * 2 - 1 for f in sorted(os.listdir(d)) if f.endswith(".png") for row in read_png(os.path.join(d, f)) for v in row]
    means[c] = sum(values) / len(values)
print(f"{name}: bright {means['bright']:.3f}  dark {means['dark']:.3f}  difference {means['bright'] - means['dark']:.3f}")
PY
