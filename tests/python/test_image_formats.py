"""Differential test of perception_retrieval.image.decode against PIL.

Every file is generated in the test (tests/python/image_cases.py: PIL's own
writers, and hand-built headers for what PIL cannot write): every BMP variant,
PNM plain and raw at several maxvals, TGA origins and RLE, GIF transparency,
interlace and local palettes, PNG bit depths x colour types x tRNS x
interlace, WebP lossy/lossless/alpha/animated, TIFF layouts and compressions,
PSD modes, JPEGs with trailers; and each of them cut at several points. For
each input the two decoders must agree: the same pixels, or both refusing it.
The decoders follow Pillow 13.0; the cases where they do not, and where the
Pillow under test (Debian 12's is 9.4) itself differs from 13.0, are listed in
KNOWN_DIFFERENCES with the kind of difference, the reason and the Pillow
versions they apply to (and in docs/formats.md); a pixel difference is
checked too (only the listed pixels may differ). The summary of the run is
printed at the end of the pytest session.
"""

from __future__ import annotations

import collections
import io
import re
import warnings

import numpy as np
import pytest
import PIL
from PIL import Image

import perception_retrieval as pr
from perception_retrieval import image

import image_cases

CASES = image_cases.cases()

# The decoders follow Pillow 13.0 (docs/formats.md); this is the Pillow the test runs against.
PILLOW = tuple(int(part) for part in PIL.__version__.split(".")[:2])


def out_of_palette(name, data, ours, expected):
    """Pillow 9.4 reads a palette index past the palette's colours as grey (i, i, i), Pillow 13 (and so this
    library) as black: every pixel that differs must be one of those, and some must."""
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.mode == "P", f"{name}: PIL's mode is {opened.mode}, not P"
        indices = np.array(opened)
    differs = (ours != expected).any(axis=-1)
    assert differs.any(), f"{name}: listed as differing in its out-of-palette pixels, but identical"
    grey = np.repeat(indices[..., None], 3, axis=-1)
    assert (ours[differs] == 0).all(), f"{name}: a differing pixel is not black in ours"
    assert (expected[differs] == grey[differs]).all(), f"{name}: a differing pixel is not PIL's grey (i, i, i)"


def as_encoded(name, data, ours, expected):
    """Pillow 9.4's BMP RLE decoder misreads the file (odd RLE4 absolute runs, delta moves): ours must be the
    pixels the file encodes, which image_cases knows (and PIL's must differ from them)."""
    encoded = image_cases.ENCODED[name.split("@")[0]]  # a cut that still decodes lost only the end of the data
    assert np.array_equal(ours, encoded), f"{name}: ours is not the image the RLE data encodes"
    assert not np.array_equal(expected, encoded), f"{name}: PIL now reads it right; drop the known difference"


