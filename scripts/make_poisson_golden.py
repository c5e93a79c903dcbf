#!/usr/bin/env python3
"""Golden numbers for the compositor's Poisson blending (Tests/CompositorTests/Fixtures/poisson_golden.json).

Builds a 24x24 background and a 10x10 lesion patch with a blob mask, places the patch's top-left
at (X, Y), and solves the discrete Poisson equation of Perez, Gangnet & Blake (2003), eq. 7, exactly
with scipy.sparse.linalg.spsolve:

    4 f_p - sum_{q in N_p, q in Omega} f_q = sum_{q in N_p, q not in Omega} f*_q + sum_{q in N_p} v_pq

with the 5-point neighbourhood, f* the background, g the patch, and guidance v_pq = g_p - g_q
("poisson", eq. 11) or the larger-magnitude of (f*_p - f*_q) and (g_p - g_q) ("mixed", eq. 13).
Usage: python3 scripts/make_poisson_golden.py  (writes the fixture; deterministic).
"""
import json
import os

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

H = W = 24
PH = PW = 10
X, Y = 7, 6


def make_inputs():
    rng = np.random.default_rng(20031)
    yy, xx = np.mgrid[0:H, 0:W]
    background = 90 + 2.5 * xx + 1.5 * yy + 20 * np.sin(xx / 3.0) * np.cos(yy / 4.0) + rng.normal(0, 4, (H, W))
    py, px = np.mgrid[0:PH, 0:PW]
    r = np.hypot(px - 4.6, py - 4.3)
    patch = 60 + 110 * np.exp(-(r / 3.2) ** 2) + rng.normal(0, 6, (PH, PW))
    mask = (r <= 3.6 + 0.6 * np.cos(3 * np.arctan2(py - 4.3, px - 4.6))).astype(np.uint8)
    return background.astype(np.float32), patch.astype(np.float32), mask


def solve(background, patch, mask, mixed):
    f_star = background.astype(np.float64)
    g = np.empty_like(f_star)
    # Source values over the whole target grid, the patch edge repeated (as the Swift code does).
    for y in range(H):
        for x in range(W):
            g[y, x] = patch[min(max(y - Y, 0), PH - 1), min(max(x - X, 0), PW - 1)]
    omega = np.zeros((H, W), bool)
    omega[Y:Y + PH, X:X + PW] = mask.astype(bool)
    omega[0, :] = omega[-1, :] = omega[:, 0] = omega[:, -1] = False
    index = -np.ones((H, W), int)
    points = list(zip(*np.nonzero(omega)))
    for k, (y, x) in enumerate(points):
        index[y, x] = k
    n = len(points)
    rows, cols, vals = [], [], []
    b = np.zeros(n)
    for k, (y, x) in enumerate(points):
        rows.append(k); cols.append(k); vals.append(4.0)
        for dy, dx in ((0, -1), (0, 1), (-1, 0), (1, 0)):
            qy, qx = y + dy, x + dx
            v = g[y, x] - g[qy, qx]
            if mixed:
                d = f_star[y, x] - f_star[qy, qx]
                if abs(d) > abs(v):
                    v = d
            b[k] += v
            if omega[qy, qx]:
                rows.append(k); cols.append(index[qy, qx]); vals.append(-1.0)
            else:
                b[k] += f_star[qy, qx]
    A = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    f = spla.spsolve(A, b)
    out = f_star.copy()
    for k, (y, x) in enumerate(points):
        out[y, x] = f[k]
    return out


def main():
    background, patch, mask = make_inputs()
    golden = {
        "width": W, "height": H, "patch_width": PW, "patch_height": PH, "x": X, "y": Y,
        "background": [float(v) for v in background.ravel()],
        "patch": [float(v) for v in patch.ravel()],
        "mask": [int(v) for v in mask.ravel()],
        "poisson": [round(float(v), 5) for v in solve(background, patch, mask, False).ravel()],
        "mixed": [round(float(v), 5) for v in solve(background, patch, mask, True).ravel()],
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "CompositorTests", "Fixtures",
                        "poisson_golden.json")
    with open(path, "w") as f:
        json.dump(golden, f, separators=(",", ":"))
    print(f"wrote {os.path.normpath(path)}: {int(mask.sum())} unknowns")


if __name__ == "__main__":
    main()
