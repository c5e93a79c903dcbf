#!/usr/bin/env bash
# Issue 14: short runs, one at a time, that chose the default GAN recipe. Each variant trains the
# class-conditional DCGAN (width 32, batch 32, seed 3) on the two-class mni64 set of
# scripts/train_models.sh for STEPS steps, with a checkpoint every EVERY steps, and scores every
# checkpoint's EMA generator with scripts/experiments/diffusion_eval.sh's `gan` protocol
# (80 healthy samples, seed 0, against the 80 even-indexed real slices; real-vs-real FD 2.53).
# CPU-minutes are the training process's user + system time at the last step (whole run).
# Run from the repository root after a release build:
#   bash scripts/experiments/gan_recipe.sh STEPS EVERY variant [variant ...]
# (GAN_THREADS=1 trains on one core, so two variants can run side by side; EVAL_TRAIN=datasets/mni64
# adds each checkpoint's memorisation count, which chose where the latent GAN stops.)
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${MEDSYNTH_BIN:-.build/release/medsynth}
W=${MEDSYNTH_WORK:-work/models}
OUT=${RECIPE_OUT:-work/gan-recipe}
STEPS=${1:?steps}
EVERY=${2:?checkpoint interval}
shift 2
MEDSYNTH_BIN=$B MEDSYNTH_WORK=$W bash scripts/train_models.sh data > /dev/null
mkdir -p "$OUT"
for v in "$@"; do
    case $v in
        legacy)        flags=(--legacy) ;;                                        # the recipe before issue 14 (transposed-conv G)
        default)       flags=() ;;                                                # issue 14's default: legacy + resize-conv G
        legacy+resize) flags=(--legacy --upsample resize) ;;                      # the same as default, spelled out
        legacy+ada)    flags=(--legacy --ada --ada-speed 5000) ;;
        all-new)       flags=(--loss hinge --spectral-norm --learning-rate 2e-4 --d-learning-rate 4e-4 --beta1 0 --beta2 0.9
                              --ada --ada-speed 5000 --upsample resize) ;;        # GANTrainingOptions.spectralADA
        default+sn)    flags=(--spectral-norm --loss hinge) ;;
        default+ttur)  flags=(--d-learning-rate 4e-4) ;;
        default+ada)   flags=(--ada) ;;
        ema99)         flags=(--ema-decay 0.99) ;;
        default+lecam) flags=(--lecam-weight 0.3) ;;                            # Tseng et al. 2021 (session 9)
        default+bilinear) flags=(--upsample bilinear) ;;                         # low-pass upsampling in G (session 10)
        default+mbstd) flags=(--minibatch-std) ;;                                # minibatch std in D (Karras et al. 2018; session 11)
        default+w48)   flags=(--width 48) ;;                                     # wider G and D (the later --width wins; session 12)
        default+pack2) flags=(--packing 2) ;;                                    # PacGAN, D sees pairs (Lin et al. 2018; session 12)
        default+g64)   flags=(--generator-width 64) ;;                          # G twice as wide as D (session 12)
        default+nocolour) flags=(--augment-ops translation,cutout) ;;            # DiffAugment without brightness/contrast (session 12)
        default+ms)    flags=(--mode-seeking 1) ;;                               # MSGAN's mode-seeking term, λ = 1 (Mao et al. 2019; session 14)
        default+ms3)   flags=(--mode-seeking 3) ;;                               # the same, λ = 3
        default+ms-b8) flags=(--mode-seeking 1 --mode-seeking-block 8) ;;         # the same on 8×8-pixel block means (coarse variety only)
        default+r1)    flags=(--r1-gamma 1) ;;                                   # R1 penalty by finite differences, γ = 1, every 4 steps (Mescheder et al. 2018; session 14)
        default+r1-0.1) flags=(--r1-gamma 0.1) ;;                                # the same, γ = 0.1
        default+r1-0.025) flags=(--r1-gamma 0.025) ;;                            # γ = 0.0002 · 64² / 32, StyleGAN2-ADA's heuristic
        default+r1-0.01) flags=(--r1-gamma 0.01) ;;
        default+sle)   flags=(--skip-excitation) ;;                              # FastGAN's skip-layer excitation in G (Liu et al. 2021; session 15)
        default+rec)   flags=(--reconstruction-weight 1) ;;                      # FastGAN's self-supervised D, λ = 1
        default+fastgan) flags=(--skip-excitation --reconstruction-weight 1) ;;  # both FastGAN parts
        default+self10) flags=(--self-condition 10) ;;                          # self-conditioned on 10 k-means clusters per class (Liu et al. 2020; session 16)
        default+self5) flags=(--self-condition 5) ;;
        default+self10+ms-b8) flags=(--self-condition 10 --mode-seeking 1 --mode-seeking-block 8) ;;  # within-cluster coarse variety (session 17)
        default+decay) flags=(--lr-decay-steps 3000) ;;                         # the shipped recipe: both rates decay to 0 over the last 3,000 steps (session 7)
        default+sle+decay) flags=(--skip-excitation --lr-decay-steps 3000) ;;    # skip-layer excitation finished like the shipped model (session 18)
        default+r1-0.025+decay) flags=(--r1-gamma 0.025 --lr-decay-steps 3000) ;;  # R1 at γ = 0.025 finished like the shipped model (session 18)
        latent+w256)   flags=(--autoencoder models/vae-mni64.safetensors --width 256) ;;  # the DCGAN on the shipped VAE's 8×8×16 latents (session 19)
        latent+w256+x1) flags=(--autoencoder models/vae-mni64.safetensors --width 256 --extra-layers 1) ;;
        latent+w256+x2) flags=(--autoencoder models/vae-mni64.safetensors --width 256 --extra-layers 2) ;;
        latent+w128+x3) flags=(--autoencoder models/vae-mni64.safetensors --width 128 --extra-layers 3) ;;
        *) echo "unknown variant $v" >&2; exit 2 ;;
    esac
    run="$OUT/$v-$STEPS"
    if [ ! -f "$run/model.safetensors" ]; then
        rm -rf "$run"
        /usr/bin/time -f "%e %U %S" -o "$OUT/$v-$STEPS.time" \
            $B train gan --data "$W/mni64-2class" --out "$run" --conditional --width 32 --steps "$STEPS" --batch 32 \
            --seed 3 --checkpoint-every "$EVERY" --sample-every "$STEPS" --progress none ${GAN_THREADS:+--threads $GAN_THREADS} "${flags[@]}" > "$OUT/$v-$STEPS.log" 2>&1
    fi
    read -r wall user sys < "$OUT/$v-$STEPS.time"
    echo "$v (${flags[*]}): $STEPS steps, wall $(python3 -c "print(f'{$wall/60:.1f}')") min, CPU $(python3 -c "print(f'{($user+$sys)/60:.1f}')") min"
    for ckpt in $(ls "$run"/checkpoints/step-*.safetensors | sort -V); do
        n=$(basename "$ckpt" .safetensors)
        EVAL_OUT="$OUT/eval-$v-$STEPS-$n" GAN_MODEL="$ckpt" MEDSYNTH_BIN=$B \
            bash scripts/experiments/diffusion_eval.sh gan | sed "s/^gan /$v $n /"
    done
done
