#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer harnesses in fuzz/.

    python fuzz/make_seed_corpus.py OUT_DIR      # OUT_DIR/fuzz_image, fuzz_index, fuzz_npy

Seeds are small valid files of every format each harness reads, written by
independent producers (PIL, numpy, the Python binding's Retriever.save) plus
hand-built files for what those cannot write (16-bit RGB and interlaced PNG,
PSD, Radiance HDR, and every variant of tests/python/image_cases.py: BMP
headers and RLE, GIF LZW streams, TGA origins, plain PNM, TIFF layouts,
WebP), then damaged copies: truncations, and headers that claim huge sizes or
absurd chunk lengths. Mutating valid files reaches the decoders'
deep paths far sooner than starting from nothing.

Needs numpy and Pillow; the index seeds need perception_retrieval importable
(scripts/fuzz.sh runs this with .venv/bin/python).
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import image_cases  # noqa: E402  (the differential test's generators)

MAX_SEED_BYTES = 16384  # scripts/fuzz.sh runs with -max_len=16384


def noise(height, width, channels=3, seed=0):
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def gradient(height, width):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x * y) % 256], -1).astype(np.uint8)


def pil_bytes(image, fmt, **params):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


# --- hand-built formats -----------------------------------------------------

def png_chunk(kind: bytes, payload: bytes, length: int | None = None) -> bytes:
    size = len(payload) if length is None else length
    return struct.pack(">I", size) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png(width, height, bit_depth, color_type, rows: list, interlace=0, claimed_length=None) -> bytes:
    """A PNG from raw scanlines (filter byte included), one IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace)
    data = zlib.compress(b"".join(rows))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data, claimed_length) +
            png_chunk(b"IEND", b""))


def png_rgb16(width, height):
    pixels = np.random.default_rng(3).integers(0, 65536, (height, width, 3), dtype=np.uint16)
    rows = [b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height)]
    return png(width, height, 16, 2, rows)


def png_adam7(width, height):
    """An interlaced 8-bit RGB PNG: the seven Adam7 passes, filter type 0."""
    pixels = gradient(height, width)
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    rows = []
    for x0, y0, dx, dy in passes:
        sub = pixels[y0::dy, x0::dx]
        if sub.shape[0] and sub.shape[1]:
            rows += [b"\x01" + np.concatenate([r[:1], (r[1:].astype(np.int16) - r[:-1]) % 256]).astype(np.uint8)
                     .tobytes() for r in sub]
    return png(width, height, 8, 2, rows, interlace=1)


def psd(width, height, channels=3):
    planes = noise(height, width, channels, seed=4).transpose(2, 0, 1).tobytes()
    return (b"8BPS" + struct.pack(">H6xHIIHH", 1, channels, height, width, 8, 3) + struct.pack(">III", 0, 0, 0) +
            struct.pack(">H", 0) + planes)


def hdr(width, height):
    rgbe = noise(height, width, 4, seed=5)
    rgbe[..., 3] = 128
    return f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y {height} +X {width}\n".encode() + rgbe.tobytes()


def pnm(kind, width, height, max_value, samples: np.ndarray) -> bytes:
    dtype = ">u2" if max_value > 255 else np.uint8
    return f"{kind}\n# seed\n{width} {height}\n{max_value}\n".encode() + samples.astype(dtype).tobytes()


# --- image seeds -------------------------------------------------------------

def image_seeds() -> dict:
    rgb = Image.fromarray(gradient(24, 32))
    grey = rgb.convert("L")
    rgba = Image.fromarray(np.dstack([gradient(20, 16), noise(20, 16, 1)]), "RGBA")
    palette = rgb.convert("P", palette=Image.ADAPTIVE, colors=16)
    seeds = {
        "baseline.jpg": pil_bytes(rgb, "JPEG", quality=85),
        "progressive.jpg": pil_bytes(rgb, "JPEG", quality=70, progressive=True),
        "grey.jpg": pil_bytes(grey, "JPEG"),
        "444.jpg": pil_bytes(rgb, "JPEG", subsampling=0),
        "cmyk.jpg": pil_bytes(rgb.convert("CMYK"), "JPEG"),
        "rgb8.png": pil_bytes(rgb, "PNG"),
        "grey8.png": pil_bytes(grey, "PNG"),
        "grey16.png": pil_bytes(Image.fromarray((gradient(12, 10)[..., 0].astype(np.uint16) * 257), "I;16"), "PNG"),
        "rgb16.png": png_rgb16(9, 7),
        "palette.png": pil_bytes(palette, "PNG"),
        "palette_transparent.png": pil_bytes(palette, "PNG", transparency=2),
        "rgba.png": pil_bytes(rgba, "PNG"),
        "grey_alpha.png": pil_bytes(rgba.convert("LA"), "PNG"),
        "bilevel.png": pil_bytes(grey.convert("1"), "PNG"),
        "interlaced.png": png_adam7(13, 11),
        "rgb.bmp": pil_bytes(rgb, "BMP"),
        "palette.bmp": pil_bytes(palette, "BMP"),
        "bilevel.bmp": pil_bytes(grey.convert("1"), "BMP"),
        "rgba.bmp": pil_bytes(rgba, "BMP"),
        "palette.gif": pil_bytes(palette, "GIF"),
        "transparent.gif": pil_bytes(palette, "GIF", transparency=3),
        "animated.gif": pil_bytes(palette, "GIF", save_all=True,
                                  append_images=[rgb.transpose(Image.FLIP_LEFT_RIGHT).convert("P")], duration=50),
        "rgb.tga": pil_bytes(rgb, "TGA"),
        "rgb_rle.tga": pil_bytes(rgb, "TGA", compression="tga_rle"),
        "rgba.tga": pil_bytes(rgba, "TGA"),
        "grey.tga": pil_bytes(grey, "TGA"),
        "palette.tga": pil_bytes(palette, "TGA"),
        "rgb.ppm": pil_bytes(rgb, "PPM"),
        "grey.pgm": pil_bytes(grey, "PPM"),
        "grey16.pgm": pnm("P5", 5, 4, 65535, np.arange(20) * 3000),
        "maxval15.ppm": pnm("P6", 3, 2, 15, np.arange(18) % 16),
        "rgb.psd": psd(6, 5),
        "rgb.hdr": hdr(4, 3),
    }
    # Every variant of the differential test against PIL (tests/python/image_cases.py):
    # BMP, GIF, TGA, PNM, PSD, PNG, WebP, TIFF and JPEG layouts, hand-built and PIL-written.
    for name, data in image_cases.cases().items():
        if len(data) <= MAX_SEED_BYTES:
            seeds["case_" + name.replace("/", "_")] = data
    # Damaged copies: cut in the header, in the middle, one byte short.
    for name, data in list(seeds.items()):
        for cut in (24, len(data) // 2, len(data) - 1):
            if 0 < cut < len(data):
                seeds[f"cut{cut}_{name}"] = data[:cut]
    seeds.update(bomb_seeds(seeds))
    return seeds


def bomb_seeds(valid: dict) -> dict:
    """Headers claiming 100000 x 100000 pixels (or each format's maximum), and
    chunks claiming absurd lengths."""
    big = 100_000
    ihdr = struct.pack(">IIBBBBB", big, big, 8, 2, 0, 0, 0)
    jpeg = bytearray(valid["baseline.jpg"])
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 65535, 65535)
    bmp = bytearray(valid["rgb.bmp"])
    bmp[18:26] = struct.pack("<ii", big, -big)
    gif = bytearray(valid["palette.gif"])
    gif[6:10] = struct.pack("<HH", 65535, 65535)
    gif_block = bytearray(valid["palette.gif"])
    descriptor = gif_block.index(b"\x2c")  # image descriptor: its size claims the whole screen and more
    gif_block[descriptor + 5:descriptor + 9] = struct.pack("<HH", 65535, 65535)
    tga = bytearray(valid["rgb.tga"])
    tga[12:16] = struct.pack("<HH", 65535, 65535)
    psd_big = bytearray(valid["rgb.psd"])
    psd_big[14:22] = struct.pack(">II", 30000, 30000)
    return {
        "bomb.png": b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b""),
        "bomb_max.png": b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2**32 - 1, 2**32 - 1,
                                                                             16, 6, 0, 0, 0)),
        "huge_chunk.png": png(4, 4, 8, 2, [b"\x00" + bytes(12)] * 4, claimed_length=0x7FFFFFFF),
        "bomb.jpg": bytes(jpeg),
        "bomb.bmp": bytes(bmp),
        "bomb.gif": bytes(gif),
        "bomb_frame.gif": bytes(gif_block),
        "bomb.tga": bytes(tga),
        "bomb.ppm": b"P6\n100000 100000\n255\n" + bytes(64),
        "bomb.psd": bytes(psd_big),
        "bomb.hdr": b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 100000 +X 100000\n" + bytes(64),
    }


# --- index seeds -------------------------------------------------------------

def index_seeds(directory: str) -> dict:
    import perception_retrieval as pr

    rng = np.random.default_rng(7)
    seeds = {}
    for n, dim, metric, dtype, metadata in [(0, 4, "cosine", "float32", False), (1, 1, "ip", "float32", False),
                                            (3, 5, "cosine", "float16", True), (6, 8, "ip", "float16", False),
                                            (5, 3, "cosine", "float32", True), (60, 2, "ip", "float32", False)]:
        retriever = pr.Retriever(dim, metric=metric, dtype=dtype)
        if n:
            vectors = rng.standard_normal((n, dim)).astype(np.float32)
            ids = (np.arange(n, dtype=np.int64) * 7 - 3)
            retriever.add(vectors, ids, [f"img/{i}.jpg" if i % 2 else "" for i in range(n)] if metadata else None)
        path = os.path.join(directory, "index.tmp")
        retriever.save(path)
        with open(path, "rb") as f:
            data = f.read()
        os.unlink(path)
        name = f"n{n}_d{dim}_{metric}_{dtype}{'_meta' if metadata else ''}.pei"
        seeds[name] = data
        # Truncated at each section boundary: header, ids, padding, vectors, metadata, checksum.
        ids_end = 128 + 8 * n
        vectors_offset = (ids_end + 63) // 64 * 64
        vectors_end = vectors_offset + n * dim * (2 if dtype == "float16" else 4)
        for cut in sorted({8, 16, 127, 128, ids_end, vectors_offset, vectors_end, len(data) - 8, len(data) - 1}):
            if 0 < cut < len(data):
                seeds[f"cut{cut}_{name}"] = data[:cut]
    return seeds


# --- npy seeds ---------------------------------------------------------------

def npy_bytes(array, version=None) -> bytes:
    buffer = io.BytesIO()
    if version is None:
        np.save(buffer, array)
    else:
        np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


def npy_header(shape, descr="<f4") -> bytes:
    """A v1.0 header alone, claiming `shape`, for files whose data is missing."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    text += " " * ((64 - (10 + len(text) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()


def npy_seeds() -> dict:
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((4, 3)).astype(np.float32)
    ids = np.array([5, -1, 9, 2**40], dtype=np.int64)
    seeds = {
        # The harness splits its input at the second "\x93NUMPY": vectors, then ids.
        "pair.npy": npy_bytes(vectors) + npy_bytes(ids),
        "pair_int32_ids.npy": npy_bytes(vectors) + npy_bytes(ids.astype(np.int32) % 1000),
        "pair_v2.npy": npy_bytes(vectors, (2, 0)) + npy_bytes(ids, (2, 0)),
        "pair_v3.npy": npy_bytes(vectors, (3, 0)) + npy_bytes(ids, (3, 0)),
        "pair_empty.npy": npy_bytes(np.zeros((0, 3), np.float32)) + npy_bytes(np.zeros(0, np.int64)),
        "pair_one.npy": npy_bytes(np.ones((1, 1), np.float32)) + npy_bytes(np.array([7], np.int64)),
        "pair_float64.npy": npy_bytes(vectors.astype(np.float64)) + npy_bytes(ids),
        "pair_fortran.npy": npy_bytes(np.asfortranarray(vectors)) + npy_bytes(ids),
        "pair_3d.npy": npy_bytes(vectors.reshape(2, 2, 3)) + npy_bytes(ids),
        "pair_big_endian.npy": npy_bytes(vectors.astype(">f4")) + npy_bytes(ids),
        "vectors_only.npy": npy_bytes(vectors),
        "ids_only.npy": npy_bytes(ids),
        # Shapes far beyond the data: 2^62 rows would overflow a byte count.
        "huge_rows.npy": npy_header((2**62, 4)) + bytes(64) + npy_header((2**62,), "<i8") + bytes(64),
        "huge_dim.npy": npy_header((1, 2**61)) + bytes(64) + npy_header((1,), "<i8") + bytes(8),
        "huge_extent.npy": npy_header((10**30, 4)) + npy_header((10**30,), "<i8"),
    }
    for name, data in list(seeds.items()):
        for cut in (8, 11, len(data) // 2, len(data) - 1):
            if 0 < cut < len(data):
                seeds[f"cut{cut}_{name}"] = data[:cut]
    return seeds


def write(directory: str, seeds: dict) -> None:
    os.makedirs(directory, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


def main(argv) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = argv[1]
    corpora = {"fuzz_image": image_seeds(), "fuzz_npy": npy_seeds()}
    os.makedirs(out, exist_ok=True)
    corpora["fuzz_index"] = index_seeds(out)
    for harness, seeds in corpora.items():
        write(os.path.join(out, harness), seeds)
        print(f"make_seed_corpus: {len(seeds)} seeds for {harness} in {os.path.join(out, harness)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
