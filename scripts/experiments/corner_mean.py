#!/usr/bin/env python3
"""Mean of the four 4x4 corners of every PNG in a folder, in [-1, 1] (pixel/127.5 - 1).
Brain-slice backgrounds are -1, so this says whether samples have black backgrounds (issue 12).
Standard library only: 8-bit gray / gray+alpha / RGB / RGBA PNGs, non-interlaced.
    python3 scripts/experiments/corner_mean.py FOLDER [K]"""
import os
import struct
import sys
import zlib


def read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0, f"{path}: only 8-bit non-interlaced PNGs"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[color]
    raw, stride = zlib.decompress(idat), width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([line[x * channels] for x in range(width)])   # first channel
        prev = line
    return rows


def corner_mean(folder, k=4):
    values = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".png"):
            continue
        img = read_png(os.path.join(folder, name))
        h, w = len(img), len(img[0])
        for y0, x0 in [(0, 0), (0, w - k), (h - k, 0), (h - k, w - k)]:
            values += [img[y][x] / 127.5 - 1 for y in range(y0, y0 + k) for x in range(x0, x0 + k)]
    return sum(values) / len(values), len(values) // (4 * k * k)


if __name__ == "__main__":
    mean, count = corner_mean(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4)
    print(f"corner mean {mean:.4f} over {count} images in {sys.argv[1]}")
