"""Labelled image folders from scikit-learn's bundled digits (load_digits: 1,797 8x8 images of
the digits 0-9, shipped inside the package, no download), for scripts/experiments/balance_experiment.sh.

Usage: make_digits_sets.py OUT RARE_CLASS RARE_COUNT [SEED]

Per class, a seeded 30 % of the images goes to OUT/test/<digit>/ (held out, never used to make
synthetic images); the rest to OUT/train_full/<digit>/. OUT/train/ is train_full with the rare
class cut to RARE_COUNT images (a seeded choice); OUT/rest/<rare>/ holds the rare class's other
training images (the "all real images" upper bound). Images are written as 32x32 8-bit gray PNGs:
the 0-16 values scaled to 0-255 and enlarged by bilinear interpolation (half-pixel centres).
"""
import os, sys
import numpy as np
from sklearn.datasets import load_digits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from png_gray8 import write_png  # noqa: E402



def enlarge(img, size):
    """Bilinear resize of a square image, half-pixel centres, edges clamped."""
    n = img.shape[0]
    pos = (np.arange(size) + 0.5) * n / size - 0.5
    lo = np.clip(np.floor(pos).astype(int), 0, n - 1)
    hi = np.clip(lo + 1, 0, n - 1)
    t = np.clip(pos - lo, 0, 1)
    rows = img[lo] * (1 - t)[:, None] + img[hi] * t[:, None]
    return rows[:, lo] * (1 - t)[None, :] + rows[:, hi] * t[None, :]


def main():
    out, rare, rare_count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    digits = load_digits()
    rng = np.random.default_rng(seed)
    counts = {}
    for digit in range(10):
        members = np.flatnonzero(digits.target == digit)
        members = members[rng.permutation(len(members))]
        n_test = int(round(0.3 * len(members)))
        test, train = members[:n_test], members[n_test:]
        kept = train[:rare_count] if digit == rare else train
        sets = {"test": test, "train_full": train, "train": kept}
        if digit == rare:
            sets["rest"] = train[rare_count:]
        for name, indices in sets.items():
            folder = os.path.join(out, name, str(digit))
            os.makedirs(folder, exist_ok=True)
            for i in indices:
                img = enlarge(digits.images[i].astype(np.float64) * 255 / 16, 32)
                write_png(os.path.join(folder, f"d{i:04d}.png"), np.clip(np.rint(img), 0, 255).astype(np.uint8))
        counts[digit] = (len(kept), len(test))
    print("digit: train/test " + ", ".join(f"{d}: {a}/{b}" for d, (a, b) in counts.items()))


if __name__ == "__main__":
    main()
