#!/usr/bin/env bash
# Issue 7's utility comparison on the shipped data: healthy vs lesion with the lesion class cut to
# 10 real images, then balanced by (a) repetition, (b) the diffusion model (pixel, and latent since
# session 7), (c) the GAN (and the latent GAN since session 19), (d) the
# compositor; a small CNN is trained on each and tested on held-out real slices (every 4th slice,
# split by slice so a test slice's healthy and lesion versions never meet training).
# Needs the two-class set made by scripts/train_models.sh (MEDSYNTH_WORK, default work/models).
#   bash scripts/experiments/utility_experiment.sh [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
B=${MEDSYNTH_BIN:-$ROOT/.build/release/medsynth}
SRC=$(cd "${MEDSYNTH_WORK:-work/models}" 2>/dev/null && pwd)/mni64-2class
OUT=${MEDSYNTH_UTILITY_OUT:-$ROOT/work/utility}
EPOCHS=${1:-60}
[ -d "$SRC/lesion" ] || { echo "run scripts/train_models.sh first (no $SRC)" >&2; exit 1; }
rm -rf "$OUT" && mkdir -p "$OUT" && cd "$OUT"
python3 - "$SRC" <<'PY'
import os, shutil, sys
src = sys.argv[1]
names = sorted(os.listdir(f'{src}/healthy'))
test = set(names[::4]); train = [n for n in names if n not in test]
for c in ['healthy', 'lesion']:
    os.makedirs(f'test/{c}')
    for n in sorted(test): shutil.copy(f'{src}/{c}/{n}', f'test/{c}/')
os.makedirs('train/healthy'); os.makedirs('train/lesion'); os.makedirs('rep/lesion')
for n in train: shutil.copy(f'{src}/healthy/{n}', 'train/healthy/')
rare = train[::max(1, len(train) // 10)][:10]
for n in rare: shutil.copy(f'{src}/lesion/{n}', 'train/lesion/')
for i in range(len(train) - 10): shutil.copy(f'train/lesion/{rare[i % 10]}', f'rep/lesion/rep_{i:03d}_{rare[i % 10]}')
PY
ADD=$(( $(ls train/healthy | wc -l) - 10 ))
$B generate --model "$ROOT/models/dcgan-mni64-cond.safetensors" --class lesion --count $ADD --out gan/lesion --seed 21 --progress none
$B generate --model "$ROOT/models/diffusion-mni64-cond.safetensors" --class lesion --count $ADD --sampler dpm --sampling-steps 15 --out dm/lesion --seed 24 --progress none
$B generate --model "$ROOT/models/latent-diffusion-mni64-cond.safetensors" --class lesion --count $ADD --sampler dpm --sampling-steps 20 --out ldm/lesion --seed 25 --progress none
[ -f "$ROOT/models/latent-gan-mni64-cond.safetensors" ] && \
    $B generate --model "$ROOT/models/latent-gan-mni64-cond.safetensors" --class lesion --count $ADD --out lgan/lesion --seed 26 --progress none
rm -f gan/lesion/manifest.jsonl dm/lesion/manifest.jsonl ldm/lesion/manifest.jsonl lgan/lesion/manifest.jsonl
$B lesions --out les --count 60 --size 24 --polarity mixed --seed 22
$B composite --backgrounds train/healthy --lesions les --out compo --per-image 1 --contrast +40% --seed 23 --progress none
mkdir -p comp/lesion && ls compo/images | head -$ADD | while read -r f; do cp "compo/images/$f" comp/lesion/; done
for m in rep dm ldm gan lgan comp; do
    [ -d "$m" ] || continue
    echo "== $m"
    $B evaluate --real train --synthetic $m --utility --utility-epochs "$EPOCHS" --test test --out "ev-$m" --progress none | grep '^utility'
done