# (case-name pattern, kind, reason, Pillow versions it applies to (major.minor; None: every version),
# check). Kinds: "ours": we refuse what PIL decodes; "pil": PIL refuses what we decode; "pixels": both decode
# and some pixels differ, `check(name, data, ours, pil)` says which (it must pass).
KNOWN_DIFFERENCES = [
    (r"^psd/lab$", "ours",
     "PIL converts Lab to RGB with LittleCMS colour management; this library does not reproduce it and refuses Lab",
     None, None),
    (r"^tiff/[^@]+@\d+$", "ours",
     "a TIFF cut inside its image directory or the data of its tags: PIL warns (\"Truncated File Read\") and "
     "decodes with the tags it could read; libtiff, and so this library, refuse the truncated file",
     None, None),
    # Where Debian 12's Pillow 9.4 differs from Pillow 13.0, which the decoders follow.
    (r"^((bmp|dib)/\d+bit-\d+-colors-indices-past|gif/indices-past-palette|png/ct3-\d+bit[^@]*|"
     r"png/palette-without-plte|psd/indexed-no-table|tga/palette[^@]*)(@\d+)?$", "pixels",
     "palette indices past the palette's colours: Pillow 9.4 reads its grey ramp (i, i, i), Pillow 13 black",
     "9.4", out_of_palette),
    (r"^(bmp|dib)/(rle4|rle4-odd-absolute|rle8-delta)(@\d+)?$", "pixels",
     "BMP RLE: Pillow 9.4 reads an odd-length RLE4 absolute run one byte short (byte_count = count // 2), and "
     "does not stop a delta move or absolute run at the last pixel; Pillow 13 fixed both",
     "9.4", as_encoded),
    (r"^(bmp|dib)/rle8-delta@\d+$", "ours",
     "BMP RLE8 cut after a delta move: Pillow 9.4 moves by the two bytes after the move's own and so reads "
     "a different, complete image; Pillow 13 runs out of data (\"not enough image data\")",
     "9.4", None),
    (r"^(bmp|dib)/(header-52|header-56|32bit-masks-ff000000-ff00-ff-)", "pil",
     "BMP 52- and 56-byte info headers and the BGXR/BGAR bit-field layouts: read by Pillow 13, refused by 9.4",
     "9.4", None),
    (r"^psd/layer-(grey-alpha|with-mask)$", "pil",
     "PSD layers with masks or grey + alpha channels: Pillow 13 parses the layer records only when a layer is "
     "asked for; 9.4 parsed them on opening and refused these files",
     "9.4", None),
    (r"^tga/palette-32bit-map$", "pil",
     "TGA colour maps of 32-bit entries: read by Pillow 13, refused by 9.4 (\"unrecognized raw mode\")",
     "9.4", None),
    (r"^tga/(palette-no-map|palette-map-depth-15)(@\d+)?$", "ours",
     "a colour-mapped TGA without a colour map, or with one of 15-bit entries: Pillow 13 refuses it, 9.4 read "
     "the indices as grey levels (and the map of other depths as pixel data)",
     "9.4", None),
    (r"^pnm/p[23]-[^@]+@\d+$|^pnm/p[23]-negative", "ours",
     "plain PNM cut inside its samples: Pillow 13 refuses it (\"not enough image data\"); 9.4 kept stitching "
     "the token split at the cut onto every later block and so filled the image with copies of it; negative "
     "plain samples: Pillow 13 refuses them, 9.4 kept their low byte",
     "9.4", None),
    (r"^png/(chrm-short|iccp-method-1)(@\d+)?$", "ours",
     "PNG chunk checks: Pillow 13 refuses a cHRM shorter than 32 bytes and an iCCP whose compression method "
     "(the byte after its NUL) is not 0; 9.4 refused a cHRM only when its length was not a multiple of 4, and "
     "read the NUL itself as iCCP's method",
     "9.4", None),
]

SUMMARY = collections.defaultdict(collections.Counter)  # format -> outcome -> count
SEEN = collections.Counter()  # index into KNOWN_DIFFERENCES -> how many inputs it explained


def pil_decode(data: bytes):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as opened:
                return np.array(opened.convert("RGB"))
    except Exception as error:  # PIL raises many types for bad files
        return error


def our_decode(data: bytes):
    try:
        return image.decode(data)
    except (pr.CorruptFileError, pr.UnsupportedFormatError) as error:
        return error


def applies(versions) -> bool:
    return versions is None or PILLOW == tuple(int(part) for part in versions.split("."))


def known_difference(name: str, kind: str):
    """The first entry of KNOWN_DIFFERENCES for this input, kind and Pillow version: (index, entry)."""
    for index, (pattern, side, reason, versions, check) in enumerate(KNOWN_DIFFERENCES):
        if side == kind and applies(versions) and re.search(pattern, name):
            return index, (pattern, side, reason, versions, check)
    return None


