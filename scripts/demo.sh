#!/usr/bin/env bash
# The main job on the embedded default: the shipped mni64 brain slices and the shipped models.
# Installs missing system packages, builds, then: generates with the shipped generators,
# composites procedural lesions into healthy slices (with masks), balances a rare lesion class,
# evaluates synthetic against real slices, and prints the path of the HTML report.
#   bash scripts/demo.sh [OUTPUT_FOLDER]      (default: demo-output)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --product medsynth
B=.build/release/medsynth
OUT=${1:-demo-output}
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1. Generate with the shipped models (class-conditional: healthy / lesion)"
$B generate --model models/dcgan-mni64-cond.safetensors --count 64 --class healthy --out "$OUT/gan-healthy" --seed 1
$B generate --model models/dcgan-mni64-cond.safetensors --count 32 --class lesion --out "$OUT/gan-lesion" --seed 2
if [ -f models/diffusion-mni64-cond.safetensors ]; then
    $B generate --model models/diffusion-mni64-cond.safetensors --count 16 --class lesion \
        --sampler dpm --sampling-steps 20 --guidance 2 --out "$OUT/diffusion-lesion" --seed 3
fi

echo "== 2. Composite procedural lesions into healthy slices (images/, masks/, manifest.jsonl)"
$B lesions --out "$OUT/lesions" --count 40 --size 24 --polarity mixed --seed 4
$B composite --backgrounds datasets/mni64/healthy --lesions "$OUT/lesions" --out "$OUT/composite" \
    --per-image 1 --contrast +40% --seed 5

echo "== 3. Balance a rare class: 159 healthy slices, 10 with a lesion"
mkdir -p "$OUT/rare/healthy" "$OUT/rare/lesion"
cp datasets/mni64/healthy/*.png "$OUT/rare/healthy/"
ls "$OUT/composite/images" | head -10 | while read -r f; do cp "$OUT/composite/images/$f" "$OUT/rare/lesion/"; done
$B balance --data "$OUT/rare" --model models/dcgan-mni64-cond.safetensors --target max --out "$OUT/balanced" --seed 6 --dry-run
$B balance --data "$OUT/rare" --model models/dcgan-mni64-cond.safetensors --target max --out "$OUT/balanced" --seed 6

echo "== 4. Evaluate the synthetic healthy slices against the real ones"
$B evaluate --real datasets/mni64/healthy --synthetic "$OUT/gan-healthy" --out "$OUT/report"
echo
echo "Demo finished. Open $(cd "$OUT" && pwd)/report/report.html"
