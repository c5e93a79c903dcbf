#!/usr/bin/env python3
"""Side-by-side speed of the five latent/VAE workloads: runs `medsynth bench --only <them>` and the
PyTorch counterpart torch_latent_reference.py (same folder) in one go, and prints images/s of both
and the ratio medsynth / PyTorch — as ../shared/reference/compare_speed.py does for the DCGAN and
pixel U-Net workloads.

  vae64_train_step_b32       VAE training step (64 px, factor 4, 4 latent channels), batch 32
  latent16x4_train_step_b32  UNet-S layout on 4×16×16 latents, training step, batch 32
  latent8x8_train_step_b32   UNet-S layout on 16×8×8 latents (the shipped factor-8 VAE's), batch 32
  latent16x4_forward_b16     one U-Net forward, batch 16, no gradients
  latent_dpm20_sample_b16    16 images: DPM-Solver++(2M) 20 steps + VAE decode

Usage (from anywhere; needs `pip install torch`):
  python3 scripts/experiments/compare_speed_latent.py PATH/TO/medsynth
REPS=n sets the timed repetitions of both sides (default: each side's own, 5); THREADS=n the threads of
both (medsynth --threads n, torch.set_num_threads(n); default: all cores on both). Run on an otherwise
idle machine: with other processes on the cores both sides slow down, PyTorch's OpenMP threads most.
Check first that the networks are the same: `python3 scripts/experiments/torch_latent_reference.py check PATH/TO/medsynth`.
"""
import json, os, subprocess, sys

WORKLOADS = ["vae64_train_step_b32", "latent16x4_train_step_b32", "latent8x8_train_step_b32",
             "latent16x4_forward_b16", "latent_dpm20_sample_b16"]
here = os.path.dirname(os.path.abspath(__file__))


def lines(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return {o["workload"]: o for o in (json.loads(l) for l in out.splitlines() if l.strip().startswith("{"))}


if len(sys.argv) != 2:
    sys.exit(__doc__)
reps, threads = os.environ.get("REPS"), os.environ.get("THREADS")
ms = lines([sys.argv[1], "bench", "--only", ",".join(WORKLOADS)] + (["--repetitions", reps] if reps else [])
           + (["--threads", threads] if threads else []))
pt = lines([sys.executable, os.path.join(here, "torch_latent_reference.py"), "bench"])
threads = {o.get("threads") for o in ms.values()}, {o.get("threads") for o in pt.values()}
print(f"threads: medsynth {sorted(threads[0])}, PyTorch {sorted(threads[1])}")
print(f"{'workload':28} {'medsynth img/s':>15} {'PyTorch img/s':>14} {'ratio':>6}")
for w in WORKLOADS:
    a, b = ms.get(w, {}).get("images_per_s", 0.0), pt.get(w, {}).get("images_per_s", 0.0)
    print(f"{w:28} {a:15.2f} {b:14.2f} {a / b if b else float('nan'):6.2f}")
