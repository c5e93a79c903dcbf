#!/usr/bin/env bash
# Issue 12: short, back-to-back runs that decided the default diffusion recipe (SIZE=32 for a
# 4x cheaper check on 32x32 slices, as used on the loaded machine).
# Each variant trains a base-16 conditional U-Net for $STEPS steps of batch 24 on the two-class
# mni64 set of scripts/train_models.sh, then prints (train diffusion --report) the x0 MSE per timestep
# against the exact optimal denoiser of the training set and the 4x4 corner mean of 16 DDIM-50
# samples per class (data background: -1). Run from the repository root after a release build:
#   bash scripts/experiments/diffusion_recipe.sh [STEPS] [variant ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${MEDSYNTH_BIN:-.build/release/medsynth}
W=${MEDSYNTH_WORK:-work/models}
OUT=${RECIPE_OUT:-work/recipe}
STEPS=${1:-400}
shift || true
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(default uniform legacy-v legacy no-zero-init lr5e-4)
MEDSYNTH_BIN=$B MEDSYNTH_WORK=$W bash scripts/train_models.sh data
mkdir -p "$OUT"
for v in "${variants[@]}"; do
    case $v in
        default)      flags=() ;;                                   # v, min-SNR-5, LR 1e-3, warm-up 100, clip 1, zero-init, class scale 0.1
        uniform)      flags=(--loss-weighting uniform) ;;
        min-snr)      flags=(--loss-weighting min-snr) ;;
        min-snr-truncated) flags=(--loss-weighting min-snr-truncated) ;;
        legacy-v)     flags=(--legacy-recipe --target v) ;;         # the issue's "only --target v" baseline
        legacy)       flags=(--legacy-recipe) ;;                    # ε, LR 2e-4: the shipped model's recipe
        no-zero-init) flags=(--zero-init false --class-embedding-scale 1) ;;
        lr5e-4)       flags=(--learning-rate 5e-4) ;;
        lr2e-3)       flags=(--learning-rate 2e-3) ;;
        ema0.995)     flags=(--ema-decay 0.995) ;;
        epsilon)      flags=(--target epsilon) ;;
        *) echo "unknown variant $v" >&2; exit 2 ;;
    esac
    rm -rf "$OUT/$v"
    start=$(date +%s)
    $B train diffusion --data "$W/mni64-2class" --out "$OUT/$v" --conditional --width 16 --steps "$STEPS" --image-size "${SIZE:-64}" \
        --batch 24 --seed 4 --checkpoint-every 100000 --sample-every "$STEPS" --report 16 ${THREADS:+--threads $THREADS} \
        "${flags[@]}" --progress json 2> "$OUT/$v.progress.jsonl" | tee "$OUT/$v.report.txt"
    echo "variant $v: $STEPS steps in $(( $(date +%s) - start )) s wall" | tee -a "$OUT/$v.report.txt"
done
