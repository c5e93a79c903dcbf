#!/usr/bin/env python3
"""A sample grid PNG: one row per folder (first N PNGs in sorted order), 2-pixel white padding as
Imaging.makeGrid. Standard library only (8-bit gray output).
    python3 scripts/experiments/make_grid.py OUT.png N FOLDER [FOLDER ...]"""
import os
import struct
import sys
import zlib

sys.path.insert(0, os.path.dirname(__file__))
from corner_mean import read_png  # noqa: E402


def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def main():
    out, n, folders = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    rows = [[read_png(os.path.join(f, name)) for name in sorted(x for x in os.listdir(f) if x.endswith(".png"))[:n]] for f in folders]
    size, pad = len(rows[0][0]), 2
    width, height = n * size + (n + 1) * pad, len(rows) * size + (len(rows) + 1) * pad
    canvas = [[255] * width for _ in range(height)]
    for r, images in enumerate(rows):
        for c, img in enumerate(images):
            for y in range(size):
                canvas[pad + r * (size + pad) + y][pad + c * (size + pad):pad + c * (size + pad) + size] = img[y]
    raw = b"".join(b"\x00" + bytes(row) for row in canvas)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) \
        + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(png)
    os.replace(tmp, out)
    print(f"wrote {out}: {width}x{height}")


if __name__ == "__main__":
    main()
