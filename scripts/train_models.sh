#!/usr/bin/env bash
# Makes the checkpoints shipped in models/ from the shipped data, with medsynth's own commands.
# The lesion class is built with the compositor: procedural lesions blended into the healthy
# mni64 slices. Run from the repository root after `bash scripts/setup.sh && swift build -c release`.
#   bash scripts/train_models.sh [gan|diffusion|vae|vae-2class|latent|latent-gan|all|data]   (latent and latent-gan need models/vae-mni64.safetensors: run vae first)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${MEDSYNTH_BIN:-.build/release/medsynth}
W=${MEDSYNTH_WORK:-work/models}
what=${1:-all}
mkdir -p "$W" models

# 1. The two-class dataset: healthy slices and the same slices with one lesion each.
if [ ! -d "$W/mni64-2class/lesion" ]; then
    rm -rf "$W/lesions" "$W/composite" "$W/mni64-2class"
    $B lesions --out "$W/lesions" --count 200 --size 24 --polarity mixed --seed 1
    $B composite --backgrounds datasets/mni64/healthy --lesions "$W/lesions" --out "$W/composite" \
        --per-image 1 --contrast +40% --seed 2
    mkdir -p "$W/mni64-2class"
    cp -r datasets/mni64/healthy "$W/mni64-2class/healthy"
    cp -r "$W/composite/images" "$W/mni64-2class/lesion"
fi

# 2. Class-conditional DCGAN, width 32, with the default recipe of issue 14: the DCGAN recipe
#    (BCE, Adam 2e-4, β (0.5, 0.999), BatchNorm D, DiffAugment on every image, EMA 0.999 with warm-up)
#    and a resize-convolution G (nearest x2 + 3x3 conv, Odena et al. 2016), the combination that
#    measured best per CPU minute (scripts/experiments/gan_recipe.sh; README "The GAN recipe").
#    About 0.3 CPU-seconds per step of 32 (15,000 steps ≈ 73 CPU-minutes). At a constant learning
#    rate FD falls to ≈ 19 by step 7,500 and then moves within ±1; since session 7 both rates fall
#    linearly to 0 over the last GAN_DECAY_STEPS (3,000) steps (CycleGAN's schedule, Zhu et al. 2017):
#    FD 18.5 → 16.9, KID 0.099 → −0.002, recall 0.71 → 0.94 (README "The GAN recipe"). Before the
#    decay starts the learning rate is constant, so a run stopped at step K ≤ GAN_STEPS −
#    GAN_DECAY_STEPS equals one started with --steps K; a run trained without the decay can be
#    finished with it (--resume with these options). GAN_SELF_CONDITION=K adds `--self-condition K`
#    (Liu et al. 2020; with K = 10 session 16 measured FD 19.3 and recall 0.20 at step 15,000, worse
#    than the shipped 16.9 / 0.94, so the shipped recipe has none). The shipped file is the EMA model of the last step.
if [ "$what" = gan ] || [ "$what" = all ]; then
    $B train gan --data "$W/mni64-2class" --out "$W/runs/gan-cond" --conditional --width 32 \
        --steps "${GAN_STEPS:-15000}" --lr-decay-steps "${GAN_DECAY_STEPS:-3000}" --batch 32 --seed 3 --checkpoint-every 500 --resume \
        ${GAN_SELF_CONDITION:+--self-condition "$GAN_SELF_CONDITION"}
    cp "$W/runs/gan-cond/model.safetensors" models/dcgan-mni64-cond.safetensors
fi

# 3. Class-conditional diffusion U-Net (base width 16) with the default recipe of issue 12:
#    v-prediction, min-SNR-5 weighting truncated below at 1, AdamW 1e-3 with 100 warm-up steps,
#    gradient clipping at 1, EMA 0.999, zero-initialised residual outputs, class embedding × 0.1,
#    32 sinusoidal time features (scripts/experiments/diffusion_recipe.sh has the measurements).
#    DIFFUSION_STEPS is how long the shipped model trained (the learning rate is constant after
#    warm-up, so a run stopped at step K equals one started with --steps K); the run keeps
#    improving (scripts/experiments/diffusion_eval.sh checkpoints): raise it and rerun to continue
#    (--resume). The shipped file is the EMA model of the last checkpoint.
if [ "$what" = diffusion ] || [ "$what" = all ]; then
    $B train diffusion --data "$W/mni64-2class" --out "$W/runs/diffusion-cond" --conditional --width 16 \
        --steps "${DIFFUSION_STEPS:-8000}" --batch 24 --seed 4 --checkpoint-every 250 --sample-every 1000 --resume
    cp "$W/runs/diffusion-cond/model.safetensors" models/diffusion-mni64-cond.safetensors