def compare(name: str, data: bytes) -> str:
    """The outcome for one input: identical, both refuse, or a listed known difference."""
    expected, ours = pil_decode(data), our_decode(data)
    if isinstance(expected, np.ndarray) and isinstance(ours, np.ndarray):
        assert ours.shape == expected.shape, f"{name}: shape {ours.shape}, PIL {expected.shape}"
        differs = np.argwhere((ours != expected).any(axis=-1))
        if len(differs) == 0:
            return "identical to PIL"
        known = known_difference(name, "pixels")
        assert known is not None, (f"{name}: {len(differs)} pixels differ from PIL's, first at (y, x) = "
                                   f"{tuple(differs[0])}: ours {ours[tuple(differs[0])]}, PIL "
                                   f"{expected[tuple(differs[0])]}")
        known[1][4](name, data, ours, expected)
        SEEN[known[0]] += 1
        return "known difference"
    if isinstance(expected, Exception) and isinstance(ours, Exception):
        assert str(ours).startswith("<bytes>: "), f"{name}: the message does not start with the input's name: {ours}"
        return "both refuse"
    refuser = "ours" if isinstance(ours, Exception) else "pil"
    known = known_difference(name, refuser)
    what = f"we refuse ({ours})" if refuser == "ours" else f"PIL refuses ({type(expected).__name__}: {expected})"
    assert known is not None, f"{name}: {what} while the other side decodes it"
    SEEN[known[0]] += 1
    return "known difference"


def record(name: str, outcome: str) -> None:
    SUMMARY[name.split("/")[0] + (" (truncated)" if "@" in name else "")][outcome] += 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_decodes_as_pil_does(name):
    record(name, compare(name, CASES[name]))


@pytest.mark.parametrize("name", sorted(n for n in CASES if not n.startswith("other/")))
def test_truncated_as_pil_does(name):
    # Both must refuse a file cut short (or, where PIL reads what remains, give its pixels).
    data = CASES[name]
    for cut in image_cases.cut_points(len(data)):
        cut_name = f"{name}@{cut}"
        record(cut_name, compare(cut_name, data[:cut]))


def test_regression_cases_are_compared():
    # One case per defect of issue 12 (tests/data/image_regressions/ holds the same inputs as files).
    for name in ["jpeg/trailer-with-ffda", "bmp/1bit-topdown", "bmp/os2-8bit", "bmp/rle4", "bmp/rle8",
                 "bmp/16bit-565-bitfields", "bmp/8bit-5-colors-indices-past", "png/grey16-trns-clipped",
                 "png/no-iend", "tga/24bit-bottom-right", "gif/transparency", "pnm/p1", "pnm/p2-maxval255",
                 "pnm/p3-maxval255", "pnm/p4", "webp/lossy", "other/radiance-hdr", "other/softimage-pic"]:
        assert name in CASES, name


def test_every_known_difference_is_needed():
    # Run after the comparisons (pytest keeps the file's order): an entry for this Pillow that explained no
    # input is stale. Only meaningful when every comparison ran.
    compared = sum(sum(counts.values()) for counts in SUMMARY.values())
    expected = len(CASES) + sum(len(image_cases.cut_points(len(data))) for name, data in CASES.items()
                                if not name.startswith("other/"))
    if compared != expected:
        pytest.skip(f"{compared} of {expected} inputs were compared in this session")
    stale = [entry[0] for index, entry in enumerate(KNOWN_DIFFERENCES) if applies(entry[3]) and not SEEN[index]]
    assert not stale, f"known differences that no input shows with Pillow {PIL.__version__}: {stale}"


def summary_lines():
    lines = [f"  Pillow {PIL.__version__} (the decoders follow Pillow 13.0)"]
    totals = collections.Counter()
    for fmt in sorted(SUMMARY):
        counts = SUMMARY[fmt]
        totals.update(counts)
        lines.append(f"  {fmt:18} " + ", ".join(f"{counts[k]} {k}" for k in sorted(counts)))
    lines.append("  total              " + ", ".join(f"{totals[k]} {k}" for k in sorted(totals)))
    return lines
