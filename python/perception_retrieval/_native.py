"""The compiled core (``_core``), loaded on first use.

When the core was built with the encoder it links LibTorch, so torch is
imported first: the extension then shares the LibTorch (and OpenMP runtime)
Python's torch already loaded, whichever of the two the user imported first.
The core must have been built against the torch installed now: a mismatch is
reported with the fix instead of a crash inside the extension.
"""

try:
    from . import _build_info
except ImportError as error:  # pragma: no cover - only in an unbuilt source tree
    raise ImportError(
        "perception_retrieval is not built: install it from the source tree with "
        "pip install --no-build-isolation ."
    ) from error

if _build_info.TORCH_VERSION:
    import torch

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

HAS_ENCODER = hasattr(_core, "Encoder")
Retriever = _core.Retriever
usable_cpu_count = _core.usable_cpu_count
cpu_features = _core.cpu_features
