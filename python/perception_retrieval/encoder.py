"""PE-Core embeddings from images: perception_retrieval.Encoder (C++ pe::Encoder).

    encoder = Encoder("pe_core_l14_336.pt")          # made by python -m perception_retrieval.export
    embeddings = encoder.encode(["a.jpg", "b.png"])  # N x D float32, L2-normalised rows

Inputs may mix file paths, encoded image bytes and H x W x 3 uint8 RGB arrays.
Decoding and resizing run on a thread pool ahead of the model's forward pass;
the GIL is released while working and Ctrl-C stops a long batch.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import _core
from .image import DEFAULT_MAX_PIXELS


class _ProgressBar:
    """A one-line progress bar with rate and ETA, drawn only on a terminal."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.started = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else float("inf")
        width = 30
        filled = int(width * done / max(total, 1))
        self.stream.write(f"\rencoding [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                          f"{rate:.1f} img/s ETA {eta:.0f}s")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


class Encoder:
    """A TorchScript PE-Core model from the export tool, with its preprocessing.

    model_path:     a .pt file from ``python -m perception_retrieval.export``
    device:         "cpu", "cuda" or "cuda:N"; dtype: "fp32" ("fp16"/"bf16" on CUDA)
    batch_size:     images per forward pass
    threads:        LibTorch intra-op threads for the whole process (0 = all cores)
    decode_threads: threads decoding and resizing images (0 = all cores)
    normalize:      L2-normalise each embedding (default True)
    max_pixels:     images with more pixels are rejected (PIL's bomb limit by default)
    onednn:         on CPU in fp32, run the Linear layers through oneDNN (AVX-512 where the
                    BLAS has only AVX2; same fp32 math up to summation order). It also makes
                    glibc keep freed memory for reuse, process-wide (include/pe/encoder.hpp)
    """

    def __init__(self, model_path, device: str = "cpu", batch_size: int = 16, threads: int = 0,
                 decode_threads: int = 0, normalize: bool = True, dtype: str = "fp32",
                 max_pixels: int = DEFAULT_MAX_PIXELS, onednn: bool = True):
        self.model_path = os.fspath(model_path)
        self._encoder = _core.Encoder(self.model_path, device, dtype, int(batch_size), int(threads),
                                      int(decode_threads), bool(normalize), int(max_pixels), bool(onednn))

    def encode(self, inputs: Sequence, on_error: str = "raise",
               progress: Optional[Callable[[int, int], None]] = None):
        """Embeds images, one row per input, in input order.

        on_error="raise": returns an N x D float32 array; the first input that
        cannot be read raises RuntimeError naming it.
        on_error="skip": returns (embeddings, rows, failures): embeddings of the
        inputs that worked, rows[i] = the input index of embeddings row i, and
        failures = [(input index, reason), ...].
        progress: called as progress(done, total) after each batch; by default a
        progress bar is drawn when stderr is a terminal.
        """
        # Sets and dicts are refused too: their order is not the caller's, so
        # embedding rows could not be matched back to inputs.
        if isinstance(inputs, (str, bytes, bytearray, memoryview, os.PathLike, set, frozenset, dict)) or (
                isinstance(inputs, np.ndarray) and inputs.ndim != 4) or not hasattr(inputs, "__iter__"):
            raise TypeError("inputs must be a list of images (paths, bytes or H x W x 3 uint8 arrays) or an "
                            "N x H x W x 3 uint8 array; wrap a single path, bytes or image in a list "
                            f"(got {type(inputs).__name__})")
        if progress is not None and not callable(progress):
            raise TypeError("progress must be None or callable as progress(done, total), "
                            f"got {type(progress).__name__}")
        inputs = list(inputs)
        if progress is None and sys.stderr.isatty() and len(inputs) > self._encoder.batch_size:
            progress = _ProgressBar()
        return self._encoder.encode(inputs, on_error, progress)

    def preprocess(self, pixels: np.ndarray) -> np.ndarray:
        """The 3 x S x S float32 model input for H x W x 3 uint8 RGB pixels,
        exactly as encode() feeds the model."""
        return self._encoder.preprocess(pixels)

    @property
    def metadata(self) -> dict:
        """The model file's own description (pe_metadata.json)."""
        import json

        return json.loads(self._encoder.metadata_json)

    @property
    def uses_onednn(self) -> bool:
        """Whether the forward runs its Linear layers through oneDNN (see ``onednn``)."""
        return self._encoder.uses_onednn

    @property
    def image_size(self) -> int:
        return self._encoder.image_size

    @property
    def embedding_dim(self) -> int:
        return self._encoder.embedding_dim

    def __repr__(self) -> str:
        return (f"Encoder({self.model_path!r}, device={self._encoder.device!r}, image_size={self.image_size}, "
                f"embedding_dim={self.embedding_dim})")
