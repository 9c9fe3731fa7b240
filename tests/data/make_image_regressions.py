#!/usr/bin/env python3
"""Writes tests/data/image_regressions/: one small input per defect of issue 12
("Real-world images: decode what PIL decodes, exactly as PIL does"), built
with tests/python/image_cases.py, and its README (one line a file: the defect,
and what PIL does with the file). The C++ tests (tests/cpp/test_image_formats.cpp)
and the Python tests (tests/python/test_image_regressions.py) replay them.
Rerun after changing the cases: python3 tests/data/make_image_regressions.py"""

import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import image_cases as c  # noqa: E402

OUT = os.path.join(HERE, "image_regressions")


def regressions():
    cases = c.cases()
    pal300 = [tuple(int(v) for v in p) for p in c.noise(300, 1, 3, seed=2).reshape(-1, 3)]
    idx8 = c.noise(6, 7, 1, seed=3)
    px16 = c.np.random.default_rng(4).integers(0, 65536, (5, 6), dtype=c.np.int64).astype(c.np.uint16)
    # A PNG header declaring 10000 x 10000 (100 megapixels, a camera's size) and no pixel data.
    ihdr = struct.pack(">IIBBBBB", 10000, 10000, 8, 2, 0, 0, 0)
    big_header = b"\x89PNG\r\n\x1a\n" + c.png_chunk(b"IHDR", ihdr)
    return [
        ("jpeg_trailer_with_ffda.jpg", cases["jpeg/trailer-with-ffda"],
         "1. JPEG followed by a trailer holding the bytes FF DA (Motion Photo style): was refused as truncated; "
         "PIL reads it"),
        ("bmp_top_down.bmp", cases["bmp/24bit-topdown"],
         "2. top-down BMP (negative height): was refused as a decompression bomb; PIL reads it"),
        ("bmp_os2_v1.bmp", cases["bmp/os2-8bit"],
         "2. OS/2 v1 BMP (12-byte header, 3-byte palette entries): was refused as a decompression bomb; PIL reads it"),
        ("bmp_rle8.bmp", cases["bmp/rle8"], "2. RLE8 BMP: was refused with a generic message; PIL reads it"),
        ("bmp_rle4.bmp", cases["bmp/rle4"],
         "2. RLE4 BMP: was refused with a generic message; PIL reads it (Pillow 9.4 misreads its odd-length "
         "absolute runs)"),
        ("bmp_extra_palette_entries.bmp", c.bmp(8, 7, 6, c.bmp_rows(idx8, 8), pal300, colors=256),
         "2. 8-bit BMP declaring 256 colours with 300 palette entries before its pixels: was refused "
         "(\"Corrupt BMP\"); PIL reads the first 256"),
        ("bmp_pixel_data_gap.bmp", cases["bmp/8bit-gap-before-pixels"],
         "2. BMP whose pixel data starts 37 bytes after its palette: was refused; PIL reads it"),
        ("bmp_planes_0.bmp", cases["bmp/planes-0"],
         "2. BMP with planes = 0 (PIL never reads the field): was refused with a generic message; PIL reads it"),
        ("bmp_rgb555.bmp", c.bmp(16, 6, 5, c.bmp_rows(px16, 16)),
         "2. 16-bit 5-5-5 BMP: 5-bit channels were off by one; PIL expands them as v * 255 / 31"),
        ("bmp_rgb565.bmp", c.bmp(16, 6, 5, c.bmp_rows(px16, 16), compression=3, masks=(0xF800, 0x7E0, 0x1F, 0)),
         "2. 16-bit 5-6-5 bit-field BMP: 5- and 6-bit channels were off by one; PIL expands them as "
         "v * 255 / 31 and v * 255 / 63"),
        ("bmp_indices_past_palette.bmp", cases["bmp/8bit-5-colors-indices-past"],
         "2. 8-bit BMP with 5 palette entries and indices up to 255: read uninitialised memory (pixels changed from "
         "run to run); Pillow 13 reads them black (Pillow 9.4: the grey (i, i, i))"),
        ("gif_truncated.gif", cases["gif/basic"][:120],
         "3. GIF cut inside its image data: decoded with black rows; PIL raises (image file is truncated)"),
        ("bmp_truncated.bmp", cases["bmp/24bit"][:120],
         "3. BMP cut inside its pixel data: decoded with black rows; PIL raises"),
        ("tga_truncated.tga", cases["tga/24bit-bottom-left"][:60],
         "3. TGA cut inside its pixel data: decoded with black rows; PIL raises"),
        ("pnm_truncated.ppm", cases["pnm/p6-maxval255"][:40],
         "3. PPM cut inside its pixel data: decoded with black rows; PIL raises"),
        ("psd_truncated.psd", cases["psd/rgb-raw"][:100],
         "3. PSD cut inside its image data: decoded with black rows; PIL raises"),
        ("png_grey16_trns.png", cases["png/grey16-trns-clipped"],
         "4. 16-bit greyscale PNG with a tRNS chunk: kept the high byte; PIL clips to 255 (mode I)"),
        ("png_no_iend.png", cases["png/no-iend"],
         "4. PNG without its IEND chunk: was refused as \"unknown PNG chunk type\"; PIL reads it"),
        ("tga_right_to_left.tga", cases["tga/24bit-bottom-right"],
         "5. TGA with a right-to-left origin (descriptor bit 4): came out mirrored; PIL mirrors it back"),
        ("gif_transparent.gif", cases["gif/transparency"],
         "6. GIF with a transparent index: those pixels came out black; PIL gives that index's palette colour"),
        ("pbm_plain_p1.pbm", cases["pnm/p1"], "7. plain PBM (P1): was refused; PIL reads it"),
        ("pgm_plain_p2.pgm", cases["pnm/p2-maxval255"], "7. plain PGM (P2): was refused; PIL reads it"),
        ("ppm_plain_p3.ppm", cases["pnm/p3-maxval255"], "7. plain PPM (P3): was refused; PIL reads it"),
        ("pbm_raw_p4.pbm", cases["pnm/p4"], "7. raw PBM (P4): was refused; PIL reads it"),
        ("radiance.hdr", cases["other/radiance-hdr"],
         "8. Radiance HDR: was decoded (stb_image reads it); PIL cannot, so it is refused"),
        ("softimage.pic", cases["other/softimage-pic"],
         "8. Softimage PIC: was decoded (stb_image reads it); PIL cannot, so it is refused"),
        ("png_100_megapixels_header.png", big_header,
         "9. a PNG header of 10000 x 10000 pixels (a 100-megapixel photo) cut after it: was refused as a "
         "decompression bomb; PIL only warns there, so it is truncated, not a bomb"),
    ]


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = ["# Regression inputs of issue 12, one per defect (written by tests/data/make_image_regressions.py;",
             "# replayed by tests/cpp/test_image_formats.cpp and tests/python/test_image_regressions.py).", ""]
    for name, data, what in regressions():
        with open(os.path.join(OUT, name), "wb") as out:
            out.write(data)
        lines.append(f"- `{name}` ({len(data)} bytes): defect {what}.")
    with open(os.path.join(OUT, "README.md"), "w") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
