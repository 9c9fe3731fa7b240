"""perception_retrieval: image-to-image instance retrieval with PE-Core.

The compiled core (``_core``) is imported after torch, so both share one
LibTorch and one OpenMP runtime, and it must have been built against the torch
that is installed now; a mismatch is reported with the fix instead of a crash.
"""

import torch  # noqa: F401  (must precede _core; see above)

try:
    from . import _core
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "perception_retrieval's compiled module _core could not be loaded "
        f"({error}). Build it from the source tree with: "
        "pip install --no-build-isolation ."
    ) from error

if _core.__torch_version__ != torch.__version__:  # pragma: no cover - depends on the install
    raise ImportError(
        f"perception_retrieval was built against torch {_core.__torch_version__}, "
        f"but torch {torch.__version__} is installed ({torch.__file__}). Rebuild it "
        "against this torch: pip install --no-build-isolation --force-reinstall ."
    )

__version__ = _core.__version__

from . import metrics  # noqa: E402

__all__ = ["__version__", "metrics"]