fi
# 4. VAE on the even-indexed healthy slices, so the odd-indexed ones measure what it keeps on unseen
#    anatomy. Factor 8 with 16 latent channels (64 px → 8×8×16) since session 6: held-out PSNR 33.1 dB,
#    and the latent model on it reached FD 12.4 (11.1 with a base-32 U-Net since session 7; 5.27 since session 11 stopped the sampler
#    clamping latents to [−1, 1]) where the factor-4, 4-channel VAE (16×16×4; held-out
#    34.7 dB; VAE_FACTOR=4 VAE_CHANNELS=4) left it at ≈ 17 and 8 channels at 14.5 (README).
if [ "$what" = vae ] || [ "$what" = all ]; then
    if [ ! -d "$W/mni64-even/healthy" ]; then
        mkdir -p "$W/mni64-even/healthy"
        i=0
        for f in $(ls datasets/mni64/healthy | sort); do
            if [ $((i % 2)) -eq 0 ]; then cp "datasets/mni64/healthy/$f" "$W/mni64-even/healthy/"; fi
            i=$((i + 1))
        done
    fi
    $B train vae --data "$W/mni64-even" --out "$W/runs/vae" --width ${VAE_WIDTH:-16} \
        --downsampling-factor ${VAE_FACTOR:-8} --latent-channels ${VAE_CHANNELS:-16} \
        --steps ${VAE_STEPS:-2000} --batch 16 --learning-rate 1e-3 --seed 1 --checkpoint-every 100 --sample-every 100 --resume
    cp "$W/runs/vae/model.safetensors" models/vae-mni64.safetensors
fi

# 4b. The same VAE on the even slices of both classes (session 19, not shipped): vae-mni64 saw healthy
#     slices only and keeps about half of a composited lesion's contrast in its reconstructions; this one
#     keeps about three quarters (scripts/experiments/lesion_contrast.py; README "The GAN recipe").
#     VAE_FACTOR=4 VAE_CHANNELS=4 (16×16×4 latents, session 20) keeps 0.84–0.85 of it, held-out slices too.
if [ "$what" = vae-2class ]; then
    if [ ! -d "$W/mni64-2class-even/lesion" ]; then
        mkdir -p "$W/mni64-2class-even/healthy" "$W/mni64-2class-even/lesion"
        i=0
        for f in $(ls "$W/mni64-2class/healthy" | sort); do
            if [ $((i % 2)) -eq 0 ]; then
                cp "$W/mni64-2class/healthy/$f" "$W/mni64-2class-even/healthy/"
                cp "$W/mni64-2class/lesion/$f" "$W/mni64-2class-even/lesion/"
            fi
            i=$((i + 1))
        done
    fi
    $B train vae --data "$W/mni64-2class-even" --out "$W/runs/vae-2class-f${VAE_FACTOR:-8}" --width ${VAE_WIDTH:-16} \
        --downsampling-factor ${VAE_FACTOR:-8} --latent-channels ${VAE_CHANNELS:-16} \
        --steps ${VAE_STEPS:-2000} --batch 16 --learning-rate 1e-3 --seed 1 --checkpoint-every 100 --sample-every 100 --resume
fi

# 5. Class-conditional latent diffusion: the U-Net on the VAE's latents, base width 32 since session 7
#    (FD figures on this line and the next are from before session 11's latent-clamp fix, which took the shipped model from 11.1 to 5.27)
#    (width 16 reached FD 12.4 at 10,000 steps; 32: 14.2 / 11.7 / 11.9 / 11.1 / 11.7 at 2k–10k; 64:
#    12.8 / 11.0 / 11.3 at 2k–6k, a 69 MB file; README). The learning rate is constant after warm-up, so
#    a run stopped at step K equals one started with --steps K. The shipped model was trained on one
#    thread before session 8 made GEMM splits independent of the thread count (README, Reproducibility).
if [ "$what" = latent ] || [ "$what" = all ]; then
    $B train diffusion --data "$W/mni64-2class" --autoencoder models/vae-mni64.safetensors \
        --out "$W/runs/latent-diffusion-cond" --conditional --width ${LATENT_WIDTH:-32} \
        --steps ${LATENT_STEPS:-8000} --batch 32 --seed 6 --checkpoint-every 100 --sample-every 250 --resume
    cp "$W/runs/latent-diffusion-cond/model.safetensors" models/latent-diffusion-mni64-cond.safetensors
fi

# 6. Class-conditional latent GAN (session 19): the issue-14 DCGAN recipe on the VAE's 8×8×16 latents
#    (each channel scaled to mean 0, std 1; G's output linear; samples decoded by the embedded VAE),
#    width 256 with 2 extra 3×3 layers in G and D (the 8×8 grid leaves the DCGAN one block each side).
#    Measured against the pixel DCGAN with scripts/experiments/gan_recipe.sh (variants latent+…;
#    README "The GAN recipe"). Shipped at 6,000 steps at a constant rate (FD 9.9, recall 0.95): after
#    that FD keeps falling (8.5 at 8k; 6.3 at 15k with a 3,000-step decay) because the samples move
#    closer to their nearest training slice than the training slices are to each other (median
#    feature distance 2.62 at 6k, 2.42 at 8k, 2.06 at 15k against 2.43; flagged as memorised 16, 24,
#    40 of 80). LATENT_GAN_STEPS=15000 LATENT_GAN_DECAY_STEPS=3000 makes that longer run. The rate is
#    constant until the last LATENT_GAN_DECAY_STEPS, so a run stopped before them equals one started
#    with fewer --steps.
if [ "$what" = latent-gan ] || [ "$what" = all ]; then
    $B train gan --data "$W/mni64-2class" --autoencoder models/vae-mni64.safetensors \
        --out "$W/runs/latent-gan-cond" --conditional --width 256 --extra-layers 2 \
        --steps "${LATENT_GAN_STEPS:-6000}" --lr-decay-steps "${LATENT_GAN_DECAY_STEPS:-0}" --batch 32 --seed 3 \
        --checkpoint-every 500 --sample-every 1000 --resume
    cp "$W/runs/latent-gan-cond/model.safetensors" models/latent-gan-mni64-cond.safetensors
fi
ls -la models
