#!/usr/bin/env bash
# Issue 13's evaluation of the shipped latent model beside the pixel model: 80 healthy samples
# each (DPM-Solver++ 20 steps, guidance 2) against the odd-indexed real slices of datasets/mni64,
# and the real-vs-real baseline (even-indexed against odd-indexed slices). Run after
# scripts/experiments/latent_experiment.sh (which makes the split) from the repository root.
#   bash scripts/experiments/latent_evaluate.sh [MODEL ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${MEDSYNTH_BIN:-.build/release/medsynth}
W=${MEDSYNTH_WORK:-work/latent-experiment}
[ -d "$W/mni64-odd/healthy" ] || { echo "run scripts/experiments/latent_experiment.sh first (it makes the even/odd split)" >&2; exit 1; }
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(models/latent-diffusion-mni64-cond.safetensors models/diffusion-mni64-cond.safetensors)

summary() {  # FD, KID, precision, recall, coverage of a report.json
    python3 - "$1" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))["overall"]
p = o["prdc"]
print(f"FD {o['fid']:.1f}, KID {o['kid_mean']:.3f} ± {o['kid_std']:.3f}, precision {p['precision']:.2f}, recall {p['recall']:.2f}, coverage {p['coverage']:.2f}")
PY
}

$B evaluate --real "$W/mni64-odd/healthy" --synthetic "$W/mni64-even/healthy" --out "$W/eval-real-vs-real" > /dev/null
echo "real (even) vs real (odd): $(summary "$W/eval-real-vs-real/report.json")"
for model in "${models[@]}"; do
    name=$(basename "$model" .safetensors)
    rm -rf "$W/samples-$name"
    $B generate --model "$model" --count 80 --class healthy --sampler dpm --sampling-steps 20 --guidance 2 \
        --seed 7 --out "$W/samples-$name" --progress none > /dev/null
    $B evaluate --real "$W/mni64-odd/healthy" --synthetic "$W/samples-$name" --out "$W/eval-$name" > /dev/null
    echo "$name (80 healthy, DPM 20, w 2): $(summary "$W/eval-$name/report.json")"
done
