#!/usr/bin/env python3
"""How much of each composited lesion a reconstruction keeps (session 19).

    python3 scripts/experiments/lesion_contrast.py HEALTHY_DIR LESION_DIR RECON_DIR [RECON_DIR ...]

For every file of LESION_DIR that has a same-named healthy slice and reconstruction, the lesion is where
the lesion and healthy slices differ by more than 20 grey levels; its contrast is the mean |lesion − healthy|
there. Prints each image's contrast in the input and in each reconstruction (|reconstruction − healthy|
over the same pixels), then the means and the mean kept fraction per reconstruction folder.
"""
import os
import sys

import numpy as np
from PIL import Image


def grey(path):
    return np.asarray(Image.open(path).convert("L"), dtype=float)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    healthy, lesion, recons = sys.argv[1], sys.argv[2], sys.argv[3:]
    rows = []
    for name in sorted(os.listdir(lesion)):
        paths = [os.path.join(healthy, name)] + [os.path.join(r, name) for r in recons]
        if not all(os.path.exists(p) for p in paths):
            continue
        h, l = grey(paths[0]), grey(os.path.join(lesion, name))
        mask = np.abs(l - h) > 20
        if not mask.any():
            continue
        values = [np.abs(l - h)[mask].mean()] + [np.abs(grey(p) - h)[mask].mean() for p in paths[1:]]
        rows.append(values)
        print(f"{name}  {int(mask.sum())} px  " + "  ".join(f"{v:.1f}" for v in values))
    if not rows:
        sys.exit("no lesion image with a healthy slice and reconstructions")
    a = np.array(rows)
    print(f"mean contrast: input {a[:, 0].mean():.1f}; " + "; ".join(
        f"{r}: {a[:, k + 1].mean():.1f} (kept {np.mean(a[:, k + 1] / a[:, 0]):.2f})" for k, r in enumerate(recons)))


if __name__ == "__main__":
    main()
