#!/usr/bin/env bash
# Issue 14, session 7: does mixing copies of the rare class's real images into the GAN's images
# (`balance --model --real-copies F`) beat either alone? Reuses the per-class work folders of
# scripts/experiments/balance_all_classes.sh (their cut training set, held-out test set, 6,000-step
# conditional GAN and oversampled / GAN-balanced sets) and adds, per class, a set balanced by the same
# GAN with fraction F of the added images replaced by random copies of real images; then the fixed
# utility classifier (same seeds and epochs as there) on oversample / GAN / GAN + copies.
#   bash scripts/experiments/balance_real_copies.sh WORK [F] [CLASSES...]
# WORK is balance_all_classes.sh's WORK (default work/balance-all-classes); F defaults to 0.5.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
B=${MEDSYNTH_BIN:-$ROOT/.build/release/medsynth}
WORK=$(cd "${1:-work/balance-all-classes}" && pwd)
F=${2:-0.5}
shift $(( $# < 2 ? $# : 2 ))
CLASSES=("$@")
[ ${#CLASSES[@]} -gt 0 ] || CLASSES=(0 1 2 3 4 5 6 7 8 9)
SEEDS=${SEEDS:-3}
EPOCHS=${EPOCHS:-40}
for c in "${CLASSES[@]}"; do
    d="$WORK/class-$c"
    [ -f "$d/gan/model.safetensors" ] || { echo "no GAN in $d: run balance_all_classes.sh first" >&2; exit 2; }
    (
        cd "$d"
        rm -rf "bal-copies-$F" "utility-copies-$F"
        $B balance --data train --model gan --real-copies "$F" --out "bal-copies-$F" --seed 1 --progress none > "balance-copies-$F.log"
        $B utility --data train --synthetic bal-oversample --synthetic bal-gan --synthetic "bal-copies-$F" --test test \
            --seeds "$SEEDS" --epochs "$EPOCHS" --out "utility-copies-$F" --progress none > "utility-copies-$F.txt"
    )
done
python3 - "$WORK" "$F" "${CLASSES[@]}" <<'PY' | tee "$WORK/summary-copies-$F.txt"
import os, sys
sys.path.insert(0, "scripts/experiments")
from rare_recall import cell, rows_by_set
work, f, classes = sys.argv[1], sys.argv[2], sys.argv[3:]
names = ["real only", "oversample", "GAN", f"GAN + {float(f):.0%} copies"]
print(f"rare-class recall, mean over seeds [95% t-interval] (balanced accuracy)")
print(f"{'class':>5}  " + "  ".join(f"{n:>26}" for n in names))
sums = [[] for _ in names]
for c in classes:
    rows = list(rows_by_set(os.path.join(work, f"class-{c}", f"utility-copies-{f}", "utility.json"), c).values())
    cells = []
    for i, entry in enumerate(rows):
        sums[i].append((entry[0]["mean"], entry[1]))
        cells.append(cell(entry))
    print(f"{c:>5}  " + "  ".join(f"{x:>26}" for x in cells))
print(f"{'mean':>5}  " + "  ".join(f"{sum(m for m, _ in s) / len(s):.3f} ({sum(b for _, b in s) / len(s):.3f})".rjust(26) for s in sums))
PY
