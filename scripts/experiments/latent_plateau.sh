#!/usr/bin/env bash
# Issue 13, session 4: what moves the latent model's FD plateau (≈ 17 at 6,000 steps)? Trains one
# variant of the shipped latent recipe (base 16, batch 32, seed 6, the two-class set of
# scripts/train_models.sh) and evaluates every 1,000th checkpoint with issue 12's protocol
# (diffusion_eval.sh checkpoints: 80 healthy DPM-Solver++ 20 samples vs the 80 even real slices).
#   bash scripts/experiments/latent_plateau.sh VARIANT [STEPS]
# VARIANT: default | lr3e-4 | linear | epsilon | snr4 | snr16 | width32 | decoder-noise
#          | scale-equivariance | kl1e-3 | kl1e-2 | channel | cosine
#          | v-uniform | gamma20 | levels3 | levels2 | centred | ip01
# levels3: --channel-multipliers 1,2,2 (16, 8, 4 px; the default 1,2,4,4 goes down to 2 px);
# levels2: --channel-multipliers 2,4 (32 and 64 channels at 16 and 8 px, as UNet-S base 16 at those sides).
# channel: --latent-normalisation channel (each latent channel to mean 0, std 1); cosine: --lr-schedule
# cosine (the rate decays to 0 at STEPS, so only the last checkpoint has the finished schedule). Session 5.
# The last three first fine-tune the shipped VAE for 600 steps on the even half (--init-from) with
# the scale-equivariance term (Skorokhodov et al. 2025) or a larger KL weight, then train on it.
# decoder-noise trains nothing: it decodes the odd half's latents with noise of 0.1 and 0.3 latent
# std (`reconstruct --latent-noise`) and evaluates them, i.e. how much latent error the decoder tolerates.
# LATENT_WIDTH overrides the U-Net's base width. Session 8: `LATENT_WIDTH=32 … cosine 10000` and
# `LATENT_WIDTH=64 … cosine 8000` (README, "Session 8: a cosine learning-rate decay").
# LATENT_BATCH overrides the batch (32); LATENT_THREADS sets --threads (the bits do not depend on it).
# Needs MEDSYNTH_WORK (default work/models) with mni64-2class from scripts/train_models.sh.
# Sessions 4–5 measured these on the factor-4, 4-channel VAE shipped then: to repeat them, set
# LATENT_VAE to that file (`git show f7fd817:models/vae-mni64.safetensors > vae-f4.safetensors`)
# and VAE_FACTOR=4 VAE_CHANNELS=4; the defaults are the factor-8, 16-channel VAE shipped since session 6.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${MEDSYNTH_BIN:-.build/release/medsynth}
W=$(cd "${MEDSYNTH_WORK:-work/models}" && pwd)
OUT=${MEDSYNTH_PLATEAU_OUT:-work/latent-plateau}
variant=${1:?variant}
STEPS=${2:-6000}
mkdir -p "$OUT/even/healthy" "$OUT/odd/healthy"
if [ -z "$(ls "$OUT/even/healthy")" ]; then
    i=0
    for f in $(ls datasets/mni64/healthy | sort); do
        if [ $((i % 2)) -eq 0 ]; then cp "datasets/mni64/healthy/$f" "$OUT/even/healthy/"; else cp "datasets/mni64/healthy/$f" "$OUT/odd/healthy/"; fi
        i=$((i + 1))
    done
fi
AE=${LATENT_VAE:-models/vae-mni64.safetensors}
extra=()
finetune() {  # finetune NAME VAE-OPTIONS...
    local name=$1; shift
    $B train vae --data "$OUT/even" --out "$OUT/vae-$name" --width 16 --steps 600 --batch 16 --learning-rate 5e-4 --seed 11 \
        --checkpoint-every 100 --sample-every 200 --init-from "$AE" --downsampling-factor ${VAE_FACTOR:-8} \
        --latent-channels ${VAE_CHANNELS:-16} --resume --progress none "$@"
    $B reconstruct --model "$OUT/vae-$name/model.safetensors" "$OUT/odd" "$OUT/recon-$name" --progress none
    AE="$OUT/vae-$name/model.safetensors"
}
case "$variant" in
    default) ;;
    lr3e-4) extra=(--learning-rate 3e-4) ;;
    linear) extra=(--schedule linear) ;;
    epsilon) extra=(--target epsilon --loss-weighting uniform) ;;
    snr4) extra=(--snr-shift 4) ;;
    snr16) extra=(--snr-shift 16) ;;
    channel) extra=(--latent-normalisation channel) ;;
    centred) extra=(--latent-normalisation centred) ;;   # session 10: channel means removed, global scale kept
    ip01) extra=(--input-perturbation 0.1) ;;   # session 10: Ning et al. 2023's input perturbation
    cosine) extra=(--lr-schedule cosine) ;;
    v-uniform) extra=(--loss-weighting uniform) ;;   # plain v-MSE: x0 weight SNR + 1, more weight on low noise
    gamma20) extra=(--min-snr-gamma 20) ;;
    levels3) extra=(--channel-multipliers 1,2,2) ;;
    levels2) extra=(--channel-multipliers 2,4) ;;
    width32) ;;
    scale-equivariance) finetune se --scale-equivariance 1 ;;
    kl1e-3) finetune kl1e-3 --kl-weight 1e-3 ;;
    kl1e-2) finetune kl1e-2 --kl-weight 1e-2 ;;
    decoder-noise)
        for s in 0 0.1 0.3; do
            $B reconstruct --model "$AE" --latent-noise "$s" "$OUT/odd" "$OUT/noise-$s" --progress none | tail -1
            $B evaluate --real "$OUT/even" --synthetic "$OUT/noise-$s" --out "$OUT/report-noise-$s" --progress none > /dev/null 2>&1
            python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print('latent noise $s: FD', round(r['overall']['fid'], 3), 'KID', round(r['overall']['kid_mean'], 4))" "$OUT/report-noise-$s/report.json" 2>/dev/null \
                || echo "latent noise $s: see $OUT/report-noise-$s/report.html"
        done
        exit 0 ;;
    *) echo "unknown variant $variant" >&2; exit 2 ;;
esac
width=16
[ "$variant" = width32 ] && width=32
width=${LATENT_WIDTH:-$width}
tag="$variant${LATENT_WIDTH:+-w$LATENT_WIDTH}${LATENT_BATCH:+-b$LATENT_BATCH}"
run="$OUT/runs/$tag"
EVAL_NAME="$tag"
$B train diffusion --data "$W/mni64-2class" --autoencoder "$AE" --out "$run" --conditional --width $width \
    --batch ${LATENT_BATCH:-32} --seed 6 --steps "$STEPS" --checkpoint-every 500 --sample-every 1000 --resume --progress none ${LATENT_THREADS:+--threads $LATENT_THREADS} ${extra[@]+"${extra[@]}"}
EVAL_OUT="$OUT/eval-$EVAL_NAME" MEDSYNTH_BIN="$B" CKPT_STRIDE=1000 bash scripts/experiments/diffusion_eval.sh checkpoints "$run"
