"""Differential test of perception_retrieval.image.decode against PIL.

Every file is generated in the test (tests/python/image_cases.py: PIL's own
writers, and hand-built headers for what PIL cannot write): every BMP variant,
PNM plain and raw at several maxvals, TGA origins and RLE, GIF transparency,
interlace and local palettes, PNG bit depths x colour types x tRNS x
interlace, WebP lossy/lossless/alpha/animated, TIFF layouts and compressions,
PSD modes, JPEGs with trailers; and each of them cut at several points. For
each input the two decoders must agree: the same pixels, or both refusing it.
The cases where they do not are listed in KNOWN_DIFFERENCES with the reason
(and in docs/formats.md); the summary of the run is printed at the end of the
pytest session.
"""

from __future__ import annotations

import collections
import io
import re
import warnings

import numpy as np
import pytest
from PIL import Image

import perception_retrieval as pr
from perception_retrieval import image

import image_cases

CASES = image_cases.cases()

# (case-name pattern, which side refuses, reason). "ours": we refuse what PIL
# decodes; "pil": PIL refuses what we decode.
KNOWN_DIFFERENCES = [
    (r"^psd/lab$", "ours",
     "PIL converts Lab to RGB with LittleCMS colour management; this library does not reproduce it and refuses Lab"),
    (r"^tiff/[^@]+@\d+$", "ours",
     "a TIFF cut inside its image directory or the data of its tags: PIL warns (\"Truncated File Read\") and "
     "decodes with the tags it could read; libtiff, and so this library, refuse the truncated file"),
]

SUMMARY = collections.defaultdict(collections.Counter)  # format -> outcome -> count


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


def known_difference(name: str, refuser: str):
    for pattern, side, reason in KNOWN_DIFFERENCES:
        if side == refuser and re.search(pattern, name):
            return reason
    return None


def compare(name: str, data: bytes) -> str:
    """The outcome for one input: identical, both refuse, or a listed known difference."""
    expected, ours = pil_decode(data), our_decode(data)
    if isinstance(expected, np.ndarray) and isinstance(ours, np.ndarray):
        assert ours.shape == expected.shape, f"{name}: shape {ours.shape}, PIL {expected.shape}"
        differs = np.argwhere((ours != expected).any(axis=-1))
        assert len(differs) == 0, (f"{name}: {len(differs)} pixels differ from PIL's, first at (y, x) = "
                                   f"{tuple(differs[0])}: ours {ours[tuple(differs[0])]}, PIL "
                                   f"{expected[tuple(differs[0])]}")
        return "identical to PIL"
    if isinstance(expected, Exception) and isinstance(ours, Exception):
        assert str(ours).startswith("<bytes>: "), f"{name}: the message does not start with the input's name: {ours}"
        return "both refuse"
    refuser = "ours" if isinstance(ours, Exception) else "pil"
    reason = known_difference(name, refuser)
    what = f"we refuse ({ours})" if refuser == "ours" else f"PIL refuses ({type(expected).__name__}: {expected})"
    assert reason is not None, f"{name}: {what} while the other side decodes it"
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


def summary_lines():
    lines = []
    totals = collections.Counter()
    for fmt in sorted(SUMMARY):
        counts = SUMMARY[fmt]
        totals.update(counts)
        lines.append(f"  {fmt:18} " + ", ".join(f"{counts[k]} {k}" for k in sorted(counts)))
    lines.append("  total              " + ", ".join(f"{totals[k]} {k}" for k in sorted(totals)))
    return lines
