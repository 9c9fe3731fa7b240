"""perception_retrieval: image-to-image instance retrieval with PE-Core.

torch is imported before the compiled core (``_core``), so both share one
LibTorch and one OpenMP runtime. The core must have been built against the
torch installed now: a mismatch is reported with the fix instead of a crash.
"""

import os

# LibTorch's OpenMP threads and OpenBLAS's threads take turns on the same cores;
# spinning idle threads steal them from each other (measured here: the L14
# forward reaches 58% of sgemm with libgomp's default, 74% with PASSIVE).
# libgomp reads this when torch loads, so it only helps when perception_retrieval
# is imported first; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402,F401  (must precede _core; see above)

try:
    from . import _build_info
except ImportError as error:  # pragma: no cover - only in an unbuilt source tree
    raise ImportError(
        "perception_retrieval is not built: install it from the source tree with "
        "pip install --no-build-isolation ."
    ) from error

if _build_info.TORCH_VERSION != torch.__version__:
    raise ImportError(
        f"perception_retrieval {_build_info.VERSION} was built against torch {_build_info.TORCH_VERSION}, "
        f"but torch {torch.__version__} is installed ({torch.__file__}). Rebuild it against "
        "this torch from the source tree: pip install --no-build-isolation --force-reinstall ."
    )

try:
    from . import _core
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        f"perception_retrieval's compiled module could not be loaded ({error}). "
        "Rebuild it from the source tree: pip install --no-build-isolation --force-reinstall ."
    ) from error

__version__ = _core.__version__

from . import errors, image, metrics  # noqa: E402
from ._core import Retriever  # noqa: E402
from .encoder import Encoder  # noqa: E402
from .errors import (CancelledError, CorruptFileError, Error, FileNotFoundError, InvalidArgumentError,  # noqa: E402
                     IoError, UnsupportedFormatError, VersionMismatchError)

__all__ = ["__version__", "Encoder", "Retriever", "image", "metrics", "errors", "Error", "InvalidArgumentError",
           "FileNotFoundError", "IoError", "CorruptFileError", "UnsupportedFormatError", "VersionMismatchError",
           "CancelledError"]
