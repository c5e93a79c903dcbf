#!/usr/bin/env python3
"""Makes the tiny image fixtures of Tests/ImagingTests/Fixtures and their expected samples.

PNG files are written here byte by byte with zlib and struct (not with libpng, the decoder under
test): palette (8-bit and 4-bit with tRNS), 2-bit gray, gray with tRNS, 16-bit RGBA, and Adam7
interlaced RGB 8-bit and gray 16-bit. Every row uses a different filter type (None, Sub, Up,
Average, Paeth) so all five unfiltering paths are exercised. The expected decoded samples (what
the Swift decoder must return: palette expanded to RGB/RGBA, low-bit gray scaled to 8 bits,
tRNS turned into alpha) go to expected.json.

JPEG files need an encoder, so they come from Pillow (`pip install pillow`): a CMYK JPEG (must
be refused) and a progressive grayscale JPEG whose samples as decoded by Pillow are recorded.

Run from the repository root:  python3 scripts/make_imaging_fixtures.py
"""
import json
import os
import struct
import zlib

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "ImagingTests", "Fixtures")

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def pack_row(values, bit_depth):
    """Packs one row of integer samples at 1, 2, 4, 8 or 16 bits, MSB first, padded to a byte."""
    if bit_depth == 8:
        return bytes(values)
    if bit_depth == 16:
        return b"".join(struct.pack(">H", v) for v in values)
    out, acc, used = bytearray(), 0, 0
    for v in values:
        acc = (acc << bit_depth) | v
        used += bit_depth
        if used == 8:
            out.append(acc)
            acc, used = 0, 0
    if used:
        out.append(acc << (8 - used))
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_rows(rows, bpp):
    """PNG filtering (spec section 9): row i uses filter type i % 5."""
    out, previous = bytearray(), bytes(len(rows[0])) if rows else b""
    for i, row in enumerate(rows):
        kind = i % 5
        line = bytearray()
        for x, value in enumerate(row):
            a = row[x - bpp] if x >= bpp else 0
            b = previous[x]
            c = previous[x - bpp] if x >= bpp else 0
            predictor = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
            line.append((value - predictor) & 0xFF)
        out += bytes([kind]) + line
        previous = row
    return bytes(out)


