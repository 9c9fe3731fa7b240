"""perception_retrieval: image-to-image instance retrieval with PE-Core.

    import perception_retrieval as pr
    encoder = pr.Encoder("pe_core_l14_336.pt", threads=pr.usable_cpu_count())
    retriever = pr.Retriever(1024)

A guest in its user's process: importing the package changes no environment
variable and no process-wide setting, and loads nothing heavy. The compiled core
(and torch, which it links) loads on first use of Encoder, Retriever, image or
metrics, torch always before the core so both share one LibTorch.
"""

import importlib as _importlib

from . import errors

try:
    from ._build_info import VERSION as __version__
except ImportError as _error:  # pragma: no cover - only in an unbuilt source tree
    raise ImportError("perception_retrieval is not built: install it from the source tree with "
                      "pip install --no-build-isolation .") from _error
from .errors import (CancelledError, CorruptFileError, Error, FileNotFoundError, InvalidArgumentError, IoError,
                     UnsupportedFormatError, VersionMismatchError)

# Names resolved on first access (PEP 562), each from the module that defines it.
_ATTRIBUTES = {
    "Encoder": "encoder",
    "EncodeResult": "encoder",
    "Retriever": "_native",
    "usable_cpu_count": "_native",
    "cpu_features": "_native",
}
_SUBMODULES = {"cache", "checkpoints", "cli", "compare", "datasets", "distributed", "encoder", "evaluation", "export",
               "html_report", "image", "metrics", "pe_core", "process", "safetensors", "stats", "synthetic"}

__all__ = ["__version__", "Encoder", "EncodeResult", "Retriever", "usable_cpu_count", "cpu_features", "errors",
           "Error", "InvalidArgumentError", "FileNotFoundError", "IoError", "CorruptFileError",
           "UnsupportedFormatError", "VersionMismatchError", "CancelledError", *sorted(_SUBMODULES)]


def __getattr__(name):
    if name in _ATTRIBUTES:
        value = getattr(_importlib.import_module("." + _ATTRIBUTES[name], __name__), name)
    elif name in _SUBMODULES:
        value = _importlib.import_module("." + name, __name__)
    else:
        raise AttributeError(f"module 'perception_retrieval' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
