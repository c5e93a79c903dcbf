#!/usr/bin/env bash
# Issue 12's closing numbers for the shipped diffusion model, with the commands that make them.
# Run from the repository root after a release build:
#   bash scripts/experiments/diffusion_eval.sh [all|baseline|model|gan|speed|checkpoints RUN_DIR]
# EVAL_TRAIN=datasets/mni64 also checks memorisation against those training images (evaluate --train)
# and adds the flagged count and median distances to each line (session 19's stopping rule).
# - real halves: the 159 sorted datasets/mni64/healthy slices, even-indexed (80) vs odd (79);
# - model/gan: 80 healthy samples (seed 0; diffusion DDIM-50, guidance 1) against the 80 even slices:
#   FD, KID, precision, recall (medsynth evaluate defaults) and the mean 4x4 corner value;
# - speed: images/s of DPM-Solver++ 15 and 20 steps and DDIM-50 (SPEED_COUNT samples, default 50, batch 50), and the FD of
#   each against DDIM-100 samples of the same seeds;
# - checkpoints: the same FD (DPM-Solver++ 20 steps) for every numbered checkpoint of a training run
#   whose step is a multiple of CKPT_STRIDE (default 1) (CPU-minutes table).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${MEDSYNTH_BIN:-.build/release/medsynth}
E=${EVAL_OUT:-work/eval12}
MODEL=${DIFFUSION_MODEL:-models/diffusion-mni64-cond.safetensors}
GAN=${GAN_MODEL:-models/dcgan-mni64-cond.safetensors}
what=${1:-all}
mkdir -p "$E"

summary() {  # summary NAME REPORT_DIR [SAMPLES_DIR]
    python3 - "$1" "$2/report.json" "${3:-}" <<'PY'
import json, os, subprocess, sys
name, path, samples = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.load(open(path))
def find(d, keys):
    for k in keys:
        if isinstance(d, dict) and k in d: return d[k]
    return None
flat = {}
def walk(d, prefix=""):
    if isinstance(d, dict):
        for k, v in d.items(): walk(v, prefix + k + ".")
    else: flat[prefix[:-1]] = d
walk(r)
pick = lambda *names: next((flat[k] for k in flat for n in names if k.split(".")[-1] == n and not k.startswith("per_class") and not k.startswith("classes")), None)
corner = ""
if samples:
    out = subprocess.run([sys.executable, "scripts/experiments/corner_mean.py", samples], capture_output=True, text=True).stdout.split()
    corner = f"  corner {float(out[2]):.3f}"
fd, kid, p, rc = pick("fd", "frechet_distance", "fid"), pick("kid", "kid_mean"), pick("precision"), pick("recall")
memo = ""
if r.get("memorisation", {}).get("training_images") and "EVAL_TRAIN" in os.environ:
    m = r["memorisation"]
    memo = f"  memorised {m['flagged_count']}/{m['synthetic_images']} (median to training {m['synthetic_to_training_median']:.2f}, training {m['real_vs_real_median']:.2f})"
print(f"{name:40s} FD {fd:.3f}  KID {kid:.4f}  precision {p:.3f}  recall {rc:.3f}{corner}{memo}")
PY
}

halves() {
    if [ ! -d "$E/real-even" ]; then
        mkdir -p "$E/real-even" "$E/real-odd"
        i=0
        for f in $(ls datasets/mni64/healthy | sort); do
            if [ $((i % 2)) -eq 0 ]; then cp "datasets/mni64/healthy/$f" "$E/real-even/"; else cp "datasets/mni64/healthy/$f" "$E/real-odd/"; fi
            i=$((i + 1))
        done
    fi
}

evaluate() {  # evaluate NAME REAL SYNTHETIC
    $B evaluate --real "$2" --synthetic "$3" ${EVAL_TRAIN:+--train "$EVAL_TRAIN"} --out "$E/report-$1" > "$E/report-$1.log" 2>&1
    summary "$1" "$E/report-$1" "$3"
}

sample() {  # sample NAME MODEL SAMPLER STEPS [COUNT]
    rm -rf "$E/samples-$1"
    local start end
    start=$(date +%s.%N)
    $B generate --model "$2" --count "${5:-80}" --class healthy --seed 0 --batch 50 --sampler "$3" --sampling-steps "$4" \
        --out "$E/samples-$1" --progress none > /dev/null
    end=$(date +%s.%N)
    python3 -c "print(f'$1: ${5:-80} images in {$end - $start:.1f} s = {${5:-80} / ($end - $start):.2f} images/s (wall, loaded machine)')"
}

halves
case $what in all|baseline)
    summary_line=$(evaluate real-even-vs-odd "$E/real-even" "$E/real-odd"); echo "$summary_line" ;;
esac
case $what in all|model)
    sample diffusion-ddim50 "$MODEL" ddim 50
    evaluate diffusion-ddim50 "$E/real-even" "$E/samples-diffusion-ddim50" ;;
esac
case $what in all|gan)
    sample gan "$GAN" ddim 1
    evaluate gan "$E/real-even" "$E/samples-gan" ;;
esac
case $what in all|speed)
    n=${SPEED_COUNT:-50}
    sample speed-ddim100 "$MODEL" ddim 100 "$n"
    for s in "dpm 15" "dpm 20" "ddim 50"; do
        set -- $s
        sample "speed-$1$2" "$MODEL" "$1" "$2" "$n"
        evaluate "speed-$1$2-vs-ddim100" "$E/samples-speed-ddim100" "$E/samples-speed-$1$2"
    done ;;
esac
if [ "$what" = checkpoints ]; then
    run=${2:?run folder}
    for ckpt in $(ls "$run"/checkpoints/step-*.safetensors 2>/dev/null | sort -V); do
        n=$(basename "$ckpt" .safetensors)
        step=$((10#${n#step-}))
        if [ $((step % ${CKPT_STRIDE:-1})) -ne 0 ]; then continue; fi
        if [ -f "$E/report-ckpt-$n/report.json" ]; then summary "ckpt-$n" "$E/report-ckpt-$n" "$E/samples-ckpt-$n"; continue; fi
        sample "ckpt-$n" "$ckpt" dpm 20
        evaluate "ckpt-$n" "$E/real-even" "$E/samples-ckpt-$n"
    done
fi
