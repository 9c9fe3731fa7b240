"""Image decoding and PE-Core preprocessing (C++ core, numpy in and out).

Reproduces the pipeline the model was trained and benchmarked with,
``Image.open(f).convert("RGB").resize((S, S), BILINEAR)`` then
``(x / 255 - mean) / std``: JPEG and WebP through libjpeg-turbo and libwebp
(the libraries PIL calls, with PIL's settings), PNG, TIFF, BMP, GIF, TGA, PNM
and PSD following PIL's own readers, decode to PIL's pixels (docs/formats.md
lists per format what is read and every known difference), and the resize is
byte-identical to PIL's. Formats this library does not read (HEIC, AVIF,
JPEG XL, ...) raise UnsupportedFormatError naming the file and the format;
truncated or corrupt files raise CorruptFileError, as PIL raises for them. The
GIL is released while working.

Decompression bombs follow PIL's rule: an image of more than ``max_pixels``
pixels (PIL's MAX_IMAGE_PIXELS, 89,478,485 by default) decodes with a warning
logged, one of more than twice that is refused. To refuse above N pixels pass
``max_pixels=N // 2``; to silence the warning alone, set PE_LOG_LEVEL=error.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ._native import _core

DEFAULT_MAX_PIXELS = _core.image.DEFAULT_MAX_PIXELS
PE_MEAN = (0.5, 0.5, 0.5)
PE_STD = (0.5, 0.5, 0.5)

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]


def decode(source: Source, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decodes a file path or encoded bytes to an H x W x 3 uint8 RGB array, as
    PIL's convert("RGB") would. Raises FileNotFoundError / IoError for files that
    cannot be read, CorruptFileError naming the input for an empty, truncated or
    corrupt file or one of more than 2 x max_pixels pixels (PIL's
    decompression-bomb rule; above max_pixels a warning is logged), and
    UnsupportedFormatError for formats it does not read."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _core.image.decode_memory(source, "<bytes>", max_pixels)
    if isinstance(source, (str, os.PathLike)):
        return _core.image.decode_file(os.fspath(source), max_pixels)
    raise TypeError(f"decode() takes a path or encoded bytes as source, got {type(source).__name__}")


def sniff(source: Source) -> Optional[str]:
    """The format an encoded image's first bytes name ("JPEG", "PNG", "WebP",
    "GIF", "BMP", "DIB", "TIFF", "TGA", "PNM", "PSD"; or the name of a known format
    this library does not read, such as "HEIC/HEIF"), or None. Reads at most
    the first 32 bytes of a file; says nothing of whether the rest is intact."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = source
    elif isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            data = file.read(32)
    else:
        raise TypeError(f"sniff() takes a path or encoded bytes as source, got {type(source).__name__}")
    return _core.image.sniff_format(data) or None


def is_supported(format: str) -> bool:
    """Whether decode() reads the format named `format` (as sniff() names it)."""
    return _core.image.is_supported_format(format)


def info(source: Source) -> Tuple[str, int, int]:
    """(format, width, height) from the header, without decoding pixels: the
    size PIL's Image.open gives. Raises UnsupportedFormatError for formats (and
    variants, e.g. a 12-bit JPEG) decode() does not read, CorruptFileError for
    a header that is damaged or cut short, FileNotFoundError / IoError for
    files. Reads a file's first 64 KiB (all of it only when its header goes on)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _core.image.read_info(source, "<bytes>")
    if isinstance(source, (str, os.PathLike)):
        return _core.image.read_info_file(os.fspath(source))
    raise TypeError(f"info() takes a path or encoded bytes as source, got {type(source).__name__}")


def _integer(value, argument: str) -> int:
    # int(1.7) would silently resize to 1 pixel; the range is checked in C++.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{argument} must be an integer, got {value!r} ({type(value).__name__})")
    return int(value)


def _per_channel(values, argument: str) -> list:
    try:
        numbers = [float(value) for value in values]
    except (TypeError, ValueError):
        raise TypeError(f"{argument} must be 3 numbers (one per RGB channel), got {values!r}") from None
    if len(numbers) != 3:
        raise ValueError(f"{argument} must have 3 values (one per RGB channel), got {len(numbers)}: {values!r}")
    return numbers


def _pixels(pixels) -> np.ndarray:
    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        raise TypeError(f"pixels must be uint8 RGB, got dtype {array.dtype}; "
                        "scale to 0..255 and convert with .astype(np.uint8)")
    return array


def resize_bilinear(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """H x W x 3 uint8 -> height x width x 3 uint8, byte-identical to PIL's
    Image.resize((width, height), Image.BILINEAR) (squash, antialiased when shrinking)."""
    return _core.image.resize_bilinear(_pixels(pixels), _integer(width, "width"), _integer(height, "height"))


def preprocess(pixels: np.ndarray, size: int = 336, mean: Sequence[float] = PE_MEAN,
               std: Sequence[float] = PE_STD) -> np.ndarray:
    """H x W x 3 uint8 RGB -> the 3 x size x size float32 model input:
    squash-resize (PIL bilinear), then (v / 255 - mean) / std per channel."""
    return _core.image.preprocess(_pixels(pixels), _integer(size, "size"), _per_channel(mean, "mean"),
                                  _per_channel(std, "std"))
