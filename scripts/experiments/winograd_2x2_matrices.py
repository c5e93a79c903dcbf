"""Toom-Cook matrices of Winograd F(m, 2) for the 4x4 stride-2 convolutions (Sources/Engine/Winograd.swift).

For each m the points are 0, 1, -1, 2 (as many as needed) and infinity. A^T and G are Vandermonde rows
(G scaled by the Lagrange denominators), B^T is solved exactly from A^T [(G g) * (B^T d)] = correlation(d, g).
Prints the matrices and the float32 relative error of the nested 2-D algorithm, summed over 256 channels of
LeakyReLU-like activations with DCGAN-sized weights, against float64 (the numbers quoted in Winograd.swift).
Winograd.swift flips the sign of row 0 of G and B^T for m = 2 and m = 3 (the product is unchanged).

    python3 scripts/experiments/winograd_2x2_matrices.py
"""
import numpy as np
import sympy as sp


def derive(m, r, points):
    alpha = m + r - 1
    assert len(points) == alpha - 1
    x = [sp.Rational(p) for p in points]
    AT, G = sp.zeros(m, alpha), sp.zeros(alpha, r)
    for p in range(alpha - 1):
        scale = sp.Integer(1)
        for q in range(alpha - 1):
            if q != p:
                scale *= x[p] - x[q]
        for i in range(m):
            AT[i, p] = x[p] ** i
        for j in range(r):
            G[p, j] = x[p] ** j / scale
    AT[m - 1, alpha - 1] = 1
    G[alpha - 1, r - 1] = 1
    B = sp.Matrix(alpha, alpha, lambda i, j: sp.Symbol(f"b{i}_{j}"))
    equations = [sum(AT[i, p] * G[p, j] * B[p, k] for p in range(alpha)) - (1 if k == i + j else 0)
                 for i in range(m) for j in range(r) for k in range(alpha)]
    return AT, G, B.subs(sp.solve(equations, list(B)))


def float32_error(AT, G, BT, m, channels=256, seed=0):
    rng = np.random.default_rng(seed)
    alpha = m + 1
    d = rng.standard_normal((channels, alpha, alpha))
    d = np.where(d > 0, d, 0.2 * d)
    g = rng.standard_normal((channels, 2, 2)) * 0.02
    reference = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            reference[i, j] = np.sum(d[:, i:i + 2, j:j + 2] * g)
    f = np.float32
    AT, G, BT = (np.array(M.tolist(), dtype=np.float64).astype(f) for M in (AT, G, BT))
    U = np.einsum("pi,cij,qj->cpq", G, g.astype(f), G).astype(f)
    V = np.einsum("pi,cij,qj->cpq", BT, d.astype(f), BT).astype(f)
    Y = AT @ (U * V).sum(0, dtype=f) @ AT.T
    return np.linalg.norm(Y - reference) / np.linalg.norm(reference)


if __name__ == "__main__":
    for m, points in [(2, [0, 1]), (3, [0, 1, -1]), (4, [0, 1, -1, 2])]:
        AT, G, BT = derive(m, 2, points)
        print(f"F({m}x{m}, 2x2), points {points} and infinity")
        print("  A^T =", AT.tolist())
        print("  G   =", G.tolist())
        print("  B^T =", BT.tolist())
        print(f"  float32 relative error over 256 channels: {float32_error(AT, G, BT, m):.2e}")
