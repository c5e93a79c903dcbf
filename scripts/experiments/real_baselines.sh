#!/usr/bin/env bash
# What FD should a model reach on issue 12's protocol (80 healthy samples against the 80 even-indexed
# mni64 slices)? The protocol's real-vs-real, the odd slices against the even ones, pairs every
# slice with its neighbour one slice away: near-duplicates. This script scores other real sets
# against the same 80 even slices with `medsynth evaluate`, DRAWS times each (seeded):
#   interleaved   the 79 odd slices (the protocol's baseline, 2.53)
#   heldout-iid   80 draws with replacement from the odd slices: an ideal generator that samples the
#                 anatomy it never saw, independently per image (what a model's 80 samples are)
#   training-iid  80 draws with replacement from all 159 slices: a generator that only copies its
#                 training images (the even slices are among them)
#   random-halves a random 80 of the 159 against the other 79 (not against the even slices): the
#                 brief's "two halves of the real set", drawn at random
# and prints median and range of FD, and the median spread ratios of the FD breakdown.
#   bash scripts/experiments/real_baselines.sh [DRAWS]
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${MEDSYNTH_BIN:-.build/release/medsynth}
DRAWS=${1:-10}
OUT=${MEDSYNTH_BASELINE_OUT:-work/real-baselines}
rm -rf "$OUT"; mkdir -p "$OUT"
python3 - "$OUT" "$DRAWS" <<'PY'
import os, random, shutil, sys
out, draws = sys.argv[1], int(sys.argv[2])
src = "datasets/mni64/healthy"
files = sorted(os.listdir(src))
even, odd = files[0::2], files[1::2]
def make(folder, names):
    os.makedirs(f"{out}/{folder}/healthy")
    for i, name in enumerate(names):  # numbered: a draw with replacement repeats a slice
        shutil.copy(f"{src}/{name}", f"{out}/{folder}/healthy/{i:03d}_{name}")
make("even", even)
make("interleaved-0", odd)
rng = random.Random(12)
for d in range(draws):
    make(f"heldout-iid-{d}", [rng.choice(odd) for _ in range(80)])
    make(f"training-iid-{d}", [rng.choice(files) for _ in range(80)])
    shuffled = files[:]; rng.shuffle(shuffled)
    make(f"random-halves-{d}-a", shuffled[:80]); make(f"random-halves-{d}-b", shuffled[80:])
PY
score() {  # score REAL SYNTHETIC NAME
    $B evaluate --real "$1" --synthetic "$2" --out "$OUT/report-$3" --progress none > /dev/null 2>&1
}
score "$OUT/even" "$OUT/interleaved-0" interleaved-0
for d in $(seq 0 $((DRAWS - 1))); do
    score "$OUT/even" "$OUT/heldout-iid-$d" "heldout-iid-$d"
    score "$OUT/even" "$OUT/training-iid-$d" "training-iid-$d"
    score "$OUT/random-halves-$d-b" "$OUT/random-halves-$d-a" "random-halves-$d"
done
python3 - "$OUT" <<'PY'
import glob, json, statistics, sys
out = sys.argv[1]
for kind in ["interleaved", "heldout-iid", "training-iid", "random-halves"]:
    rows = [json.load(open(f))["overall"] for f in sorted(glob.glob(f"{out}/report-{kind}-*/report.json"))]
    fd = [r["fid"] for r in rows]
    main = statistics.median(r["fid_breakdown"]["spread_ratio_principal"] for r in rows)
    outside = statistics.median(r["fid_breakdown"]["spread_ratio_outside"] for r in rows)
    print(f"{kind:14s} FD median {statistics.median(fd):6.2f}  range {min(fd):6.2f}–{max(fd):6.2f}  ({len(fd)} draws)"
          f"  spread main {main:.2f}×, outside {outside:.2f}×")
PY
