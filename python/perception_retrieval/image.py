"""Image decoding and PE-Core preprocessing (C++ core, numpy in and out).

Reproduces the pipeline the model was trained and benchmarked with,
``Image.open(f).convert("RGB").resize((S, S), BILINEAR)`` then
``(x / 255 - mean) / std``: JPEG (through libjpeg-turbo, PIL's own decoder, with
PIL's settings), PNG, BMP, GIF, TGA and PNM decode to PIL's pixels, and the
resize is byte-identical to PIL's. Unsupported formats (WebP, TIFF, HEIC, AVIF)
raise an error naming the file and the format; so do truncated or corrupt JPEGs,
which PIL would sometimes pad with grey. The GIL is released while working.
"""

from __future__ import annotations

import os
from typing import Sequence, Union

import numpy as np

from ._native import _core

DEFAULT_MAX_PIXELS = _core.image.DEFAULT_MAX_PIXELS
PE_MEAN = (0.5, 0.5, 0.5)
PE_STD = (0.5, 0.5, 0.5)

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]


def decode(source: Source, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decodes a file path or encoded bytes to an H x W x 3 uint8 RGB array, as
    PIL's convert("RGB") would. Raises RuntimeError naming the input for a
    missing, empty, truncated, corrupt or unsupported file, or one with more
    than max_pixels pixels (PIL's decompression-bomb limit by default)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _core.image.decode_memory(source, "<bytes>", max_pixels)
    if isinstance(source, (str, os.PathLike)):
        return _core.image.decode_file(os.fspath(source), max_pixels)
    raise TypeError(f"decode() takes a path or encoded bytes as source, got {type(source).__name__}")


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
