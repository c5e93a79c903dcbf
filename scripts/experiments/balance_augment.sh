#!/usr/bin/env bash
# Issue 14, session 22: classical augmentation (`balance --method augment`: random copies rotated,
# scaled per axis and shifted; Frid-Adar et al. 2018) as the rare class's balancing, on the digits
# protocol of balance_all_classes.sh (same cut training sets, test images, classifier seeds and
# epochs, so its real-only row reproduces that script's). Per class: WORK/class-C/ (made with
# make_digits_sets.py when it has no train/), bal-augment/, and utility-augment/ (real only vs real +
# augmented copies). With MIX=F also bal-gan-pool-augmented: the class's GANs gan, gan-s2, ... (from
# balance_gan_seeds.sh) with a fraction F of augmented copies (`--real-copies F --augment-copies`; classes without gan/ get no such row).
# Two classes at a time; the rare-class recall table is written to WORK/augment-summary.txt.
#   [MIX=F] bash scripts/experiments/balance_augment.sh WORK [SEEDS] [CLASSES...]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
B=${MEDSYNTH_BIN:-$ROOT/.build/release/medsynth}
mkdir -p "${1:?usage: balance_augment.sh WORK [SEEDS] [CLASSES...]}"
WORK=$(cd "$1" && pwd)
SEEDS=${2:-3}
EPOCHS=${EPOCHS:-40}
shift $(( $# < 2 ? $# : 2 ))
CLASSES=("$@")
[ ${#CLASSES[@]} -gt 0 ] || CLASSES=(0 1 2 3 4 5 6 7 8 9)
one_class() {
    local dir=$WORK/class-$1
    mkdir -p "$dir" && cd "$dir"
    [ -d train ] || python3 "$ROOT/scripts/experiments/make_digits_sets.py" . "$1" 15 0
    rm -rf bal-augment
    $B balance --data train --method augment --out bal-augment --seed 1 --progress none | tail -1
    local sets=(--synthetic bal-augment)
    if [ -n "${MIX:-}" ] && [ ! -e gan/model.safetensors ]; then
        echo "class $1: no gan/ (balance_all_classes.sh, balance_gan_seeds.sh): no GANs + augmented copies row"
    elif [ -n "${MIX:-}" ]; then
        local models=(--model gan)
        for g in gan-s*; do [ -e "$g/model.safetensors" ] && models+=(--model "$g"); done
        rm -rf bal-gan-pool-augmented
        $B balance --data train "${models[@]}" --real-copies "$MIX" --augment-copies --out bal-gan-pool-augmented --seed 1 --progress none | grep '^filtered'
        sets+=(--synthetic bal-gan-pool-augmented)
    fi
    $B utility --data train "${sets[@]}" --test test --seeds "$SEEDS" --epochs "$EPOCHS" --out utility-augment --progress none > utility-augment.txt
}
logged_class() {
    ( one_class "$1" ) > "$WORK/augment-class-$1.log" 2>&1 || echo "class $1 failed: see $WORK/augment-class-$1.log"
}
source "$ROOT/scripts/experiments/two_lanes.sh"
run_in_two_lanes logged_class "${CLASSES[@]}"
python3 - "$WORK" "${CLASSES[@]}" <<'PY' | tee "$WORK/augment-summary.txt"
import os, sys
sys.path.insert(0, "scripts/experiments")
from rare_recall import print_table
work, classes = sys.argv[1], sys.argv[2:]
names = {"real": "real only", "bal-augment": "augmented copies", "bal-gan-pool-augmented": "GANs + augmented copies"}
print_table(work, classes, "utility-augment", names, "rare-class recall, mean over classifier seeds [95% t-interval] (balanced accuracy)")
PY
