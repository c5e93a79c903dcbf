#!/usr/bin/env bash
# Issue 14, session 21: how much of a GAN row in balance_all_classes.sh is the GAN's own training
# seed, and does balancing with several GANs at once (`balance --model A --model B ...`) help the
# rare class? Reads a balance_all_classes.sh work folder (WORK/class-C/ with train/, test/, gan/ and
# bal-gan/ from it), trains GANs with seeds 2..K on the same cut training set and the same recipe
# (WORK/class-C/gan-sN/, kept when already there), balances with each alone (bal-gan-sN) and with all
# K pooled (bal-gan-pool, the class's generated images split between the K GANs), and runs the
# utility classifier (same seeds, epochs and test images as balance_experiment.sh) on real only,
# each GAN alone and the pool. Two classes at a time (one per core; each GAN trains on one thread).
# LONG_STEPS=N adds the same CPU spent on one GAN instead: a copy of the seed-1 GAN trained on to N
# steps (gan-long/, bal-gan-long; N = K × the recipe's steps matches the pool's training cost).
#   [LONG_STEPS=N] bash scripts/experiments/balance_gan_seeds.sh WORK [K] [SEEDS] [CLASSES...]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
B=${MEDSYNTH_BIN:-$ROOT/.build/release/medsynth}
WORK=$(cd "${1:?usage: balance_gan_seeds.sh WORK [K] [SEEDS] [CLASSES...]}" && pwd)
K=${2:-3}
SEEDS=${3:-3}
EPOCHS=${EPOCHS:-40}
shift $(( $# < 3 ? $# : 3 ))
CLASSES=("$@")
[ ${#CLASSES[@]} -gt 0 ] || CLASSES=(0 1 2 3 4 5 6 7 8 9)
one_class() {
    local dir=$WORK/class-$1
    cd "$dir"
    [ -f gan/model.safetensors ] && [ -d bal-gan ] || { echo "class $1: no gan/ and bal-gan/ from balance_all_classes.sh in $dir"; return 1; }
    local steps
    steps=$(python3 -c "import json; print(json.load(open('gan/run.json'))['steps'])")
    local sets=(--synthetic bal-gan) pool=(--model gan)
    for s in $(seq 2 "$K"); do
        if [ ! -f "gan-s$s/model.safetensors" ]; then
            start=$(date +%s)
            $B train gan --data train --out "gan-s$s" --conditional --image-size 32 --width 32 --steps "$steps" --batch 32 \
                --seed "$s" --checkpoint-every "$steps" --sample-every "$steps" --progress none --threads 1
            echo "GAN seed $s: $steps steps in $(( $(date +%s) - start )) s"
        fi
        [ -d "bal-gan-s$s" ] || $B balance --data train --model "gan-s$s" --out "bal-gan-s$s" --seed 1 --progress none | grep '^filtered'
        sets+=(--synthetic "bal-gan-s$s")
        pool+=(--model "gan-s$s")
    done
    rm -rf bal-gan-pool
    $B balance --data train "${pool[@]}" --out bal-gan-pool --seed 1 --progress none | grep '^filtered'
    sets+=(--synthetic bal-gan-pool)
    if [ "${LONG_STEPS:-0}" -gt 0 ]; then
        if [ ! -f gan-long/checkpoints/step-$(printf %06d "$LONG_STEPS").safetensors ]; then
            rm -rf gan-long && cp -rL gan gan-long
            start=$(date +%s)
            $B train gan --data train --out gan-long --conditional --image-size 32 --width 32 --steps "$LONG_STEPS" --batch 32 \
                --seed 1 --checkpoint-every "$LONG_STEPS" --sample-every "$LONG_STEPS" --progress none --threads 1 --resume
            echo "GAN seed 1 trained on to $LONG_STEPS steps in $(( $(date +%s) - start )) s"
        fi
        rm -rf bal-gan-long
        $B balance --data train --model gan-long --out bal-gan-long --seed 1 --progress none | grep '^filtered'
        sets+=(--synthetic bal-gan-long)
    fi
    $B utility --data train "${sets[@]}" --test test --seeds "$SEEDS" --epochs "$EPOCHS" --out utility-gan-seeds --progress none > utility-gan-seeds.txt
}
logged_class() {
    ( one_class "$1" ) > "$WORK/gan-seeds-class-$1.log" 2>&1 || echo "class $1 failed: see $WORK/gan-seeds-class-$1.log"
}
source "$ROOT/scripts/experiments/two_lanes.sh"
run_in_two_lanes logged_class "${CLASSES[@]}"
python3 - "$WORK" "$K" "${CLASSES[@]}" <<'PY' | tee "$WORK/gan-seeds-summary.txt"
import os, sys
sys.path.insert(0, "scripts/experiments")
from rare_recall import cell, mean_cell, rows_by_set
work, k, classes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
columns = ["real"] + ["bal-gan"] + [f"bal-gan-s{s}" for s in range(2, k + 1)] + ["bal-gan-pool"]
titles = ["real only"] + [f"GAN seed {s}" for s in range(1, k + 1)] + ["mean of seeds", f"pool of {k}", "seed 1 trained longer"]
print("rare-class recall, mean over classifier seeds [95% t-interval] (balanced accuracy)")
print(f"{'class':>5}  " + "  ".join(f"{t:>26}" for t in titles))
for c in classes:
    path = os.path.join(work, f"class-{c}", "utility-gan-seeds", "utility.json")
    if not os.path.exists(path):
        print(f"{c:>5}  (no result)"); continue
    rows = rows_by_set(path, c)
    cells = [cell(rows[key]) if key in rows else "-" for key in columns[:-1]] + [mean_cell([rows[key] for key in columns[1:-1] if key in rows])] \
        + [cell(rows[key]) if key in rows else "-" for key in ("bal-gan-pool", "bal-gan-long")]
    print(f"{c:>5}  " + "  ".join(f"{x:>26}" for x in cells))
PY
