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
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import _native
from ._native import _core
from .image import DEFAULT_MAX_PIXELS, _integer

__all__ = ["Encoder", "EncodeResult", "DEFAULTS"]


def progress_bar(total: int, description: str = "encoding", stream=None):
    """A progress callback ``(done, total)`` drawing a bar on ``stream`` (stderr): tqdm's
    where tqdm is installed, else the package's own one-line bar. Has ``close()``."""
    stream = stream if stream is not None else sys.stderr
    try:
        from tqdm import tqdm
    except ImportError:
        return _ProgressBar(stream, description)
    return _TqdmProgress(tqdm(total=total, desc=description, unit="img", file=stream, dynamic_ncols=True))


class _TqdmProgress:
    def __init__(self, bar):
        self.bar = bar

    def __call__(self, done: int, total: int) -> None:
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        self.bar.close()


class _ProgressBar:
    """A one-line progress bar with rate and ETA (the fallback without tqdm)."""

    def __init__(self, stream=sys.stderr, description: str = "encoding"):
        self.stream = stream
        self.description = description
        self.started = time.perf_counter()

    def close(self) -> None:
        pass

    def __call__(self, done: int, total: int) -> None:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else float("inf")
        width = 30
        filled = int(width * done / max(total, 1))
        self.stream.write(f"\r{self.description} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                          f"{rate:.1f} img/s ETA {eta:.0f}s")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


class EncodeResult(NamedTuple):
    """What ``Encoder.encode(..., on_error="skip")`` returns; unpacks as a
    3-tuple too: ``embeddings, rows, failures = encoder.encode(..., on_error="skip")``."""

    embeddings: np.ndarray       #: K x D float32, the inputs that worked, in input order
    rows: np.ndarray             #: K int64: rows[i] is the input index of embeddings row i
    failures: List[Tuple[int, str]]  #: (input index, reason naming the input), in input order


# pe::EncoderOptions' defaults, defined once in C++ (include/pe/encoder.hpp).
DEFAULTS = _core.encoder_defaults() if _native.HAS_ENCODER else {
    "device": "cpu", "dtype": "float32", "batch_size": 16, "threads": 0, "decode_threads": 0, "normalize": True,
    "onednn": True, "tune_allocator": False, "fused_attention": True, "gemm": "auto",
    "max_pixels": DEFAULT_MAX_PIXELS}


class Encoder:
    """A PE-Core model from the export tool, with its preprocessing.

    model_path:     a TorchScript .pt file or an AOTInductor .pt2 package from
                    ``python -m perception_retrieval.export`` (the format is read from the file)
    device:         "cpu", "cuda" or "cuda:N"
    dtype:          "float32"; "float16" or "bfloat16" on CUDA (numpy and torch dtypes work too)
    batch_size:     images per forward pass
    threads:        LibTorch intra-op threads, set for the whole process when > 0; 0 (default)
                    leaves LibTorch's setting alone. Debian's torch starts with 1 thread: pass
                    ``perception_retrieval.usable_cpu_count()`` to use every CPU
    decode_threads: threads decoding and resizing images (0 = every usable CPU)
    normalize:      L2-normalise each embedding (default True)
    max_pixels:     PIL's MAX_IMAGE_PIXELS: larger images are logged, those over twice it refused
    onednn:         on CPU in float32, run the Linear layers through oneDNN (AVX-512 where the
                    BLAS has only AVX2; same fp32 math up to summation order)
    tune_allocator: let glibc keep freed memory for reuse (process-wide), which the oneDNN
                    path needs to be fast; off by default (include/pe/encoder.hpp)
    fused_attention: on CPU in float32, run the Encoder's own forward over the file's weights
                    with the fused RoPE attention kernel (``torch.ops.pe.rope_attention``);
                    files it does not recognise keep their TorchScript forward
                    (``forward_description`` says which runs; docs/encoder_speed.md)
    gemm:           the Linear layers' route on that forward: "auto" (timed at load for each of
                    a block's layers qkv, out_proj, fc1 and fc2, the fastest kept per layer),
                    "openblas", "strassen" (one level of Strassen-Winograd over the same BLAS:
                    7/8 of the multiplications, and weight-side sums as large as the weights
                    kept in memory), "onednn" or "onednn-packed" for every layer, or
                    layer=route pairs such as "qkv=strassen,fc2=onednn" (the rest timed)
    """

    def __init__(self, model_path, device: str = DEFAULTS["device"], batch_size: int = DEFAULTS["batch_size"],
                 threads: int = DEFAULTS["threads"], decode_threads: int = DEFAULTS["decode_threads"],
                 normalize: bool = DEFAULTS["normalize"], dtype="float32", max_pixels: int = DEFAULTS["max_pixels"],
                 onednn: bool = DEFAULTS["onednn"], tune_allocator: bool = DEFAULTS["tune_allocator"],
                 fused_attention: bool = DEFAULTS["fused_attention"], gemm: str = DEFAULTS["gemm"]):
        if not _native.HAS_ENCODER:
            raise ImportError("this perception_retrieval was built without the encoder (PE_BUILD_ENCODER=OFF); "
                              "install torch, then reinstall from the source tree: pip install "
                              "--no-build-isolation .")
        if not isinstance(model_path, (str, os.PathLike)):
            raise TypeError(f"model_path must be a path (str or os.PathLike) to a model from "
                            f"perception-retrieval-export, got {type(model_path).__name__}")
        self.model_path = os.fspath(model_path)
        self._encoder = _core.Encoder(self.model_path, device, dtype, _integer(batch_size, "batch_size"),
                                      _integer(threads, "threads"), _integer(decode_threads, "decode_threads"),
                                      bool(normalize), _integer(max_pixels, "max_pixels"), bool(onednn),
                                      bool(tune_allocator), bool(fused_attention), str(gemm))

    def encode(self, inputs: Sequence, on_error: str = "raise",
               progress: Optional[Callable[[int, int], None]] = None):
        """Embeds images, one row per input, in input order.

        on_error="raise": returns an N x D float32 array; the first input that
        cannot be read raises the perception_retrieval.Error subclass of its
        problem (FileNotFoundError, CorruptFileError, UnsupportedFormatError),
        naming it.
        on_error="skip": returns an EncodeResult(embeddings, rows, failures):
        embeddings of the inputs that worked, rows[i] = the input index of
        embeddings row i, and failures = [(input index, reason), ...].
        progress: called as progress(done, total) after each batch; by default a
        progress bar is drawn when stderr is a terminal (tqdm's where installed).
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
        bar = None
        if progress is None and sys.stderr.isatty() and len(inputs) > self._encoder.batch_size:
            progress = bar = progress_bar(len(inputs))
        try:
            result = self._encoder.encode(inputs, on_error, progress)
        finally:
            if bar is not None:
                bar.close()
        return EncodeResult(*result) if on_error == "skip" else result

    def preprocess(self, image) -> np.ndarray:
        """The 3 x S x S float32 model input for one image, exactly as encode()
        feeds the model: a file path, encoded image bytes, or H x W x 3 uint8 RGB
        pixels (every form encode() takes); errors as encode() raises them."""
        if isinstance(image, (str, os.PathLike)):
            return self._encoder.preprocess_file(os.fspath(image))
        if isinstance(image, (bytes, bytearray, memoryview)):
            return self._encoder.preprocess_encoded(image)
        return self._encoder.preprocess(image)  # pixels; it names what is wrong with anything else

    @property
    def metadata(self) -> dict:
        """The model file's own description (pe_metadata.json)."""
        import json

        return json.loads(self._encoder.metadata_json)

    @property
    def model_format(self) -> str:
        """ "torchscript" or "aoti" (a .pt2 AOTInductor package), read from the file itself."""
        return self._encoder.model_format

    @property
    def uses_onednn(self) -> bool:
        """Whether the forward runs its Linear layers through oneDNN (see ``onednn``)."""
        return self._encoder.uses_onednn

    @property
    def uses_fused_attention(self) -> bool:
        """Whether the Encoder's own forward with the fused attention kernel runs (see ``fused_attention``)."""
        return self._encoder.uses_fused_attention

    @property
    def gemm_route(self) -> str:
        """The Linear layers' route on the own forward: "openblas", "strassen", "onednn" or
        "onednn-packed" when every layer takes the same, else one per layer, e.g.
        "qkv=strassen,out_proj=openblas,fc1=openblas,fc2=onednn" (either form is a valid ``gemm``);
        "torchscript", "torchscript-onednn" or "aoti" otherwise."""
        return self._encoder.gemm_route

    @property
    def forward_description(self) -> str:
        """The forward in use: attention kernel, GEMM route and the rates measured at load, or
        why the file's TorchScript forward runs."""
        return self._encoder.forward_description

    @property
    def dtype(self) -> str:
        """The compute dtype, in the library's names: "float32", "float16" or "bfloat16"."""
        return self._encoder.dtype

    @property
    def image_size(self) -> int:
        return self._encoder.image_size

    @property
    def embedding_dim(self) -> int:
        return self._encoder.embedding_dim

    def __repr__(self) -> str:
        return (f"Encoder({self.model_path!r}, device={self._encoder.device!r}, image_size={self.image_size}, "
                f"embedding_dim={self.embedding_dim})")
