#!/usr/bin/env bash
# Benchmark of `medsynth evaluate` (issue 6): features and every metric for N synthetic 64×64
# images against N real ones (default N = 10000), release build, on this machine.
# Usage: bash scripts/experiments/bench_evaluate.sh [N] [WORKDIR]
# The images are made once by the Python below (numpy only; seeded phantoms: ellipses of
# tissue with lesions and noise; the "synthetic" set is a second seed, slightly blurred and
# brighter) and reused on later runs. SCRATCH picks the SwiftPM build folder (default .build).
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-10000}"
WORK="${2:-/tmp/medsynth-bench-evaluate}"
SCRATCH="${SCRATCH:-.build}"
mkdir -p "$WORK"
cat > "$WORK/make_images.py" <<'PY'
"""Seeded 64x64 8-bit gray phantoms. Usage: make_images.py OUT_DIR COUNT SEED BLUR(0|1)"""
import os, sys
import numpy as np
from png_gray8 import write_png  # scripts/experiments/png_gray8.py (PYTHONPATH below)


def main():
    out, count, seed, blur = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    for i in range(count):
        cx, cy = rng.uniform(26, 38, 2)
        ax, ay = rng.uniform(16, 26, 2)
        body = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 < 1
        img = np.where(body, rng.uniform(0.45, 0.65), 0.02).astype(np.float32)
        for _ in range(rng.integers(0, 4)):
            lx, ly, r = cx + rng.uniform(-10, 10), cy + rng.uniform(-10, 10), rng.uniform(2, 6)
            img[((xx - lx) ** 2 + (yy - ly) ** 2 < r * r) & body] = rng.uniform(0.7, 1.0)
        img += rng.normal(0, 0.04, img.shape).astype(np.float32)
        if blur:
            k = np.array([0.25, 0.5, 0.25], np.float32)
            img = np.apply_along_axis(lambda v: np.convolve(v, k, "same"), 0, img)
            img = np.apply_along_axis(lambda v: np.convolve(v, k, "same"), 1, img) * 1.05
        write_png(os.path.join(out, f"img_{i:05d}.png"), (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))

if __name__ == "__main__":
    main()
PY
for SET in real synthetic; do
    if [ ! -f "$WORK/$SET-$N/.done" ]; then
        if [ "$SET" = real ]; then PYTHONPATH=scripts/experiments python3 "$WORK/make_images.py" "$WORK/$SET-$N" "$N" 1 0
        else PYTHONPATH=scripts/experiments python3 "$WORK/make_images.py" "$WORK/$SET-$N" "$N" 2 1; fi
        touch "$WORK/$SET-$N/.done"
    fi
done
if ! LOG=$(swift build -c release --scratch-path "$SCRATCH" --product medsynth 2>&1); then echo "$LOG" | tail -20; exit 1; fi
BIN="$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)/medsynth"
echo "medsynth evaluate: $N real vs $N synthetic 64x64 images, $(nproc) cores"
/usr/bin/time -f "wall %e s, peak memory %M KB" "$BIN" evaluate --real "$WORK/real-$N" --synthetic "$WORK/synthetic-$N" \
    --out "$WORK/out-$N" --progress none
python3 - "$WORK/out-$N/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("stage seconds:", ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["seconds"].items())))
PY