def make_png(width, height, color_type, bit_depth, pixels, palette=None, trns=None, interlace=False):
    """pixels[y][x] is a tuple of raw samples (palette index, gray, or colour components)."""
    samples_per_pixel = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    bpp = max(1, samples_per_pixel * bit_depth // 8)

    def encode(xs, ys):
        rows = [pack_row([s for x in xs for s in pixels[y][x]], bit_depth) for y in ys]
        return filter_rows(rows, bpp) if rows and rows[0] else b""

    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            xs, ys = list(range(x0, width, dx)), list(range(y0, height, dy))
            if xs and ys:
                raw += encode(xs, ys)
    else:
        raw = encode(list(range(width)), list(range(height)))
    data = b"\x89PNG\r\n\x1a\n"
    data += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 1 if interlace else 0))
    if palette is not None:
        data += chunk(b"PLTE", bytes(c for rgb in palette for c in rgb))
    if trns is not None:
        data += chunk(b"tRNS", trns)
    # Two IDAT chunks, as a streaming encoder would write.
    compressed = zlib.compress(raw, 9)
    half = len(compressed) // 2
    data += chunk(b"IDAT", compressed[:half]) + chunk(b"IDAT", compressed[half:])
    data += chunk(b"IEND", b"")
    return data


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {}

    def save(name, data, width, height, channels, bit_depth, samples):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        assert len(samples) == width * height * channels
        expected[name] = {"width": width, "height": height, "channels": channels, "bitDepth": bit_depth,
                          "samples": samples}

    # 8-bit palette, 7x5, 20 colours -> RGB 8-bit.
    w, h = 7, 5
    palette = [((i * 53) % 256, (i * 97 + 11) % 256, (255 - i * 13) % 256) for i in range(20)]
    index = [[((x * 3 + y * 7) % 20,) for x in range(w)] for y in range(h)]
    save("palette8.png", make_png(w, h, 3, 8, index, palette=palette), w, h, 3, 8,
         [c for y in range(h) for x in range(w) for c in palette[index[y][x][0]]])

    # 4-bit palette with tRNS on the first 3 entries, 9x4 (odd width: padded rows) -> RGBA 8-bit.
    w, h = 9, 4
    palette = [((i * 17) % 256, (200 - i * 9) % 256, (i * i * 5) % 256) for i in range(16)]
    alpha = [0, 90, 180]
    index = [[((x + 2 * y) % 16,) for x in range(w)] for y in range(h)]
    samples = []
    for y in range(h):
        for x in range(w):
            i = index[y][x][0]
            samples += list(palette[i]) + [alpha[i] if i < len(alpha) else 255]
    save("palette4_trns.png", make_png(w, h, 3, 4, index, palette=palette, trns=bytes(alpha)), w, h, 4, 8, samples)

    # 2-bit gray, 10x3 -> 8-bit gray scaled by 255/3 = 85.
    w, h = 10, 3
    gray = [[((x + y) % 4,) for x in range(w)] for y in range(h)]
    save("gray2.png", make_png(w, h, 0, 2, gray), w, h, 1, 8, [gray[y][x][0] * 85 for y in range(h) for x in range(w)])

    # 8-bit gray with tRNS (value 77 transparent), 6x4 -> gray+alpha 8-bit.
    w, h = 6, 4
    gray = [[((x * 31 + y * 17) % 4 * 77,) for x in range(w)] for y in range(h)]
    samples = []
    for y in range(h):
        for x in range(w):
            v = gray[y][x][0]
            samples += [v, 0 if v == 77 else 255]
    save("gray8_trns.png", make_png(w, h, 0, 8, gray, trns=struct.pack(">H", 77)), w, h, 2, 8, samples)

    # 16-bit RGBA, 5x4.
    w, h = 5, 4
    rgba = [[tuple((x * 7919 + y * 104729 + c * 31337) % 65536 for c in range(4)) for x in range(w)] for y in range(h)]
    save("rgba16.png", make_png(w, h, 6, 16, rgba), w, h, 4, 16, [s for y in range(h) for x in range(w) for s in rgba[y][x]])

    # Adam7 interlaced 8-bit RGB, 11x9 (every pass non-empty, odd sizes).
    w, h = 11, 9
    rgb = [[((x * 37 + y * 11) % 256, (x * 5 + y * 61 + 3) % 256, (x * y * 13 + 7) % 256) for x in range(w)] for y in range(h)]
    save("interlaced_rgb8.png", make_png(w, h, 2, 8, rgb, interlace=True), w, h, 3, 8,
         [s for y in range(h) for x in range(w) for s in rgb[y][x]])

    # Adam7 interlaced 16-bit gray, 13x10.
    w, h = 13, 10
    gray = [[((x * 5039 + y * 7001 + x * y * 3) % 65536,) for x in range(w)] for y in range(h)]
    save("interlaced_gray16.png", make_png(w, h, 0, 16, gray, interlace=True), w, h, 1, 16,
         [gray[y][x][0] for y in range(h) for x in range(w)])

    # JPEGs from Pillow: CMYK (refused) and progressive gray (decoded samples recorded).
    from PIL import Image
    import io
    cmyk = Image.new("CMYK", (8, 8), (10, 20, 30, 40))
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG", quality=90)
    with open(os.path.join(OUT, "cmyk.jpg"), "wb") as f:
        f.write(buffer.getvalue())

    w, h = 16, 12
    gray = Image.new("L", (w, h))
    gray.putdata([(x * 16 + y * 9) % 256 for y in range(h) for x in range(w)])
    buffer = io.BytesIO()
    gray.save(buffer, format="JPEG", quality=95, progressive=True)
    data = buffer.getvalue()
    decoded = Image.open(io.BytesIO(data))
    decoded.load()
    save("gray_progressive.jpg", data, w, h, 1, 8, list(decoded.tobytes()))

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"), sort_keys=True)
        f.write("\n")
    print("wrote", len(expected) + 1, "fixtures to", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
