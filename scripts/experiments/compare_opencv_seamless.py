#!/usr/bin/env python3
"""Compare medsynth's Poisson blending with OpenCV's seamlessClone(..., NORMAL_CLONE).

Makes a 512x512 8-bit scan-like background and a 64x64 lesion patch with a blob mask (zero border,
as seamlessClone expects), blends the patch at a fixed place with
  - OpenCV seamlessClone NORMAL_CLONE (3-channel, as OpenCV requires; channel 0 compared),
  - `medsynth bench-composite --mode poisson` (exact solve of Perez et al. eq. 7 on the mask),
  - `medsynth bench-composite --mode poisson --opencv-compatible` (mask eroded 3 px, truncation),
and prints the time per lesion of each and the mean absolute difference inside the mask.
Also solves the same equation exactly with scipy.sparse.linalg.spsolve as a reference.

Usage: python3 scripts/experiments/compare_opencv_seamless.py [--medsynth .build/release/medsynth] [--repeats 200]
Needs: numpy, scipy, pillow, opencv-python-headless.
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import cv2
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from PIL import Image

SIZE, PATCH = 512, 64
X, Y = 200, 230  # patch top-left in the scan


def make_inputs():
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    r = np.hypot(xx - 256, yy - 256)
    body = 1 / (1 + np.exp((r - 220) / 3))
    tissue = 110 + 30 * np.sin(xx / 23) * np.cos(yy / 31) + 0.05 * (xx - 256)
    background = np.clip(body * tissue + rng.normal(0, 5, (SIZE, SIZE)), 0, 255).round().astype(np.uint8)
    py, px = np.mgrid[0:PATCH, 0:PATCH].astype(np.float64)
    theta = np.arctan2(py - 31.5, px - 31.5)
    pr = np.hypot(px - 31.5, py - 31.5)
    radius = 20 * (1 + 0.12 * np.cos(3 * theta + 0.4) + 0.07 * np.cos(5 * theta + 1.1))
    profile = 1 / (1 + np.exp((pr - radius) / 1.2))
    patch = np.clip(70 + 110 * profile + rng.normal(0, 8, (PATCH, PATCH)), 0, 255).round().astype(np.uint8)
    mask = (pr <= radius + 3).astype(np.uint8) * 255
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = 0
    return background, patch, mask


def exact_solve(background, patch, mask):
    """Perez eq. 7 on Omega = mask placed at (X, Y), Dirichlet = background, guidance = patch gradients."""
    f_star = background.astype(np.float64)
    g = f_star.copy()
    g[Y:Y + PATCH, X:X + PATCH] = patch
    omega = np.zeros(f_star.shape, bool)
    omega[Y:Y + PATCH, X:X + PATCH] = mask > 0
    ys, xs = np.nonzero(omega)
    index = -np.ones(f_star.shape, int)
    index[ys, xs] = np.arange(len(ys))
    rows, cols, vals = [], [], []
    b = np.zeros(len(ys))
    for k, (y, x) in enumerate(zip(ys, xs)):
        rows.append(k); cols.append(k); vals.append(4.0)
        for qy, qx in ((y, x - 1), (y, x + 1), (y - 1, x), (y + 1, x)):
            b[k] += g[y, x] - g[qy, qx]
            if omega[qy, qx]:
                rows.append(k); cols.append(index[qy, qx]); vals.append(-1.0)
            else:
                b[k] += f_star[qy, qx]
    f = spla.spsolve(sp.csr_matrix((vals, (rows, cols)), shape=(len(ys), len(ys))), b)
    out = f_star.copy()
    out[ys, xs] = f
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--medsynth", default=os.environ.get("MEDSYNTH", ".build/release/medsynth"))
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    background, patch, mask = make_inputs()
    inside = np.zeros(background.shape, bool)
    inside[Y:Y + PATCH, X:X + PATCH] = mask > 0

    # OpenCV: the centre p places the mask's bounding box, so compute it from the box.
    ys, xs = np.nonzero(mask)
    bx, by, bw, bh = xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    centre = (int(X + bx + bw // 2), int(Y + by + bh // 2))
    src3, dst3 = cv2.merge([patch] * 3), cv2.merge([background] * 3)
    mask3 = cv2.merge([mask] * 3)
    cv2.setNumThreads(1)
    opencv = cv2.seamlessClone(src3, dst3, mask3, centre, cv2.NORMAL_CLONE)[:, :, 0]
    start = time.perf_counter()
    for _ in range(args.repeats):
        cv2.seamlessClone(src3, dst3, mask3, centre, cv2.NORMAL_CLONE)
    opencv_ms = (time.perf_counter() - start) / args.repeats * 1000
    # One gray channel would be a third of the work; OpenCV only takes 3-channel images.
    exact = exact_solve(background, patch, mask)

    results = {"opencv_ms_3channel": round(opencv_ms, 3)}
    with tempfile.TemporaryDirectory() as tmp:
        # Gray inputs (medsynth's usual case), and the same as RGB for the same work as OpenCV's.
        for channels in (1, 3):
            scan = background if channels == 1 else np.dstack([background] * 3)
            lesion = patch if channels == 1 else np.dstack([patch] * 3)
            Image.fromarray(scan).save(os.path.join(tmp, "scan.png"))
            Image.fromarray(lesion).save(os.path.join(tmp, "patch.png"))
            Image.fromarray(mask).save(os.path.join(tmp, "patch_mask.png"))
            for label, extra in (("medsynth", []), ("medsynth_opencv_compatible", ["--opencv-compatible"])):
                out = os.path.join(tmp, label + ".png")
                line = subprocess.run([args.medsynth, "bench-composite", "--background", os.path.join(tmp, "scan.png"),
                                       "--patch", os.path.join(tmp, "patch.png"), "--x", str(X), "--y", str(Y),
                                       "--mode", "poisson", "--feather", "0", "--repeats", str(args.repeats),
                                       "--out", out] + extra, check=True, capture_output=True, text=True).stdout
                timing = json.loads(line)
                blended = np.array(Image.open(out)).astype(np.float64)
                if channels == 3:
                    blended = blended[:, :, 0]
                results[f"{label}_{channels}channel"] = {
                    "blend_ms": round(timing["blend_ms"], 3), "total_ms": round(timing["total_ms"], 3),
                    "iterations": timing["iterations"],
                    "mad_vs_opencv_in_mask": round(float(np.abs(blended - opencv)[inside].mean()), 3),
                    "mad_vs_exact_in_mask": round(float(np.abs(blended - exact)[inside].mean()), 3),
                    "max_vs_exact_in_mask": round(float(np.abs(blended - exact)[inside].max()), 3),
                }
    results["opencv_mad_vs_exact_in_mask"] = round(float(np.abs(opencv - exact)[inside].mean()), 3)
    results["mask_pixels"] = int(inside.sum())
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
