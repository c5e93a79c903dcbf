#!/usr/bin/env python3
"""Brightness of the tissue in folders of 8-bit PNG slices (session 10, README "what the remaining FD
is made of"): per folder, the mean foreground value (pixels above 20/255, in [0, 1]), the spread of
that mean across slices, and the foreground's 10th/50th/75th/90th percentiles (0-255).

    python3 scripts/experiments/latent_brightness.py NAME=FOLDER [NAME=FOLDER ...]

Standard library only: 8-bit grayscale, gray+alpha, RGB and RGBA PNGs (RGB as BT.601 luma).
"""
import glob
import statistics
import struct
import sys
import zlib

THRESHOLD = 20


def read_png_gray(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path}: not a PNG")
    pos, idat, width = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace != 0 or colour not in (0, 2, 4, 6):
                raise SystemExit(f"{path}: only 8-bit non-interlaced gray/RGB(A) PNGs are read here")
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    raw, stride = zlib.decompress(idat), width * channels
    rows, previous, offset = [], bytearray(stride), 0
    for _ in range(height):
        kind, line = raw[offset], bytearray(raw[offset + 1:offset + 1 + stride])
        offset += 1 + stride
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, upper_left = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - upper_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upper_left)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else upper_left)) & 255
        rows.append(line)
        previous = line
    pixels = []
    for line in rows:
        for x in range(width):
            px = line[x * channels:(x + 1) * channels]
            pixels.append(px[0] if channels <= 2 else round(0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]))
    return pixels


def folder_statistics(folder):
    files = sorted(glob.glob(folder + "/**/*.png", recursive=True))
    if not files:
        raise SystemExit(f"{folder}: no PNG files")
    means, histogram = [], [0] * 256
    for f in files:
        foreground = [p for p in read_png_gray(f) if p > THRESHOLD]
        means.append(sum(foreground) / max(1, len(foreground)) / 255)
        for p in foreground:
            histogram[p] += 1
    total, running, quantiles = sum(histogram), 0, {}
    for value in range(256):
        running += histogram[value]
        for q in (0.10, 0.50, 0.75, 0.90):
            if q not in quantiles and running >= q * total:
                quantiles[q] = value
    return len(files), statistics.mean(means), statistics.pstdev(means), quantiles


print("set images foreground_mean sd_of_slice_means p10 p50 p75 p90")
for argument in sys.argv[1:]:
    name, _, folder = argument.partition("=")
    n, mean, spread, q = folder_statistics(folder)
    print(f"{name} {n} {mean:.4f} {spread:.4f} {q[0.10]} {q[0.50]} {q[0.75]} {q[0.90]}")
