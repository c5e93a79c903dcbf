#!/usr/bin/env python3
"""Golden data for Tests/EvaluationTests: two small feature matrices and their Fréchet distance by
pytorch-fid's formula with scipy.linalg.sqrtm. Usage: python3 scripts/make_fid_golden.py"""
import json, os
import numpy as np
from scipy import linalg

out = os.path.join(os.path.dirname(__file__), "..", "Tests", "EvaluationTests", "Fixtures")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(2024)
a = rng.standard_normal((40, 8)) @ rng.standard_normal((8, 8)) * 0.5 + 1.0
b = rng.standard_normal((50, 8)) @ rng.standard_normal((8, 8)) * 0.7 - 0.3
np.save(os.path.join(out, "fid_a.npy"), a)
np.save(os.path.join(out, "fid_b.npy"), b)

def fid(x, y):  # pytorch-fid calculate_frechet_distance
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))

json.dump({"fid": fid(a, b), "fid_self": fid(a, a)}, open(os.path.join(out, "fid_golden.json"), "w"), indent=1)
print(fid(a, b))
