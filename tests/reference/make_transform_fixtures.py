#!/usr/bin/python3
# Writes tests/fixtures/data/transform/: small PNG/JPEG sources in many modes
# and the expected open_clip eval-transform outputs computed by torchvision on
# PIL, for tests/test_transform_parity.c. Run with Debian's python3 (needs
# python3-torch, python3-torchvision, python3-pil, python3-numpy):
#   /usr/bin/python3 tests/reference/make_transform_fixtures.py
#
# Reference pipeline per (image, S):
#   img = Image.open(path).convert("RGB")
#   Compose([Resize(S, BICUBIC), CenterCrop(S), ToTensor(), Normalize(CLIP)])(img)
# The expected output is stored as the 8-bit image after CenterCrop ([S, S, 3]
# u8, 2-D delta coded for gzip: d[y,x] = a[y,x] - a[y,x-1] - a[y-1,x] +
# a[y-1,x-1] mod 256 per channel, out-of-range terms 0); the script asserts that torchvision's float tensor equals
# Normalize(u8 / 255) to 1e-6, so the test reconstructs it exactly and the
# fixture is 4x smaller. decode.tsv holds an FNV-1a 64 hash of PIL's
# convert("RGB") pixels for exact decoder checks.
#
# One deliberate deviation: PIL opens 16-bit grayscale PNGs as mode "I" and
# its I->RGB conversion clips values above 255 (nearly every pixel turns
# white). vlm takes the high byte, as PIL itself does for 16-bit RGB, RGBA and
# gray+alpha; for those sources the reference converts with `>> 8` first.
import gzip
import os
import struct
import zlib

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "data", "transform")
SRC = os.path.join(OUT, "src")
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
SIZES = (32, 64)
# S = 64 only for these (keeps the fixture small); S = 32 for every source.
BIG = {"rgb_200x150.png", "rgb_17x23.png", "rgb_64x64.png", "rgb_150x20_wide.png", "rgb_32x90_tall.png",
       "rgba_64x48.png", "p_trns_50x37.png", "gray16_37x29.png", "interlaced_rgb_61x47.png",
       "jpeg_baseline_200x150.jpg", "jpeg_progressive_120x90.jpg", "jpeg_cmyk_64x80.jpg"}


