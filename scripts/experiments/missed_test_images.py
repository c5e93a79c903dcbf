#!/usr/bin/env python3
"""Are a class's missed test images the ones its training images do not cover? (issue 14, session 22)

Reads a `medsynth utility --test T` report and, for CLASS, ranks every test image of T/CLASS by how far
it lies from the class's training images relative to the other classes': the pixel-space distance to
the nearest training image of CLASS divided by the distance to the nearest training image of any other
class (TRAIN, the --data folder). Marks, per report row, the test images that row's classifier missed
in any seed. If the misses sit at the far end of that ranking in every row, the synthetic images of
every method failed on the same images: test images unlike anything the generator was trained on.
    python3 scripts/experiments/missed_test_images.py UTILITY_JSON TRAIN TEST CLASS"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from corner_mean import read_png  # noqa: E402


def folder(path):
    names = sorted(n for n in os.listdir(path) if n.endswith(".png"))
    return names, np.stack([np.asarray(read_png(os.path.join(path, n)), dtype=np.float32).reshape(-1) / 255 for n in names])


def nearest(x, pool):
    return float(np.sqrt(((pool - x) ** 2).sum(axis=1)).min())


def chance_of_mean_rank(ranks, n, draws=200_000):
    """How often len(ranks) test images drawn at random have a mean rank at least this high
    (Monte Carlo, fixed seed): a one-sided p-value for "the misses are the far images"."""
    rng = np.random.default_rng(0)
    picks = np.argsort(rng.random((draws, n)), axis=1)[:, :len(ranks)] + 1
    return float((picks.mean(axis=1) >= np.mean(ranks) - 1e-9).mean())


def main():
    report_path, train, test, cls = sys.argv[1:5]
    report = json.load(open(report_path))
    _, own = folder(os.path.join(train, cls))
    other = np.concatenate([folder(os.path.join(train, c))[1] for c in sorted(os.listdir(train))
                            if c != cls and os.path.isdir(os.path.join(train, c))])
    names, images = folder(os.path.join(test, cls))
    ratio = {f"{cls}/{n}": nearest(x, own) / nearest(x, other) for n, x in zip(names, images)}
    rank = {name: r + 1 for r, name in enumerate(sorted(ratio, key=ratio.get))}
    n = len(ratio)
    print(f"{n} test images of class {cls}; rank 1 = nearest its {len(own)} training images (relative to the other classes')")
    for row in report["rows"]:
        missed = [m for m in row.get("misclassified") or [] if m["true_class"] == cls]
        ranks = [rank[m["file"]] for m in missed if m["file"] in rank]
        label = os.path.basename(row["training_data"].rstrip("/")) if row["training_data"] != "real" else "real only"
        mean = f"mean rank {sum(ranks) / len(ranks):.1f} of {n} (chance {(n + 1) / 2:.1f}, p = {chance_of_mean_rank(ranks, n):.4f})" if ranks else "none missed"
        print(f"{label:>24}: {len(missed)} missed, {mean}")
        for m in missed:
            print(f"{'':>26}{m['file']} rank {rank.get(m['file'], '?')}, ratio {ratio.get(m['file'], float('nan')):.3f}, predicted {' '.join(m['predicted'])}")


if __name__ == "__main__":
    main()
