#!/usr/bin/env bash
# Issue 13's measurements: VAE reconstruction on held-out slices, latent vs pixel U-Net training
# cost, latent sampling speed. Run from the repository root after `swift build -c release`.
#   bash scripts/experiments/latent_experiment.sh [VAE_STEPS] [VAE_WIDTH] [LEARNING_RATE]
# The VAE trains on the even-indexed files of datasets/mni64/healthy (sorted by name) and is tested
# on the odd-indexed ones. Prefix with `nice -n 5` on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${MEDSYNTH_BIN:-.build/release/medsynth}
W=${MEDSYNTH_WORK:-work/latent-experiment}
STEPS=${1:-2000}
WIDTH=${2:-16}
LR=${3:-1e-3}
mkdir -p "$W"

# 1. The split: even-indexed slices train, odd-indexed slices are held out.
if [ ! -d "$W/mni64-odd/healthy" ]; then
    rm -rf "$W/mni64-even" "$W/mni64-odd"
    mkdir -p "$W/mni64-even/healthy" "$W/mni64-odd/healthy"
    i=0
    for f in $(ls datasets/mni64/healthy | sort); do
        if [ $((i % 2)) -eq 0 ]; then cp "datasets/mni64/healthy/$f" "$W/mni64-even/healthy/"; else cp "datasets/mni64/healthy/$f" "$W/mni64-odd/healthy/"; fi
        i=$((i + 1))
    done
fi

# 2. VAE on the training half (factor 4, 4 latent channels), then reconstruction of both halves.
$B train vae --data "$W/mni64-even" --out "$W/runs/vae-even-w$WIDTH" --width "$WIDTH" --steps "$STEPS" --batch 16 \
    --learning-rate "$LR" --seed 1 --checkpoint-every 100 --sample-every 100 --resume
echo "== held-out half (odd-indexed slices)"
$B reconstruct --model "$W/runs/vae-even-w$WIDTH" "$W/mni64-odd" "$W/recon-odd-w$WIDTH" --progress none
echo "== training half (even-indexed slices)"
$B reconstruct --model "$W/runs/vae-even-w$WIDTH" "$W/mni64-even" "$W/recon-even-w$WIDTH" --progress none

# 3. Training cost per image and sampling speed (one process, back to back).
$B bench --only unet64_train_step_b32,latent16x4_train_step_b32,latent16x4_forward_b16,unet64_forward_b16,latent_dpm20_sample_b16 \
    --repetitions 3 | tee "$W/bench.jsonl"
python3 - "$W/bench.jsonl" <<'PY'
import json, sys
rows = {r["workload"]: r for r in map(json.loads, open(sys.argv[1]))}
pixel, latent = rows["unet64_train_step_b32"], rows["latent16x4_train_step_b32"]
print(f"training step per image: pixel {1000 / pixel['images_per_s']:.1f} ms, latent {1000 / latent['images_per_s']:.1f} ms, "
      f"latent is {latent['images_per_s'] / pixel['images_per_s']:.1f}x cheaper")
print(f"sampling, DPM-Solver 20 steps incl. VAE decode: {rows['latent_dpm20_sample_b16']['images_per_s']:.2f} images/s")
PY