def pattern(w, h, seed, channels=3):
    """Smooth gradients + hard-edged shapes + a small noise patch: exercises
    the resampling filter without compressing badly."""
    rs = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.zeros((h, w, channels))
    for c in range(channels):
        fx, fy, ph = rs.uniform(0.5, 3.0), rs.uniform(0.5, 3.0), rs.uniform(0, 6.28)
        out[..., c] = 127 + 100 * np.sin(fx * x / w * 6.28 + ph) * np.cos(fy * y / h * 6.28)
    cx, cy, r = rs.uniform(0.3, 0.7) * w, rs.uniform(0.3, 0.7) * h, 0.25 * min(w, h)
    disk = (x - cx) ** 2 + (y - cy) ** 2 < r * r
    out[disk] = rs.randint(0, 256, size=channels)
    out[(x // 4 + y // 4) % 2 == 0] *= 0.8  # checker: high frequencies
    nx, ny = w // 5, h // 5
    out[ny:ny + max(2, h // 10), nx:nx + max(2, w // 10)] = rs.randint(0, 256, size=(max(2, h // 10), max(2, w // 10), channels))
    return np.clip(out, 0, 255).astype(np.uint8)


# ---- minimal PNG writer for what PIL cannot write (low bit depths, 16-bit
# colour, Adam7 interlacing).

def _chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _pack_row(row, depth):
    """row: 1-D array of samples (already interleaved)."""
    if depth == 8:
        return row.astype(np.uint8).tobytes()
    if depth == 16:
        return row.astype(">u2").tobytes()
    per = 8 // depth
    vals = list(row.astype(int)) + [0] * ((-len(row)) % per)
    out = bytearray()
    for i in range(0, len(vals), per):
        b = 0
        for v in vals[i:i + per]:
            b = (b << depth) | v
        out.append(b)
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, arr, depth, ctype, palette=None, trns=None, interlace=False):
    """arr: [h, w, c] samples at `depth` bits (palette: indices, c = 1)."""
    h, w, c = arr.shape
    raw = bytearray()
    if interlace:
        for x0, y0, dx, dy in ADAM7:
            sub = arr[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            for r in sub:
                raw += b"\x00" + _pack_row(r.reshape(-1), depth)
    else:
        for r in arr:
            raw += b"\x00" + _pack_row(r.reshape(-1), depth)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 1 if interlace else 0))
    if palette is not None:
        png += _chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).reshape(-1)))
    if trns is not None:
        png += _chunk(b"tRNS", trns)
    png += _chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + _chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def make_sources():
    os.makedirs(SRC, exist_ok=True)
    rs = np.random.RandomState(1234)
    srcs = []

    def pil(name, im, **kw):
        im.save(os.path.join(SRC, name), **kw)
        srcs.append(name)

    pil("rgb_200x150.png", Image.fromarray(pattern(200, 150, 1)))
    pil("rgb_17x23.png", Image.fromarray(pattern(17, 23, 2)))
    pil("rgb_64x64.png", Image.fromarray(pattern(64, 64, 3)))
    pil("rgb_150x20_wide.png", Image.fromarray(pattern(150, 20, 4)))
    pil("rgb_32x90_tall.png", Image.fromarray(pattern(32, 90, 5)))
    rgba = np.concatenate([pattern(64, 48, 6), pattern(64, 48, 7, 1)], axis=2)
    pil("rgba_64x48.png", Image.fromarray(rgba, "RGBA"))
    la = np.concatenate([pattern(40, 30, 8, 1), pattern(40, 30, 9, 1)], axis=2)
    pil("la_40x30.png", Image.fromarray(la, "LA"))
    pil("l_23x17.png", Image.fromarray(pattern(23, 17, 10, 1)[..., 0], "L"))
    pil("bw1_33x20.png", Image.fromarray(pattern(33, 20, 11, 1)[..., 0] > 127).convert("1"))
    # palette with transparency (tRNS), 8-bit and 4-bit
    p = Image.fromarray(pattern(50, 37, 12)).quantize(colors=64)
    p.info["transparency"] = 3
    pil("p_trns_50x37.png", p, transparency=3)
    pal = rs.randint(0, 256, size=(16, 3))
    idx = (pattern(45, 60, 13, 1)[..., :1] // 16).astype(np.uint8)
    write_png(os.path.join(SRC, "p4_trns_45x60.png"), idx, 4, 3, palette=pal, trns=bytes(rs.randint(0, 256, size=10).astype(np.uint8)))
    srcs.append("p4_trns_45x60.png")
    g2 = pattern(30, 41, 14, 1) // 64
    write_png(os.path.join(SRC, "gray2_30x41.png"), g2, 2, 0)
    srcs.append("gray2_30x41.png")
    g4 = pattern(27, 19, 15, 1) // 16
    write_png(os.path.join(SRC, "gray4_trns_27x19.png"), g4, 4, 0, trns=struct.pack(">H", 5))
    srcs.append("gray4_trns_27x19.png")
    g16 = pattern(37, 29, 16, 1).astype(np.uint16) * 257 + rs.randint(0, 257, size=(29, 37, 1)).astype(np.uint16)
    write_png(os.path.join(SRC, "gray16_37x29.png"), g16, 16, 0)
    srcs.append("gray16_37x29.png")
    rgb16 = pattern(48, 64, 17).astype(np.uint16) * 256 + rs.randint(0, 256, size=(64, 48, 3)).astype(np.uint16)
    write_png(os.path.join(SRC, "rgb16_48x64.png"), rgb16, 16, 2)
    srcs.append("rgb16_48x64.png")
    rgba16 = np.concatenate([pattern(29, 31, 18), pattern(29, 31, 19, 1)], axis=2).astype(np.uint16) * 257
    write_png(os.path.join(SRC, "rgba16_29x31.png"), rgba16, 16, 6)
    srcs.append("rgba16_29x31.png")
    la16 = np.concatenate([pattern(26, 35, 20, 1), pattern(26, 35, 21, 1)], axis=2).astype(np.uint16) * 257
    write_png(os.path.join(SRC, "la16_26x35.png"), la16, 16, 4)
    srcs.append("la16_26x35.png")
    write_png(os.path.join(SRC, "interlaced_rgb_61x47.png"), pattern(61, 47, 22), 8, 2, interlace=True)
    srcs.append("interlaced_rgb_61x47.png")
    rgba_i = np.concatenate([pattern(35, 52, 23), pattern(35, 52, 24, 1)], axis=2)
    write_png(os.path.join(SRC, "interlaced_rgba_35x52.png"), rgba_i, 8, 6, interlace=True)
    srcs.append("interlaced_rgba_35x52.png")
    write_png(os.path.join(SRC, "interlaced_gray2_19x25.png"), pattern(19, 25, 25, 1) // 64, 2, 0, interlace=True)
    srcs.append("interlaced_gray2_19x25.png")
    # JPEGs (PIL's encoder = the same libjpeg-turbo)
    pil("jpeg_baseline_200x150.jpg", Image.fromarray(pattern(200, 150, 30)), quality=90)
    pil("jpeg_444_33x47.jpg", Image.fromarray(pattern(33, 47, 31)), quality=95, subsampling=0)
    pil("jpeg_progressive_120x90.jpg", Image.fromarray(pattern(120, 90, 32)), quality=85, progressive=True)
    pil("jpeg_gray_75x100.jpg", Image.fromarray(pattern(75, 100, 33, 1)[..., 0], "L"), quality=90)
    cmyk = Image.fromarray(np.concatenate([pattern(64, 80, 34), pattern(64, 80, 35, 1) // 3], axis=2), "CMYK")
    pil("jpeg_cmyk_64x80.jpg", cmyk, quality=92)
    # a JPEG with a .png name: decoders must go by content
    pil("jpeg_named.png", Image.fromarray(pattern(52, 39, 36)), format="JPEG", quality=90)
    return srcs


def fnv1a64(b):
    h = 0xCBF29CE484222325
    for x in b:
        h = ((h ^ x) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def to_rgb(path):
    im = Image.open(path)
    im.load()
    mode = im.mode
    if mode in ("I", "I;16", "I;16B"):  # see the note at the top
        im = Image.fromarray((np.asarray(im).astype(np.int64) >> 8).astype(np.uint8), "L")
    return im.convert("RGB"), mode


def main():
    srcs = make_sources()
    norm = T.Normalize(MEAN, STD)
    cases, blob, dec = [], bytearray(), []
    for name in srcs:
        rgb, mode = to_rgb(os.path.join(SRC, name))
        dec.append(f"{name}\t{rgb.width}\t{rgb.height}\t{mode}\t{fnv1a64(rgb.tobytes()):016x}")
        for S in SIZES:
            if S != 32 and name not in BIG:
                continue
            geo = T.Compose([T.Resize(S, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(S)])
            full = T.Compose([geo, T.ToTensor(), norm])
            want = full(rgb)
            u8 = np.asarray(geo(rgb), dtype=np.uint8)
            assert u8.shape == (S, S, 3), (name, S, u8.shape)
            recon = norm(torch.from_numpy(u8.astype(np.float32) / 255.0).permute(2, 0, 1))
            d = (recon - want).abs().max().item()
            assert d < 1e-6, (name, S, d)
            cases.append(f"{name}\t{S}\t{len(blob)}")
            a = u8.astype(np.int32)
            d = a.copy()
            d[:, 1:] -= a[:, :-1]
            d[1:, :] -= a[:-1, :]
            d[1:, 1:] += a[:-1, :-1]
            blob += (d % 256).astype(np.uint8).tobytes()
    with open(os.path.join(OUT, "cases.tsv"), "w") as f:
        f.write("# source\tS\toffset into expected.u8.gz ([S,S,3] u8 after Resize+CenterCrop, delta coded)\n")
        f.write("\n".join(cases) + "\n")
    with open(os.path.join(OUT, "decode.tsv"), "w") as f:
        f.write("# source\twidth\theight\tPIL mode\tFNV-1a 64 of PIL convert('RGB') bytes\n")
        f.write("\n".join(dec) + "\n")
    with gzip.GzipFile(os.path.join(OUT, "expected.u8.gz"), "wb", mtime=0) as f:
        f.write(bytes(blob))
    total = sum(os.path.getsize(os.path.join(SRC, s)) for s in srcs)
    print(f"{len(srcs)} sources ({total} bytes), {len(cases)} cases, expected {len(blob)} bytes raw")


if __name__ == "__main__":
    main()
