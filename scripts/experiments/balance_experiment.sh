#!/usr/bin/env bash
# Issue 14's balancing experiment on a public labelled image set that a pip package ships:
# scikit-learn's bundled digits (1,797 8×8 images, 10 classes; written as 32×32 PNGs). One class
# (default 8) is cut to 15 training images; 30 % of every class is held out as the test set. The
# fixed utility classifier (Sources/Evaluation/Utility.swift) is trained on the cut training set
# alone and with each balanced set's synthetic images, over several seeds, and tested on the
# held-out images (`medsynth utility`). Rows: real only; random oversampling; SMOTE in pixel space;
# augmented copies (`--method augment`, session 22); a conditional DCGAN trained on the cut set with `medsynth balance --model` (memorisation filter,
# and with --min-confidence); and all real training images of the rare class (the upper bound).
# The compositor does not apply: digits have no healthy/lesion structure to composite into.
#   [DIFFUSION_STEPS=N] [LATENT_GAN_STEPS=N] bash scripts/experiments/balance_experiment.sh [GAN_STEPS] [SEEDS] [WORK]
# GAN_STEPS defaults to 6,000 (session 5: rare recall 0.877 against 0.827 after 1,500 steps).
# GAN_STEPS 0 skips the GAN rows; DIFFUSION_STEPS > 0 adds a conditional diffusion row; LATENT_GAN_STEPS > 0
# a latent-GAN row (VAE + latent GAN, about 30 CPU-min at 6,000 steps); CONFIDENT=0 skips
# the --min-confidence GAN row; RARE picks the rare class (default 8). Needs numpy and scikit-learn
# (installed with pip when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
B=${MEDSYNTH_BIN:-$ROOT/.build/release/medsynth}
GAN_STEPS=${1:-6000}
SEEDS=${2:-3}
WORK=${3:-$ROOT/work/balance-experiment}
DIFFUSION_STEPS=${DIFFUSION_STEPS:-0}
LATENT_GAN_STEPS=${LATENT_GAN_STEPS:-0}
RARE=${RARE:-8}
RARE_COUNT=${RARE_COUNT:-15}
EPOCHS=${EPOCHS:-40}
python3 -c "import sklearn, numpy" 2>/dev/null || python3 -m pip install --quiet scikit-learn numpy
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
python3 "$ROOT/scripts/experiments/make_digits_sets.py" . "$RARE" "$RARE_COUNT" 0
# "All real": the rare class's other training images, added as if they were synthetic.
mkdir -p allreal && cp -r rest/"$RARE" allreal/
SETS=(--synthetic bal-oversample --synthetic bal-smote --synthetic bal-augment)
$B balance --data train --method oversample --out bal-oversample --seed 1 --progress none | tail -1
$B balance --data train --method smote --neighbours 5 --out bal-smote --seed 1 --progress none | tail -1
$B balance --data train --method augment --out bal-augment --seed 1 --progress none | tail -1
if [ "$GAN_STEPS" -gt 0 ]; then
    start=$(date +%s)
    $B train gan --data train --out gan --conditional --image-size 32 --width 32 --steps "$GAN_STEPS" --batch 32 \
        --seed 1 --checkpoint-every "$GAN_STEPS" --sample-every "$GAN_STEPS" --progress none
    echo "GAN: $GAN_STEPS steps in $(( $(date +%s) - start )) s"
    $B balance --data train --model gan --out bal-gan --seed 1 --progress none | grep -v '^ '
    SETS+=(--synthetic bal-gan)
    # The confidence filter refuses to go on when too few samples pass it (a generator drawing off-class images).
    if [ "${CONFIDENT:-1}" != 0 ] && $B balance --data train --model gan --out bal-gan-confident --min-confidence 0.5 --seed 1 --progress none | grep -v '^ '; then
        SETS+=(--synthetic bal-gan-confident)
    fi
fi
# Latent GAN (session 20): a factor-4 VAE (8×8×4 latents) trained on the same cut training set, then
# the mni64 latent-GAN recipe (width 256, 2 extra 3×3 layers) on its latents; memorisation filter.
if [ "$LATENT_GAN_STEPS" -gt 0 ]; then
    start=$(date +%s)
    $B train vae --data train --out vae --image-size 32 --width 16 --downsampling-factor 4 --latent-channels 4 \
        --steps 2000 --batch 16 --learning-rate 1e-3 --seed 1 --checkpoint-every 2000 --sample-every 2000 --progress none
    $B train gan --data train --autoencoder vae/model.safetensors --out lgan --conditional --image-size 32 \
        --width 256 --extra-layers 2 --steps "$LATENT_GAN_STEPS" --batch 32 --seed 1 \
        --checkpoint-every "$LATENT_GAN_STEPS" --sample-every "$LATENT_GAN_STEPS" --progress none
    echo "VAE + latent GAN: $LATENT_GAN_STEPS steps in $(( $(date +%s) - start )) s"
    $B balance --data train --model lgan --out bal-lgan --seed 1 --progress none | grep -v '^ '
    SETS+=(--synthetic bal-lgan)
fi
# Conditional diffusion (base 16 at 32 px, the default recipe), balanced with DPM-Solver++ 20 steps.
if [ "$DIFFUSION_STEPS" -gt 0 ]; then
    start=$(date +%s)
    $B train diffusion --data train --out diffusion --conditional --image-size 32 --width 16 --steps "$DIFFUSION_STEPS" --batch 32 \
        --seed 1 --checkpoint-every "$DIFFUSION_STEPS" --sample-every "$DIFFUSION_STEPS" --progress none
    echo "diffusion: $DIFFUSION_STEPS steps in $(( $(date +%s) - start )) s"
    $B balance --data train --model diffusion --out bal-diffusion --sampler dpm --sampling-steps 20 --seed 1 --progress none | grep -v '^ '
    SETS+=(--synthetic bal-diffusion)
fi
SETS+=(--synthetic allreal)
$B utility --data train "${SETS[@]}" --test test --seeds "$SEEDS" --epochs "$EPOCHS" --out utility --progress none > utility.txt
cat utility.txt
python3 - utility/utility.json "$RARE" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); rare = sys.argv[2]
print(f"\nrare class {rare}: recall of the fixed classifier, mean [95% t-interval] over seeds {r['seeds']}, {r['test_images'][0]} test images")
for row in r["rows"]:
    rec = row["per_class_recall"][rare]
    gain = row.get("per_class_recall_gain") or {}
    g = f"   gain {gain[rare]['mean']:+.3f} [{gain[rare]['ci95_low']:+.3f}, {gain[rare]['ci95_high']:+.3f}]" if rare in gain else ""
    print(f"  {row['training_data']:<32} {rec['mean']:.3f} [{rec['ci95_low']:.3f}, {rec['ci95_high']:.3f}]"
          f"   balanced acc. {row['balanced_accuracy']['mean']:.3f}{g}")
PY
