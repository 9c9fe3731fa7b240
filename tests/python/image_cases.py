"""Image files for the differential tests against PIL, generated in the test.

Every case is built here, from nothing but numpy, zlib and PIL's own writers:
PIL writes what it can (JPEG, PNG, BMP, GIF, TGA, PNM, WebP, TIFF), and small
hand-written encoders below build what PIL cannot write (BMP variants, PSD,
plain PNM, every PNG bit depth and colour type, GIFs with chosen LZW streams,
TGA origins, TIFF layouts). ``cases()`` maps a case name ("format/variant") to
its bytes; ``truncations()`` cuts valid files at several points. fuzz/
make_seed_corpus.py imports this module for its seeds too.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Dict, List

import numpy as np
from PIL import Image


# --- pixels -----------------------------------------------------------------

def gradient(height, width):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x * 7 + y * 13) % 256],
                    axis=-1).astype(np.uint8)


def noise(height, width, channels=3, seed=0, high=256):
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, high, shape, dtype=np.int64).astype(np.uint8 if high <= 256
                                                                                          else np.uint16)


def pil_bytes(image, fmt, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


# --- PNG ----------------------------------------------------------------------

def png_chunk(kind: bytes, payload: bytes, crc=None) -> bytes:
    checksum = zlib.crc32(kind + payload) if crc is None else crc
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", checksum & 0xFFFFFFFF)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def _pack_row(samples: np.ndarray, bit_depth: int) -> bytes:
    """One row of samples (already flattened per pixel) at `bit_depth`."""
    flat = samples.reshape(-1).astype(np.int64)
    if bit_depth == 16:
        return flat.astype(">u2").tobytes()
    if bit_depth == 8:
        return flat.astype(np.uint8).tobytes()
    per_byte = 8 // bit_depth
    padded = np.concatenate([flat, np.zeros((-len(flat)) % per_byte, np.int64)]).reshape(-1, per_byte)
    shifts = np.arange(per_byte - 1, -1, -1) * bit_depth
    return (padded << shifts).sum(axis=1).astype(np.uint8).tobytes()


def _filter(row: bytes, previous: bytes, kind: int, bpp: int) -> bytes:
    cur = np.frombuffer(row, np.uint8).astype(np.int64)
    prev = np.frombuffer(previous, np.uint8).astype(np.int64) if previous else np.zeros_like(cur)
    left = np.concatenate([np.zeros(bpp, np.int64), cur[:-bpp]]) if len(cur) > bpp else np.zeros_like(cur)
    up_left = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]]) if len(cur) > bpp else np.zeros_like(cur)
    if kind == 0:
        out = cur
    elif kind == 1:
        out = cur - left
    elif kind == 2:
        out = cur - prev
    elif kind == 3:
        out = cur - (left + prev) // 2
    else:
        p = left + prev - up_left
        pa, pb, pc = abs(p - left), abs(p - prev), abs(p - up_left)
        predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, up_left))
        out = cur - predictor
    return bytes([kind]) + (out % 256).astype(np.uint8).tobytes()


def png(samples: np.ndarray, bit_depth: int, color_type: int, interlace=False, palette=None, trns=None,
        extra_chunks=(), late_chunks=(), idat_parts=1, iend=True, seed=0) -> bytes:
    """A PNG of `samples` (H x W x C) with every row filtered by a random filter type."""
    height, width = samples.shape[:2]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    samples = samples.reshape(height, width, channels)
    bpp = max(1, channels * bit_depth // 8)
    rng = np.random.default_rng(seed)
    raw = b""
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for x0, y0, dx, dy in passes:
        sub = samples[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        previous = b""
        for row in sub:
            packed = _pack_row(row, bit_depth)
            raw += _filter(packed, previous, int(rng.integers(0, 5)), bpp)
            previous = packed
    compressed = zlib.compress(raw, 9)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type,
                                                                0, 0, 1 if interlace else 0))
    for chunk in extra_chunks:
        out += chunk
    if palette is not None:
        out += png_chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).reshape(-1)))
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    step = max(1, -(-len(compressed) // idat_parts))
    for start in range(0, len(compressed), step):
        out += png_chunk(b"IDAT", compressed[start:start + step])
    for chunk in late_chunks:
        out += chunk
    if iend:
        out += png_chunk(b"IEND", b"")
    return out


def png_cases() -> Dict[str, bytes]:
    cases = {}
    h, w = 11, 13
    for color_type, depths in [(0, (1, 2, 4, 8, 16)), (2, (8, 16)), (3, (1, 2, 4, 8)), (4, (8, 16)), (6, (8, 16))]:
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
        for depth in depths:
            for interlace in (False, True):
                high = 1 << depth
                if color_type == 3:
                    entries = min(high, 7)  # some indices point past the palette: PIL's grey ramp
                    samples = noise(h, w, 1, seed=depth, high=high)
                    palette = noise(entries, 1, 3, seed=depth + 50)
                else:
                    samples = noise(h, w, channels, seed=depth + color_type, high=high)
                    palette = None
                tag = f"png/ct{color_type}-{depth}bit" + ("-interlaced" if interlace else "")
                cases[tag] = png(samples, depth, color_type, interlace, palette, seed=depth)
                if color_type in (0, 2, 3):
                    if color_type == 0:
                        trns = struct.pack(">H", int(samples.reshape(-1)[0]))
                    elif color_type == 2:
                        trns = struct.pack(">HHH", *[int(v) for v in samples.reshape(-1, 3)[0]])
                    else:
                        trns = bytes([0, 128, 255][: min(3, len(palette))])
                    cases[tag + "-trns"] = png(samples, depth, color_type, interlace, palette, trns, seed=depth)
    # 16-bit grey with tRNS and samples above 255: PIL clips, not the high byte (defect 4).
    grey16 = np.array([[0, 5, 255, 256, 300, 4095, 40000, 65535]], np.uint16)
    cases["png/grey16-trns-clipped"] = png(grey16, 16, 0, trns=struct.pack(">H", 300))
    # Tiny images: empty Adam7 passes.
    for size in [(1, 1), (1, 5), (5, 1), (2, 3)]:
        cases[f"png/interlaced-{size[0]}x{size[1]}"] = png(noise(*size, 3, seed=9), 8, 2, True)
    rgb = noise(9, 10, 3, seed=3)
    cases["png/no-iend"] = png(rgb, 8, 2, iend=False)
    cases["png/many-idat"] = png(rgb, 8, 2, idat_parts=7)
    cases["png/empty-idat-first"] = (png(rgb, 8, 2)[:33] + png_chunk(b"IDAT", b"") + png(rgb, 8, 2)[33:])
    cases["png/unknown-chunks"] = png(rgb, 8, 2, extra_chunks=[png_chunk(b"prVt", b"hello"),
                                                                png_chunk(b"tEXt", b"Comment\x00made here")],
                                      late_chunks=[png_chunk(b"zzZz", b"after"), png_chunk(b"tEXt", b"k\x00v")])
    cases["png/srgb-gama-phys"] = png(rgb, 8, 2, extra_chunks=[png_chunk(b"sRGB", b"\x00"),
                                                                png_chunk(b"gAMA", struct.pack(">I", 45455)),
                                                                png_chunk(b"pHYs", struct.pack(">IIB", 2835, 2835, 1))])
    cases["png/bad-crc-before-idat"] = png(rgb, 8, 2, extra_chunks=[png_chunk(b"tEXt", b"a\x00b", crc=1)])
    good = png(rgb, 8, 2)
    idat = good.index(b"IDAT") - 4
    length = struct.unpack(">I", good[idat:idat + 4])[0]
    broken_crc = bytearray(good)
    broken_crc[idat + 8 + length] ^= 0xFF  # the IDAT's CRC: PIL never checks it
    cases["png/bad-crc-idat"] = bytes(broken_crc)
    cases["png/short-srgb"] = png(rgb, 8, 2, extra_chunks=[png_chunk(b"sRGB", b"")])
    cases["png/chrm"] = png(rgb, 8, 2, extra_chunks=[png_chunk(b"cHRM", struct.pack(">8I", *range(8)))])
    cases["png/chrm-short"] = png(rgb, 8, 2, extra_chunks=[png_chunk(b"cHRM", struct.pack(">7I", *range(7)))])
    icc = zlib.compress(b"not really a profile")
    cases["png/iccp"] = png(rgb, 8, 2, extra_chunks=[png_chunk(b"iCCP", b"name\x00\x00" + icc)])
    cases["png/iccp-method-1"] = png(rgb, 8, 2, extra_chunks=[png_chunk(b"iCCP", b"name\x00\x01" + icc)])
    cases["png/short-trns-grey"] = png(noise(4, 4, 1, seed=1), 8, 0, trns=b"\x05")
    cases["png/text-bomb"] = png(rgb, 8, 2, extra_chunks=[png_chunk(b"zTXt", b"k\x00\x00" +
                                                                    zlib.compress(bytes(2 << 20)))])
    cases["png/text-bomb-after-idat"] = png(rgb, 8, 2, late_chunks=[png_chunk(b"zTXt", b"k\x00\x00" +
                                                                              zlib.compress(bytes(2 << 20)))])
    # Chunk layouts PIL reads and libpng alone would refuse.
    idx = noise(5, 6, 1, seed=1, high=4)
    pal4 = noise(4, 1, 3, seed=2)
    cases["png/palette-without-plte"] = png(idx, 8, 3)
    cases["png/plte-partial-entry"] = png(idx, 8, 3, extra_chunks=[png_chunk(b"PLTE", bytes(pal4.reshape(-1)) + b"\x01")])
    cases["png/two-plte"] = png(idx, 8, 3, palette=pal4, extra_chunks=[png_chunk(b"PLTE", bytes(12))])
    cases["png/plte-300-entries"] = png(idx, 8, 3, palette=noise(300, 1, 3, seed=4))
    cases["png/plte-in-rgb-image"] = png(rgb, 8, 2, palette=noise(300, 1, 3, seed=4))
    plain = png(idx, 8, 3, palette=pal4)
    for name, byte, value in [("ihdr-compression-1", 10, 1), ("ihdr-interlace-2", 12, 2)]:
        header = bytearray(plain[16:29])
        header[byte - 8] = value
        cases[f"png/{name}"] = plain[:8] + png_chunk(b"IHDR", bytes(header)) + plain[33:]
    cases["png/chunk-before-ihdr"] = plain[:8] + png_chunk(b"tEXt", b"early\x00bird") + plain[8:]
    cases["png/short-trns-after-idat"] = png(noise(3, 3, 1, seed=3), 8, 0, late_chunks=[png_chunk(b"tRNS", b"\x01")])
    # A stream that inflates far past the image: PIL stops at the last row.
    raw = b"".join(b"\x00" + bytes(3 * 4) for _ in range(4)) + bytes(8 << 20)
    cases["png/overlong-stream"] = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0,
                                                                                          0)) +
                                    png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))
    # PIL's own writers.
    photo = Image.fromarray(gradient(20, 24))
    cases["png/pil-rgb"] = pil_bytes(photo, "PNG")
    cases["png/pil-rgba"] = pil_bytes(Image.fromarray(np.dstack([gradient(20, 24), noise(20, 24, 1)]), "RGBA"), "PNG")
    cases["png/pil-la"] = pil_bytes(photo.convert("LA"), "PNG")
    cases["png/pil-1"] = pil_bytes(photo.convert("1"), "PNG")
    cases["png/pil-i16"] = pil_bytes(Image.fromarray(noise(9, 7, 1, seed=4, high=1000).astype(np.uint16)), "PNG")
    for bits in (1, 2, 4, 8):
        cases[f"png/pil-p{bits}"] = pil_bytes(photo.convert("P", palette=Image.ADAPTIVE, colors=1 << bits), "PNG",
                                              bits=bits)
    cases["png/pil-p-transparency"] = pil_bytes(photo.convert("P", palette=Image.ADAPTIVE, colors=20), "PNG",
                                                transparency=4)
    cases["png/pil-optimized"] = pil_bytes(photo, "PNG", optimize=True)
    frames = [Image.fromarray(noise(16, 16, 3, seed=s)) for s in range(3)]
    cases["png/pil-apng"] = pil_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:])
    return cases


# --- BMP ----------------------------------------------------------------------

def bmp(bits, width, height, pixels: bytes, palette=None, header_size=40, top_down=False, compression=0,
        colors=None, masks=None, planes=1, offset=None, gap=b"") -> bytes:
    """A BMP from ready-made pixel data (rows padded as the caller wants)."""
    entry = 3 if header_size == 12 else 4
    table = b""
    if palette is not None:
        table = b"".join(bytes([b, g, r]) + (b"\x00" if entry == 4 else b"") for r, g, b in palette)
    if header_size == 12:
        info = struct.pack("<IHHHH", 12, width, height, planes, bits)
    else:
        count = (len(palette) if palette is not None else 0) if colors is None else colors
        info = struct.pack("<IiiHHIIiiII", header_size, width, -height if top_down else height, planes, bits,
                           compression, len(pixels), 2835, 2835, count, 0)
        if header_size > 40:  # the colour masks follow the 40-byte core (52-byte and larger headers)
            info = (info + struct.pack("<IIII", *(masks or (0, 0, 0, 0))) + bytes(header_size))[:header_size]
    trailer_masks = b""
    if masks is not None and header_size == 40:
        trailer_masks = struct.pack("<III", *masks[:3])
    data_offset = 14 + len(info) + len(trailer_masks) + len(table) + len(gap) if offset is None else offset
    body = info + trailer_masks + table + gap + pixels
    return b"BM" + struct.pack("<IHHI", 14 + len(body), 0, 0, data_offset) + body


def bmp_rows(indices: np.ndarray, bits: int, bottom_up=True) -> bytes:
    """Packs H x W samples (indices, or B,G,R bytes for 24/32) into padded rows."""
    rows = indices[::-1] if bottom_up else indices
    out = b""
    for row in rows:
        if bits >= 16:
            packed = row.astype(np.uint8).tobytes() if row.dtype == np.uint8 else row.astype("<u2").tobytes()
        else:
            packed = _pack_row(row, bits)
        out += packed + bytes((-len(packed)) % 4)
    return out


def rle8(rows: List[List[int]], eob=True) -> bytes:
    """RLE8 data: each row as runs of equal values (encoded mode) or absolute runs."""
    out = b""
    for row in rows:
        i = 0
        while i < len(row):
            j = i
            while j < len(row) and row[j] == row[i] and j - i < 255:
                j += 1
            if j - i >= 3 or len(row) - i < 3:
                out += bytes([j - i, row[i]])
                i = j
            else:
                k = min(len(row), i + 5)
                chunk = row[i:k]
                if len(chunk) < 3:
                    out += bytes([len(chunk), chunk[0]])
                    i += 1
                    continue
                out += bytes([0, len(chunk)]) + bytes(chunk) + (b"\x00" if len(chunk) % 2 else b"")
                i = k
        out += b"\x00\x00"
    if eob:
        out += b"\x00\x01"
    return out


# What some files encode, where a PIL version misreads them: case name -> RGB pixels (top row first).
ENCODED: Dict[str, np.ndarray] = {}


def _bmp_rle_pixels(file_rows, palette) -> np.ndarray:
    """The RGB image of bottom-up BMP rows of palette indices."""
    return np.array([[palette[i] for i in row] for row in reversed(file_rows)], dtype=np.uint8)


def bmp_cases() -> Dict[str, bytes]:
    cases = {}
    h, w = 7, 9
    pal16 = [tuple(int(v) for v in c) for c in noise(16, 1, 3, seed=11).reshape(-1, 3)]
    pal256 = [tuple(int(v) for v in c) for c in noise(256, 1, 3, seed=12).reshape(-1, 3)]
    pal2 = [(200, 10, 30), (5, 250, 60)]
    for bits, palette in [(1, pal2), (4, pal16), (8, pal256)]:
        idx = noise(h, w, 1, seed=bits, high=len(palette))
        for top in (False, True):
            name = f"bmp/{bits}bit" + ("-topdown" if top else "")
            cases[name] = bmp(bits, w, h, bmp_rows(idx, bits, not top), palette, top_down=top)
        cases[f"bmp/os2-{bits}bit"] = bmp(bits, w, h, bmp_rows(idx, bits), palette, header_size=12)
        cases[f"bmp/v5-{bits}bit"] = bmp(bits, w, h, bmp_rows(idx, bits), palette, header_size=124)
    bgr = noise(h, w, 3, seed=21)
    for top in (False, True):
        cases["bmp/24bit" + ("-topdown" if top else "")] = bmp(24, w, h, bmp_rows(bgr, 24, not top), top_down=top)
    cases["bmp/os2-24bit"] = bmp(24, w, h, bmp_rows(bgr, 24), header_size=12)
    bgrx = noise(h, w, 4, seed=22)
    cases["bmp/32bit"] = bmp(32, w, h, bmp_rows(bgrx, 32))
    cases["bmp/32bit-topdown"] = bmp(32, w, h, bmp_rows(bgrx, 32, False), top_down=True)
    px16 = np.random.default_rng(23).integers(0, 65536, (h, w), dtype=np.int64).astype(np.uint16)
    cases["bmp/16bit-555"] = bmp(16, w, h, bmp_rows(px16, 16))
    cases["bmp/16bit-555-bitfields"] = bmp(16, w, h, bmp_rows(px16, 16), compression=3, masks=(0x7C00, 0x3E0, 0x1F, 0))
    cases["bmp/16bit-565-bitfields"] = bmp(16, w, h, bmp_rows(px16, 16), compression=3, masks=(0xF800, 0x7E0, 0x1F, 0))
    cases["bmp/16bit-565-v4"] = bmp(16, w, h, bmp_rows(px16, 16), header_size=108, compression=3,
                                    masks=(0xF800, 0x7E0, 0x1F, 0))
    cases["bmp/16bit-444-bitfields"] = bmp(16, w, h, bmp_rows(px16, 16), compression=3, masks=(0xF00, 0xF0, 0xF, 0))
    cases["bmp/24bit-bitfields"] = bmp(24, w, h, bmp_rows(bgr, 24), compression=3, masks=(0xFF0000, 0xFF00, 0xFF, 0))
    for masks in [(0xFF0000, 0xFF00, 0xFF, 0), (0xFF000000, 0xFF0000, 0xFF00, 0), (0xFF000000, 0xFF0000, 0xFF00, 0xFF),
                  (0xFF, 0xFF00, 0xFF0000, 0xFF000000), (0xFF0000, 0xFF00, 0xFF, 0xFF000000), (0, 0, 0, 0),
                  (0x3FF00000, 0xFFC00, 0x3FF, 0), (0xFF000000, 0xFF00, 0xFF, 0), (0xFF000000, 0xFF00, 0xFF, 0xFF0000)]:
        name = "bmp/32bit-masks-" + "-".join(f"{m:x}" for m in masks)
        cases[name] = bmp(32, w, h, bmp_rows(bgrx, 32), header_size=124, compression=3, masks=masks)
    cases["bmp/32bit-bitfields-v3"] = bmp(32, w, h, bmp_rows(bgrx, 32), compression=3, masks=(0xFF0000, 0xFF00, 0xFF, 0))
    # Palettes: odd sizes, indices past the palette (defect 2), greyscale, more than 256 entries.
    idx8 = noise(h, w, 1, seed=31)
    for count in (2, 3, 5, 17, 255):
        cases[f"bmp/8bit-{count}-colors-indices-past"] = bmp(8, w, h, bmp_rows(idx8, 8), pal256[:count])
    cases["bmp/4bit-3-colors-indices-past"] = bmp(4, w, h, bmp_rows(noise(h, w, 1, seed=2, high=16), 4), pal16[:3])
    cases["bmp/8bit-300-colors"] = bmp(8, w, h, bmp_rows(idx8, 8), pal256 + pal256[:44])
    cases["bmp/8bit-colors-0"] = bmp(8, w, h, bmp_rows(idx8, 8), pal256, colors=0)
    grey = [(i, i, i) for i in range(256)]
    cases["bmp/8bit-grey-ramp"] = bmp(8, w, h, bmp_rows(idx8, 8), grey)
    cases["bmp/8bit-grey-16"] = bmp(8, w, h, bmp_rows(idx8, 8), grey[:16])
    cases["bmp/4bit-grey-ramp-16"] = bmp(4, 8, 2, bmp_rows(noise(2, 8, 1, seed=3, high=16), 4), grey[:16])
    cases["bmp/4bit-grey-ramp-wide"] = bmp(4, 4, 2, bmp_rows(noise(2, 4, 1, seed=3, high=16), 4), grey[:16])
    cases["bmp/1bit-black-white"] = bmp(1, w, h, bmp_rows(noise(h, w, 1, seed=5, high=2), 1), [(0, 0, 0), (255, 255, 255)])
    cases["bmp/8bit-black-white"] = bmp(8, w, h, bmp_rows(noise(h, w, 1, seed=5, high=4), 8), [(0, 0, 0), (255, 255, 255)])
    # Pixel-data offsets: a gap after the palette, an offset pointing right after the header.
    cases["bmp/8bit-gap-before-pixels"] = bmp(8, w, h, bmp_rows(idx8, 8), pal256, gap=b"\x55" * 37)
    cases["bmp/8bit-offset-after-header"] = bmp(8, w, h, bmp_rows(idx8, 8), pal256, offset=14 + 40)
    cases["bmp/24bit-offset-zero"] = bmp(24, w, h, bmp_rows(bgr, 24), offset=0)
    for planes in (0, 2, 0xFFFF):
        cases[f"bmp/planes-{planes}"] = bmp(24, w, h, bmp_rows(bgr, 24), planes=planes)
    cases["bmp/header-56"] = bmp(24, w, h, bmp_rows(bgr, 24), header_size=56)
    cases["bmp/header-52-bitfields"] = bmp(16, w, h, bmp_rows(px16, 16), header_size=52, compression=3,
                                           masks=(0xF800, 0x7E0, 0x1F, 0))
    cases["bmp/header-56-bitfields"] = bmp(32, w, h, bmp_rows(bgrx, 32), header_size=56, compression=3,
                                           masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000))
    cases["bmp/unsupported-2bit"] = bmp(2, w, h, bmp_rows(noise(h, w, 1, seed=6, high=4), 2), pal16[:4])
    cases["bmp/unsupported-jpeg"] = bmp(24, w, h, b"\xff\xd8\xff\xd9", compression=4)
    # RLE8 and RLE4.
    rows = [[int(v) for v in row] for row in noise(h, 12, 1, seed=41, high=6)]
    rows[2] = [3] * 12
    rows[4] = [1, 2, 3, 4, 5, 0, 0, 0, 0, 0, 0, 1]
    cases["bmp/rle8"] = bmp(8, 12, h, rle8(rows), pal256, compression=1)
    cases["bmp/rle8-topdown"] = bmp(8, 12, h, rle8(rows), pal256, compression=1, top_down=True)
    cases["bmp/rle8-grey"] = bmp(8, 12, h, rle8(rows), grey, compression=1)
    delta = b"\x03\x05\x00\x02\x04\x01\x02\x07\x00\x00" + b"\x0c\x01\x00\x00" * (h - 2) + b"\x00\x01"
    cases["bmp/rle8-delta"] = bmp(8, 12, h, delta, pal256, compression=1)
    # 3 pixels of 5, a move 4 right and 1 up, 2 pixels of 7, the end of that row, rows of 1 up to the top.
    ENCODED["bmp/rle8-delta"] = _bmp_rle_pixels([[5] * 3 + [0] * 9, [0] * 7 + [7, 7] + [0] * 3] + [[1] * 12] * (h - 2),
                                                pal256)
    cases["bmp/rle8-early-end"] = bmp(8, 12, h, rle8(rows[:3]), pal256, compression=1)
    cases["bmp/rle8-run-past-row"] = bmp(8, 12, h, b"\x20\x04" + rle8(rows[1:]), pal256, compression=1)
    cases["bmp/rle8-absolute-past-row"] = bmp(8, 4, 3, b"\x00\x06\x01\x02\x03\x04\x05\x06\x00\x00" * 3 + b"\x00\x01",
                                              pal256, compression=1)
    nibbles = b"".join(bytes([0x06, 0x12, 0x00, 0x05, 0x34, 0x56, 0x70, 0x00, 0x01, 0x89, 0x00, 0x00])
                       for _ in range(h)) + b"\x00\x01"
    cases["bmp/rle4"] = bmp(4, 12, h, nibbles, pal16, compression=2)
    ENCODED["bmp/rle4"] = _bmp_rle_pixels([[1, 2, 1, 2, 1, 2, 3, 4, 5, 6, 7, 8]] * h, pal16)
    odd = b"".join(bytes([0x00, 0x03, 0xAB, 0xC0, 0x09, 0x45, 0x00, 0x00]) for _ in range(h)) + b"\x00\x01"
    cases["bmp/rle4-odd-absolute"] = bmp(4, 12, h, odd, pal16, compression=2)
    ENCODED["bmp/rle4-odd-absolute"] = _bmp_rle_pixels([[10, 11, 12, 4, 5, 4, 5, 4, 5, 4, 5, 4]] * h, pal16)
    cases["bmp/rle-24bit"] = bmp(24, 4, 2, b"\x04\x01\x00\x00\x04\x02\x00\x01", compression=1)
    # PIL's writers.
    photo = Image.fromarray(gradient(15, 17))
    cases["bmp/pil-rgb"] = pil_bytes(photo, "BMP")
    cases["bmp/pil-l"] = pil_bytes(photo.convert("L"), "BMP")
    cases["bmp/pil-1"] = pil_bytes(photo.convert("1"), "BMP")
    cases["bmp/pil-p"] = pil_bytes(photo.convert("P", palette=Image.ADAPTIVE, colors=50), "BMP")
    cases["bmp/pil-rgba"] = pil_bytes(Image.fromarray(np.dstack([gradient(15, 17), noise(15, 17, 1)]), "RGBA"), "BMP")
    # DIB: the same without the 14-byte file header (PIL's DIB plugin; the pixels follow the palette).
    for name in ("8bit", "4bit-topdown", "24bit", "os2-8bit", "16bit-565-bitfields", "rle8", "32bit-topdown"):
        cases["dib/" + name] = cases["bmp/" + name][14:]
    return cases


# --- GIF ----------------------------------------------------------------------

def lzw(indices: bytes, min_code_size: int, clear_every=None, early_end=None) -> bytes:
    """GIF LZW data as sub-blocks (without the code size byte)."""
    clear, end = 1 << min_code_size, (1 << min_code_size) + 1
    bits, bit_count, out = 0, 0, bytearray()

    def emit(code, size):
        nonlocal bits, bit_count
        bits |= code << bit_count
        bit_count += size
        while bit_count >= 8:
            out.append(bits & 255)
            bits >>= 8
            bit_count -= 8

    size = min_code_size + 1
    table = {bytes([i]): i for i in range(clear)}
    next_code = end + 1
    emit(clear, size)
    current = b""
    emitted = 0
    for n, value in enumerate(indices):
        if early_end is not None and n == early_end:
            break
        symbol = current + bytes([value])
        if symbol in table:
            current = symbol
            continue
        emit(table[current], size)
        emitted += 1
        if next_code < 4096:
            table[symbol] = next_code
            next_code += 1
            if next_code > (1 << size) and size < 12:
                size += 1
        if (clear_every and emitted % clear_every == 0) or next_code >= 4096 and clear_every is None:
            emit(clear, size)
            table = {bytes([i]): i for i in range(clear)}
            next_code, size = end + 1, min_code_size + 1
        current = bytes([value])
    if current:
        emit(table[current], size)
    emit(end, size)
    if bit_count:
        out.append(bits & 255)
    blocks = b""
    for start in range(0, len(out), 255):
        piece = bytes(out[start:start + 255])
        blocks += bytes([len(piece)]) + piece
    return blocks + b"\x00"


def gif(screen, frames, global_palette=None, background=0, version=b"GIF89a") -> bytes:
    """frames: dicts with indices (H x W), x, y, local palette, transparency, interlace, code size."""
    width, height = screen
    flags = 0
    table = b""
    if global_palette is not None:
        entries = len(global_palette) // 3
        bits = max(1, (entries - 1).bit_length())
        flags = 0x80 | (bits - 1) | ((bits - 1) << 4)
        table = bytes(global_palette) + bytes(3 * (1 << bits) - len(global_palette))
    out = version + struct.pack("<HHBBB", width, height, flags, background, 0) + table
    for frame in frames:
        indices = np.asarray(frame["indices"], np.uint8)
        fh, fw = indices.shape
        if frame.get("transparency") is not None:
            out += b"!\xf9\x04" + bytes([1]) + struct.pack("<H", 0) + bytes([frame["transparency"]]) + b"\x00"
        local = frame.get("palette")
        descriptor_flags = 0x40 if frame.get("interlace") else 0
        local_table = b""
        if local is not None:
            entries = len(local) // 3
            bits = max(1, (entries - 1).bit_length())
            descriptor_flags |= 0x80 | (bits - 1)
            local_table = bytes(local) + bytes(3 * (1 << bits) - len(local))
        rows = indices
        if frame.get("interlace"):
            order = list(range(0, fh, 8)) + list(range(4, fh, 8)) + list(range(2, fh, 4)) + list(range(1, fh, 2))
            rows = indices[order]
        code_size = frame.get("code_size", max(2, int(indices.max()).bit_length()))
        out += b"," + struct.pack("<HHHHB", frame.get("x", 0), frame.get("y", 0), fw, fh, descriptor_flags) + local_table
        out += bytes([code_size]) + lzw(rows.tobytes(), code_size, frame.get("clear_every"), frame.get("early_end"))
    return out + b";"


def gif_cases() -> Dict[str, bytes]:
    cases = {}
    pal = list(noise(16, 1, 3, seed=51).reshape(-1))
    idx = noise(10, 12, 1, seed=52, high=16)
    cases["gif/basic"] = gif((12, 10), [{"indices": idx}], pal)
    cases["gif/interlaced"] = gif((12, 10), [{"indices": idx, "interlace": True}], pal)
    cases["gif/interlaced-tall"] = gif((5, 23), [{"indices": noise(23, 5, 1, seed=53, high=16), "interlace": True}], pal)
    cases["gif/transparency"] = gif((12, 10), [{"indices": idx, "transparency": 3}], pal)
    cases["gif/local-palette"] = gif((12, 10), [{"indices": idx, "palette": list(noise(16, 1, 3, seed=54).reshape(-1))}],
                                     pal)
    cases["gif/no-palette"] = gif((12, 10), [{"indices": idx}])
    cases["gif/grey-ramp-palette"] = gif((12, 10), [{"indices": idx}], [v for i in range(16) for v in (i, i, i)])
    cases["gif/indices-past-palette"] = gif((12, 10), [{"indices": noise(10, 12, 1, seed=55, high=64),
                                                        "code_size": 6}], pal[:12])
    cases["gif/frame-inside-screen"] = gif((20, 16), [{"indices": idx, "x": 3, "y": 4}], pal, background=5)
    cases["gif/frame-inside-screen-transparent"] = gif((20, 16), [{"indices": idx, "x": 3, "y": 4, "transparency": 7}],
                                                       pal)
    cases["gif/frame-past-screen"] = gif((8, 6), [{"indices": idx, "x": 2, "y": 1}], pal)
    cases["gif/zero-screen"] = gif((0, 0), [{"indices": idx}], pal)
    big = noise(64, 96, 1, seed=56, high=256)
    cases["gif/full-table"] = gif((96, 64), [{"indices": big, "code_size": 8, "clear_every": 0}],
                                  list(noise(256, 1, 3, seed=57).reshape(-1)))
    cases["gif/clear-codes"] = gif((96, 64), [{"indices": big, "code_size": 8, "clear_every": 300}],
                                   list(noise(256, 1, 3, seed=57).reshape(-1)))
    cases["gif/code-size-2"] = gif((12, 10), [{"indices": noise(10, 12, 1, seed=58, high=4), "code_size": 2}], pal[:12])
    cases["gif/early-end-code"] = gif((12, 10), [{"indices": idx, "early_end": 50}], pal)
    cases["gif/87a"] = gif((12, 10), [{"indices": idx}], pal, version=b"GIF87a")
    two = gif((12, 10), [{"indices": idx}, {"indices": idx[::-1], "palette": pal[::-1]}], pal)
    cases["gif/two-frames"] = two
    cases["gif/no-image"] = b"GIF89a" + struct.pack("<HHBBB", 4, 4, 0, 0, 0) + b";"
    basic = cases["gif/basic"]
    start = 13 + len(pal) + (3 * 16 - len(pal))
    extensions = (b"!\xfe\x05hello\x03abc\x00" + b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00" +
                  b"!\x01\x0c" + bytes(12) + b"\x00")  # comment, loop count, plain text
    cases["gif/extensions"] = basic[:start] + extensions + basic[start:]
    cases["gif/stray-bytes-between-blocks"] = basic[:start] + b"\x00\x07" + basic[start:]
    cases["gif/two-control-extensions"] = (basic[:start] + b"!\xf9\x04\x01\x00\x00\x02\x00" +
                                           b"!\xf9\x04\x00\x00\x00\x09\x00" + basic[start:])
    # PIL's writers.
    photo = Image.fromarray(gradient(20, 30))
    p = photo.convert("P", palette=Image.ADAPTIVE, colors=40)
    cases["gif/pil-p"] = pil_bytes(p, "GIF")
    cases["gif/pil-p-transparency"] = pil_bytes(p, "GIF", transparency=5)
    cases["gif/pil-interlace-off"] = pil_bytes(p, "GIF", interlace=0)
    cases["gif/pil-l"] = pil_bytes(photo.convert("L"), "GIF")
    cases["gif/pil-animated"] = pil_bytes(p, "GIF", save_all=True,
                                          append_images=[Image.fromarray(noise(20, 30, 3, seed=5)).convert("P")],
                                          duration=40, loop=0)
    return cases


# --- TGA ----------------------------------------------------------------------

def tga(image_type, depth, width, height, data, color_map=None, map_depth=24, map_first=0, flags=0, ident=b"") -> bytes:
    entries = 0 if color_map is None else len(color_map) // (map_depth // 8 if map_depth in (16, 24, 32) else 1)
    header = struct.pack("<BBBHHBHHHHBB", len(ident), 0 if color_map is None else 1, image_type, map_first, entries,
                         map_depth if color_map is not None else 0, 0, 0, width, height, depth, flags)
    return header + ident + (color_map or b"") + data


def tga_rle(pixels: bytes, pixel_bytes: int, width: int, across_rows=False) -> bytes:
    """RLE packets of at most 128 pixels, runs never crossing a row (unless across_rows)."""
    count = len(pixels) // pixel_bytes
    px = [pixels[i * pixel_bytes:(i + 1) * pixel_bytes] for i in range(count)]
    out, i = b"", 0
    while i < count:
        limit = count if across_rows else (i // width + 1) * width
        j = i
        while j < limit and px[j] == px[i] and j - i < 128:
            j += 1
        if j - i >= 2:
            out += bytes([0x80 | (j - i - 1)]) + px[i]
            i = j
        else:
            k = i
            while k < min(count, i + 128) and (k + 1 >= count or px[k + 1] != px[k]):
                k += 1
            k = max(k, i + 1)
            out += bytes([k - i - 1]) + b"".join(px[i:k])
            i = k
    return out


def tga_cases() -> Dict[str, bytes]:
    cases = {}
    w, h = 7, 5
    bgr = noise(h, w, 3, seed=61)
    bgr[1, :4] = 9  # a run
    flat = bgr[::-1].tobytes()
    for flags, name in [(0, "bottom-left"), (0x10, "bottom-right"), (0x20, "top-left"), (0x30, "top-right")]:
        cases[f"tga/24bit-{name}"] = tga(2, 24, w, h, flat, flags=flags)
        cases[f"tga/24bit-rle-{name}"] = tga(10, 24, w, h, tga_rle(flat, 3, w), flags=flags)
    cases["tga/32bit"] = tga(2, 32, w, h, noise(h, w, 4, seed=62).tobytes(), flags=0x28)
    cases["tga/32bit-rle"] = tga(10, 32, w, h, tga_rle(noise(h, w, 4, seed=62).tobytes(), 4, w), flags=0x08)
    px16 = np.random.default_rng(63).integers(0, 65536, (h, w), dtype=np.int64).astype("<u2").tobytes()
    cases["tga/16bit"] = tga(2, 16, w, h, px16)
    cases["tga/16bit-rle"] = tga(10, 16, w, h, tga_rle(px16, 2, w))
    grey = noise(h, w, 1, seed=64).tobytes()
    cases["tga/grey"] = tga(3, 8, w, h, grey)
    cases["tga/grey-rle"] = tga(11, 8, w, h, tga_rle(grey, 1, w))
    cases["tga/grey-alpha"] = tga(3, 16, w, h, noise(h, w, 2, seed=65).tobytes())
    cases["tga/grey-with-colour-map"] = tga(3, 8, w, h, grey, color_map=noise(256, 1, 3, seed=66).tobytes())
    cmap = noise(10, 1, 3, seed=67).tobytes()
    idx = noise(h, w, 1, seed=68, high=12).tobytes()
    cases["tga/palette"] = tga(1, 8, w, h, idx, color_map=cmap)
    cases["tga/palette-rle"] = tga(9, 8, w, h, tga_rle(idx, 1, w), color_map=cmap)
    cases["tga/palette-first-entry"] = tga(1, 8, w, h, idx, color_map=cmap, map_first=3)
    cases["tga/palette-16bit-map"] = tga(1, 8, w, h, idx, color_map=noise(10, 1, 2, seed=69).tobytes(), map_depth=16)
    cases["tga/palette-32bit-map"] = tga(1, 8, w, h, idx, color_map=noise(10, 1, 4, seed=70).tobytes(), map_depth=32)
    cases["tga/palette-no-map"] = tga(1, 8, w, h, idx)
    cases["tga/palette-map-depth-15"] = tga(1, 8, w, h, idx, color_map=noise(10, 1, 2, seed=69).tobytes(), map_depth=15)
    cases["tga/palette-too-many-entries"] = tga(1, 8, w, h, idx, color_map=noise(250, 1, 3, seed=71).tobytes(),
                                                map_first=10)
    cases["tga/rgb-with-colour-map"] = tga(2, 24, w, h, flat, color_map=cmap)
    cases["tga/ident"] = tga(2, 24, w, h, flat, ident=b"made by a test")
    cases["tga/rle-run-across-rows"] = tga(10, 24, w, h, tga_rle(b"\x01\x02\x03" * (w * h), 3, w, across_rows=True))
    cases["tga/rle-literal-across-rows"] = tga(10, 24, 3, 2, b"\x05" + bytes(range(18)))
    cases["tga/unsupported-16bit-palette"] = tga(1, 16, w, h, bytes(2 * w * h), color_map=cmap)
    photo = Image.fromarray(gradient(12, 14))
    for mode in ("RGB", "RGBA", "L", "LA", "P"):
        image = photo if mode == "RGB" else (Image.fromarray(np.dstack([gradient(12, 14), noise(12, 14, 1)]), "RGBA")
                                             if mode == "RGBA" else photo.convert(mode))
        for compression in (None, "tga_rle"):
            name = f"tga/pil-{mode.lower()}" + ("-rle" if compression else "")
            cases[name] = pil_bytes(image, "TGA", compression=compression)
    cases["tga/pil-top-left"] = pil_bytes(photo, "TGA", orientation=1)
    cases["tga/pil-1"] = pil_bytes(photo.convert("1"), "TGA")  # (PIL 9.4's RLE writer overflows its buffer for "1")
    return cases


# --- PNM ----------------------------------------------------------------------

def pnm_cases() -> Dict[str, bytes]:
    cases = {}
    w, h = 5, 3
    bits = noise(h, w, 1, seed=81, high=2)
    cases["pnm/p1"] = b"P1\n# a comment\n5 3\n" + b"\n".join(b" ".join(b"%d" % v for v in row) for row in bits) + b"\n"
    cases["pnm/p1-no-spaces"] = b"P1 5 3\n" + b"".join(b"%d" % v for v in bits.reshape(-1))
    cases["pnm/p1-bad-digit"] = b"P1 5 3\n" + b"0 1 2 " * 5
    cases["pnm/p4"] = b"P4\n5 3\n" + b"".join(_pack_row(row, 1) for row in bits)
    for maxval in (1, 15, 255, 256, 1000, 65535):
        samples = noise(h, w, 1, seed=maxval, high=maxval + 1 if maxval < 255 else 256).astype(np.int64) * \
            (1 if maxval <= 255 else maxval // 255)
        samples = np.minimum(samples, maxval)
        text = b"\n".join(b" ".join(b"%d" % v for v in row) for row in samples)
        cases[f"pnm/p2-maxval{maxval}"] = b"P2\n%d %d\n%d\n" % (w, h, maxval) + text + b"\n"
        rgb = np.minimum(noise(h, w, 3, seed=maxval + 1).astype(np.int64) * max(1, maxval // 255), maxval)
        cases[f"pnm/p3-maxval{maxval}"] = (b"P3 %d %d %d\n" % (w, h, maxval) +
                                           b" ".join(b"%d" % v for v in rgb.reshape(-1)) + b"\n")
        dtype = np.uint8 if maxval < 256 else ">u2"
        cases[f"pnm/p5-maxval{maxval}"] = b"P5\n%d %d\n%d\n" % (w, h, maxval) + samples.astype(dtype).tobytes()
        cases[f"pnm/p6-maxval{maxval}"] = b"P6\n%d %d\n%d\n" % (w, h, maxval) + rgb.astype(dtype).tobytes()
    cases["pnm/p5-samples-over-maxval"] = b"P5 4 1 100\n" + bytes([0, 50, 100, 250])
    cases["pnm/p6-16bit-over-maxval"] = b"P6 1 1 1000\n" + np.array([5, 1000, 60000], ">u2").tobytes()
    cases["pnm/p2-sample-over-maxval"] = b"P2 2 1 10\n3 11\n"
    cases["pnm/p2-negative-sample"] = b"P2 2 1 255\n3 -11\n"
    cases["pnm/p2-comment-glues-tokens"] = b"P2 2 1 255\n1#c\n2 77\n"
    cases["pnm/p3-comments"] = b"P3\n# c1\n2 1 # c2\n255\n1 2 3 # c3\n4 5 6"
    cases["pnm/header-comment-in-token"] = b"P5\n1#split\n2 1\n255\n" + bytes(range(12))
    cases["pnm/header-long-token"] = b"P5\n123456789012 1\n255\n" + bytes(4)
    cases["pnm/maxval-0"] = b"P5 1 1 0\n\x00"
    cases["pnm/maxval-65536"] = b"P5 1 1 65536\n\x00\x00"
    cases["pnm/p7"] = b"P7\nWIDTH 1\nHEIGHT 1\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n\x01\x02\x03"
    photo = Image.fromarray(gradient(9, 11))
    cases["pnm/pil-ppm"] = pil_bytes(photo, "PPM")
    cases["pnm/pil-pgm"] = pil_bytes(photo.convert("L"), "PPM")
    cases["pnm/pil-pbm"] = pil_bytes(photo.convert("1"), "PPM")
    cases["pnm/pil-pgm16"] = pil_bytes(Image.fromarray(noise(4, 5, 1, seed=3, high=3000).astype(np.int32), "I"), "PPM")
    return cases


# --- PSD ----------------------------------------------------------------------

def packbits(data: bytes) -> bytes:
    out, i = b"", 0
    while i < len(data):
        j = i
        while j < len(data) and data[j] == data[i] and j - i < 128:
            j += 1
        if j - i >= 2:
            out += bytes([257 - (j - i), data[i]])
            i = j
        else:
            k = i
            while k < len(data) and k - i < 128 and (k + 1 >= len(data) or data[k + 1] != data[k]):
                k += 1
            k = max(k, i + 1)
            out += bytes([k - i - 1]) + data[i:k]
            i = k
    return out


def psd(mode, depth, planes: List[bytes], width, height, compression=0, color_data=b"", layers=b"",
        resources=b"", channels=None) -> bytes:
    count = len(planes) if channels is None else channels
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, count, height, width, depth, mode)
    out = header + struct.pack(">I", len(color_data)) + color_data + struct.pack(">I", len(resources)) + resources
    out += struct.pack(">I", len(layers)) + layers
    row_bytes = (width * depth + 7) // 8
    if compression == 0:
        out += struct.pack(">H", 0) + b"".join(planes)
    else:
        rows = [packbits(plane[y * row_bytes:(y + 1) * row_bytes]) for plane in planes for y in range(height)]
        out += struct.pack(">H", 1) + b"".join(struct.pack(">H", len(r)) for r in rows) + b"".join(rows)
    return out


def psd_layer_section(width, height, channel_types) -> bytes:
    """One layer record with raw channel data, inside a layer-and-mask section."""
    record = struct.pack(">IIII", 0, 0, height, width) + struct.pack(">H", len(channel_types))
    for channel in channel_types:
        record += struct.pack(">hI", channel, 2 + width * height)
    record += b"8BIMnorm" + bytes([255, 0, 0, 0])
    extra = struct.pack(">I", 0) + struct.pack(">I", 0) + b"\x03abc"
    record += struct.pack(">I", len(extra)) + extra
    data = b"".join(struct.pack(">H", 0) + bytes([(i * 37) % 256]) * (width * height) for i in range(len(channel_types)))
    info = struct.pack(">h", 1) + record + data
    if len(info) % 2:
        info += b"\x00"
    return struct.pack(">I", len(info)) + info + struct.pack(">I", 0)


def psd_cases() -> Dict[str, bytes]:
    cases = {}
    w, h = 6, 4
    planes = [noise(h, w, 1, seed=90 + c).tobytes() for c in range(5)]
    planes[0] = bytes([7]) * 10 + planes[0][10:]  # runs for PackBits
    for compression in (0, 1):
        tag = "-rle" if compression else "-raw"
        cases["psd/grey" + tag] = psd(1, 8, planes[:1], w, h, compression)
        cases["psd/rgb" + tag] = psd(3, 8, planes[:3], w, h, compression)
        cases["psd/rgba" + tag] = psd(3, 8, planes[:4], w, h, compression)
        cases["psd/rgb-extra-channel" + tag] = psd(3, 8, planes[:5], w, h, compression)
        cases["psd/grey-extra-channel" + tag] = psd(1, 8, planes[:2], w, h, compression)
        cases["psd/cmyk" + tag] = psd(4, 8, planes[:4], w, h, compression)
        cases["psd/indexed" + tag] = psd(2, 8, planes[:1], w, h, compression, color_data=noise(768, 1, 1, seed=99).tobytes())
        cases["psd/duotone" + tag] = psd(8, 8, planes[:1], w, h, compression, color_data=bytes(100))
        bitmap = noise(h, 1, 1, seed=98).tobytes()
        cases["psd/bitmap" + tag] = psd(0, 1, [bitmap], w, h, compression)
    cases["psd/indexed-no-table"] = psd(2, 8, planes[:1], w, h)
    cases["psd/with-layer"] = psd(3, 8, planes[:3], w, h, layers=psd_layer_section(w, h, [0, 1, 2]))
    cases["psd/with-layer-alpha"] = psd(3, 8, planes[:3], w, h, layers=psd_layer_section(w, h, [-1, 0, 1, 2]))
    cases["psd/layer-with-mask"] = psd(3, 8, planes[:3], w, h, layers=psd_layer_section(w, h, [0, 1, 2, -2]))
    cases["psd/layer-grey-alpha"] = psd(1, 8, planes[:1], w, h, layers=psd_layer_section(w, h, [-1, 0]))
    resource = b"8BIM" + struct.pack(">H", 1005) + b"\x00\x00" + struct.pack(">I", 3) + b"abc\x00"
    cases["psd/with-resource"] = psd(3, 8, planes[:3], w, h, resources=resource)
    cases["psd/16bit"] = psd(3, 16, [p * 2 for p in planes[:3]], w, h)
    cases["psd/lab"] = psd(9, 8, planes[:3], w, h)
    cases["psd/zip"] = psd(3, 8, planes[:3], w, h)[:-3 * w * h - 2] + struct.pack(">H", 2) + zlib.compress(
        b"".join(planes[:3]))
    cases["psd/version-2"] = b"8BPS\x00\x02" + psd(3, 8, planes[:3], w, h)[6:]
    return cases


# --- WebP, TIFF, JPEG -------------------------------------------------------------

def webp_cases() -> Dict[str, bytes]:
    cases = {}
    photo = Image.fromarray(gradient(40, 52))
    rgba = Image.fromarray(np.dstack([gradient(40, 52), noise(40, 52, 1, seed=5)]), "RGBA")
    transparent = np.dstack([noise(24, 24, 3, seed=6), (noise(24, 24, 1, seed=7) > 128).astype(np.uint8) * 255])
    cases["webp/lossy"] = pil_bytes(photo, "WEBP", quality=80)
    cases["webp/lossy-q20"] = pil_bytes(Image.fromarray(noise(33, 35, 3, seed=8)), "WEBP", quality=20)
    cases["webp/lossless"] = pil_bytes(photo, "WEBP", lossless=True)
    cases["webp/lossy-alpha"] = pil_bytes(rgba, "WEBP", quality=70)
    cases["webp/lossless-alpha"] = pil_bytes(rgba, "WEBP", lossless=True)
    cases["webp/lossless-alpha-exact"] = pil_bytes(Image.fromarray(transparent, "RGBA"), "WEBP", lossless=True, exact=True)
    cases["webp/lossy-odd-size"] = pil_bytes(Image.fromarray(noise(7, 3, 3, seed=9)), "WEBP")
    frames = [Image.fromarray(noise(20, 24, 3, seed=s)) for s in range(3)]
    cases["webp/animated-lossy"] = pil_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50)
    cases["webp/animated-lossless"] = pil_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:],
                                                lossless=True)
    alpha_frames = [Image.fromarray(np.dstack([noise(20, 24, 3, seed=s), noise(20, 24, 1, seed=s + 9)]), "RGBA")
                    for s in range(2)]
    cases["webp/animated-alpha"] = pil_bytes(alpha_frames[0], "WEBP", save_all=True, append_images=alpha_frames[1:])
    lossless = cases["webp/lossless"]
    cases["webp/trailing-bytes"] = lossless + b"\x00garbage after the RIFF container"
    return cases


def tiff_ifd(entries, little=True, image_data=b"", extra=b""):
    """A one-image TIFF: entries is a list of (tag, type, values); strip offsets point at image_data."""
    end = "<" if little else ">"
    sizes = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8}
    codes = {1: "B", 2: "c", 3: "H", 4: "I"}
    data_offset = 8
    ifd_offset = data_offset + len(image_data) + len(extra)
    ifd_offset += ifd_offset % 2
    overflow = b""
    overflow_base = ifd_offset + 2 + 12 * len(entries) + 4
    fields = []
    for tag, kind, values in sorted(entries):
        values = list(values)
        payload = struct.pack(end + codes[kind] * len(values), *values)
        if len(payload) <= 4:
            fields.append(struct.pack(end + "HHI", tag, kind, len(values)) + payload + bytes(4 - len(payload)))
        else:
            fields.append(struct.pack(end + "HHII", tag, kind, len(values), overflow_base + len(overflow)))
            overflow += payload + bytes(len(payload) % 2)
    header = (b"II*\x00" if little else b"MM\x00*") + struct.pack(end + "I", ifd_offset)
    body = header + image_data + extra
    body += bytes(ifd_offset - len(body))
    return body + struct.pack(end + "H", len(entries)) + b"".join(fields) + struct.pack(end + "I", 0) + overflow


def tiff_raw(width, height, samples: bytes, bits, spp, photometric, little=True, extra_samples=None,
             planar=1, rows_per_strip=None, colormap=None, tile=None):
    rows_per_strip = rows_per_strip or height
    entries = [(256, 4, [width]), (257, 4, [height]), (258, 3, [bits] * spp), (259, 3, [1]), (262, 3, [photometric]),
               (277, 3, [spp]), (284, 3, [planar])]
    if extra_samples is not None:
        entries.append((338, 3, extra_samples))
    if colormap is not None:
        entries.append((320, 3, colormap))
    if tile is None:
        row_bytes = (width * (1 if planar == 2 else spp) * bits + 7) // 8
        strip_bytes = row_bytes * rows_per_strip
        planes = spp if planar == 2 else 1
        offsets, counts = [], []
        plane_bytes = len(samples) // planes
        for p in range(planes):
            for start in range(0, height, rows_per_strip):
                rows = min(rows_per_strip, height - start)
                offsets.append(8 + p * plane_bytes + start * row_bytes)
                counts.append(rows * row_bytes)
        entries += [(273, 4, offsets), (278, 4, [rows_per_strip]), (279, 4, counts)]
        return tiff_ifd(entries, little, samples)
    tile_w, tile_h, tiles = tile
    offsets, counts, blob = [], [], b""
    for t in tiles:
        offsets.append(8 + len(blob))
        counts.append(len(t))
        blob += t
    entries += [(322, 3, [tile_w]), (323, 3, [tile_h]), (324, 4, offsets), (325, 4, counts)]
    return tiff_ifd(entries, little, blob)


def tiff_cases() -> Dict[str, bytes]:
    cases = {}
    photo = Image.fromarray(gradient(14, 18))
    rgba = Image.fromarray(np.dstack([gradient(14, 18), noise(14, 18, 1, seed=3)]), "RGBA")
    images = {"rgb": photo, "rgba": rgba, "l": photo.convert("L"), "la": photo.convert("LA"), "1": photo.convert("1"),
              "p": photo.convert("P", palette=Image.ADAPTIVE, colors=30), "cmyk": photo.convert("CMYK"),
              "i16": Image.fromarray(noise(14, 18, 1, seed=4, high=700).astype(np.uint16))}
    for name, image in images.items():
        for compression in ("raw", "tiff_lzw", "tiff_adobe_deflate", "packbits"):
            cases[f"tiff/pil-{name}-{compression}"] = pil_bytes(image, "TIFF", compression=compression)
    cases["tiff/pil-i32"] = pil_bytes(Image.fromarray(noise(6, 7, 1, seed=5, high=256).astype(np.int32) * 3 - 200,
                                                      "I"), "TIFF")
    cases["tiff/pil-f"] = pil_bytes(Image.fromarray((noise(6, 7, 1, seed=6).astype(np.float32) * 1.7) - 100.5,
                                                    "F"), "TIFF")
    cases["tiff/pil-rgb-lzw-predictor"] = pil_bytes(photo, "TIFF", compression="tiff_lzw", tiffinfo={317: 2})
    cases["tiff/pil-rgb-jpeg"] = pil_bytes(photo, "TIFF", compression="jpeg")
    cases["tiff/pil-multipage"] = pil_bytes(photo, "TIFF", save_all=True, append_images=[photo.convert("L")])
    w, h = 5, 4
    grey = noise(h, w, 1, seed=11)
    cases["tiff/min-is-white-8bit"] = tiff_raw(w, h, grey.tobytes(), 8, 1, 0)
    for bits in (2, 4):
        packed = b"".join(_pack_row(row, bits) for row in noise(h, w, 1, seed=bits, high=1 << bits))
        cases[f"tiff/grey-{bits}bit"] = tiff_raw(w, h, packed, bits, 1, 1)
        cases[f"tiff/min-is-white-{bits}bit"] = tiff_raw(w, h, packed, bits, 1, 0)
        colormap = [int(v) * 257 for v in noise(3 * (1 << bits), 1, 1, seed=bits + 20).reshape(-1)]
        cases[f"tiff/palette-{bits}bit"] = tiff_raw(w, h, packed, bits, 1, 3, colormap=colormap)
    rgb = noise(h, w, 3, seed=12)
    cases["tiff/rgb-big-endian"] = tiff_raw(w, h, rgb.tobytes(), 8, 3, 2, little=False)
    cases["tiff/rgb-planar"] = tiff_raw(w, h, rgb.transpose(2, 0, 1).tobytes(), 8, 3, 2, planar=2)
    cases["tiff/rgb-strips"] = tiff_raw(w, h, rgb.tobytes(), 8, 3, 2, rows_per_strip=1)
    rgba4 = noise(h, w, 4, seed=13)
    cases["tiff/rgba-associated"] = tiff_raw(w, h, rgba4.tobytes(), 8, 4, 2, extra_samples=[1])
    cases["tiff/rgba-unassociated"] = tiff_raw(w, h, rgba4.tobytes(), 8, 4, 2, extra_samples=[2])
    cases["tiff/rgbx"] = tiff_raw(w, h, rgba4.tobytes(), 8, 4, 2, extra_samples=[0])
    cases["tiff/rgba-no-extrasamples"] = tiff_raw(w, h, rgba4.tobytes(), 8, 4, 2)
    rgb16 = np.random.default_rng(14).integers(0, 65536, (h, w, 3), dtype=np.int64)
    cases["tiff/rgb-16bit"] = tiff_raw(w, h, rgb16.astype("<u2").tobytes(), 16, 3, 2)
    cases["tiff/rgb-16bit-big-endian"] = tiff_raw(w, h, rgb16.astype(">u2").tobytes(), 16, 3, 2, little=False)
    cases["tiff/grey-16bit-big-endian"] = tiff_raw(w, h, (rgb16[..., 0] // 100).astype(">u2").tobytes(), 16, 1, 1,
                                                   little=False)
    tile_data = noise(16, 16, 3, seed=15).tobytes()
    cases["tiff/tiled"] = tiff_raw(20, 10, b"", 8, 3, 2, tile=(16, 16, [tile_data, noise(16, 16, 3, seed=16).tobytes()]))
    cases["tiff/float"] = tiff_ifd([(256, 4, [2]), (257, 4, [1]), (258, 3, [32]), (259, 3, [1]), (262, 3, [1]),
                                    (273, 4, [8]), (277, 3, [1]), (278, 4, [1]), (279, 4, [8]), (339, 3, [3])], True,
                                   struct.pack("<ff", 0.25, 0.75))
    return cases


def jpeg_cases() -> Dict[str, bytes]:
    cases = {}
    photo = Image.fromarray(gradient(32, 40))
    base = pil_bytes(photo, "JPEG", quality=90)
    cases["jpeg/baseline"] = base
    cases["jpeg/progressive"] = pil_bytes(photo, "JPEG", quality=80, progressive=True)
    cases["jpeg/grey"] = pil_bytes(photo.convert("L"), "JPEG")
    cases["jpeg/cmyk"] = pil_bytes(photo.convert("CMYK"), "JPEG")
    # Data after the end-of-image marker (defect 1): a trailer holding FF DA, a second JPEG (as in an MPO).
    cases["jpeg/trailer-with-ffda"] = base + b"\x00\x00\x00\x18ftypmp42" + b"\xff\xda\x00\x08" * 8 + bytes(64)
    cases["jpeg/trailer-second-jpeg"] = base + pil_bytes(Image.fromarray(noise(8, 8, 3)), "JPEG")
    cases["jpeg/trailer-garbage"] = base + b"\xff\xd8\xff\xda" + bytes(range(256))
    cases["jpeg/pil-mpo"] = pil_bytes(photo, "MPO", save_all=True, append_images=[Image.fromarray(noise(32, 40, 3))])
    thumb = pil_bytes(Image.fromarray(noise(8, 8, 3, seed=2)), "JPEG")
    exif = b"Exif\x00\x00" + b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00" + thumb  # a thumbnail inside APP1
    cases["jpeg/app1-with-thumbnail"] = base[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + base[2:]
    cases["jpeg/junk-before-marker"] = base[:2] + b"\x00\x01" + base[2:]
    cases["jpeg/12bit-header"] = base.replace(b"\xff\xc0\x00\x11\x08", b"\xff\xc0\x00\x11\x0c", 1)
    return cases


def other_cases() -> Dict[str, bytes]:
    """Formats PIL refuses that stb_image read (defect 8), and ones neither reads."""
    return {
        "other/radiance-hdr": b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 2 +X 2\n" + bytes([128, 64, 32, 128]) * 4,
        "other/softimage-pic": (b"\x53\x80\xf6\x34" + bytes(84) + b"PICT" + struct.pack(">HHffHH", 2, 2, 1.0, 0, 0, 0) +
                                bytes([0, 8, 2, 0xE0]) + bytes(32)),
        "other/heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(32),
        "other/avif": b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(32),
        "other/text": b"just some text, not an image",
        "other/empty-ish": b"\x00",
    }


def cases() -> Dict[str, bytes]:
    everything = {}
    for builder in (png_cases, bmp_cases, gif_cases, tga_cases, pnm_cases, psd_cases, webp_cases, tiff_cases,
                    jpeg_cases, other_cases):
        everything.update(builder())
    return everything


def cut_points(size: int) -> List[int]:
    points = {10, 20, 40, size // 4, size // 2, (3 * size) // 4, size - 13, size - 5, size - 2, size - 1}
    return sorted(p for p in points if 0 < p < size)


def truncations(valid: Dict[str, bytes]) -> Dict[str, bytes]:
    out = {}
    for name, data in valid.items():
        if name.startswith("other/"):
            continue
        for cut in cut_points(len(data)):
            out[f"{name}@{cut}"] = data[:cut]
    return out
