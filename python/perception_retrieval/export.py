"""Export a PE-Core vision tower to a self-describing model file for ``pe::Encoder``.

Command line (also installed as ``perception-retrieval-export``)::

    python -m perception_retrieval.export --checkpoint PE-Core-L14-336.pt --out pe_core_l14_336.pt
    python -m perception_retrieval.export --random-init --seed 0 --config test-tiny --out tiny.pt
    python -m perception_retrieval.export --checkpoint PE-Core-L14-336.pt --out pe_core_l14_336.pt2

Python: :func:`export` (same options as keyword arguments).

Two formats (``model_format``, ``--format``; by default chosen from the suffix:
``.pt2`` is AOTInductor, anything else TorchScript):

``torchscript``
    ``torch.jit.script`` + ``torch.jit.save``. Works on torch 1.13 and 2.x, runs on
    CPU and CUDA, accepts any image size. torch 2.x deprecates TorchScript (every
    ``torch.jit`` call warns ``FutureWarning: ... deprecated``); it still works on
    torch 2.15, and this module silences those warnings for its own calls.
``aoti``
    torch 2.x's route for C++ inference: ``torch.export`` (batch size dynamic, image
    size fixed to ``image_size``) compiled ahead of time by AOTInductor into a
    ``.pt2`` package of machine code. It is compiled here, with the system C++
    compiler, for this machine's CPU (its vector ISA is recorded in the package and
    ``pe::Encoder`` refuses a package built for an ISA the CPU lacks) and for the CPU
    device only. Needs torch >= 2.6 at export and in the LibTorch that loads it.

The exported module
-------------------
``forward(images)``: float32 ``[B, 3, H, W]`` RGB images resized to
``image_size`` x ``image_size`` (bilinear squash) and normalised as
``(pixel / 255 - mean) / std`` -> float32 ``[B, embedding_dim]``. By default the
embeddings are **L2-normalised** (unit length, so inner product = cosine, which
is what retrieval uses); ``--no-normalize`` exports the raw ``x @ proj`` output
of the official encoder instead. The choice is recorded as ``normalized``.
Any H and W that are multiples of ``patch_size`` are accepted (positional
embedding resized and RoPE recomputed), but the weights were trained at
``image_size``. The module does not mutate itself in ``forward``, so one loaded
module may serve concurrent calls.

Metadata
--------
The same JSON object travels with either format. In a ``.pt2`` package it is the
AOTInductor metadata entry ``pe_metadata.json`` (``AOTIModelPackageLoader::get_metadata()``
in C++, :func:`read_metadata` in Python). In a TorchScript file it is
stored as the extra file ``pe_metadata.json`` (read it in C++ with
``torch::jit::load(path, device, extra_files)`` where ``extra_files`` holds the key
``"pe_metadata.json"``; in Python with ``torch.jit.load(path, _extra_files=...)`` or,
without loading the weights, :func:`read_metadata`; in the zip archive it is the
entry ``<file stem>/extra/pe_metadata.json``).
A JSON object with exactly these keys:

=============================  ==============================================================
``format_version``             int, 1; bumped when a key changes meaning
``model_format``               str, ``"torchscript"`` or ``"aoti"`` (absent in files written
                               before the ``.pt2`` route: those are TorchScript)
``model_name``                 str, e.g. ``"PE-Core-L14-336"``
``image_size``                 int, square input side the model expects (336)
``patch_size``                 int (14); H and W must be multiples of it
``mean``, ``std``              [float, float, float] per RGB channel ([0.5]*3 each)
``resize``                     str, ``"bilinear_squash"``: resize to image_size x image_size
                               ignoring aspect ratio, bilinear as PIL does it (antialiased
                               when shrinking)
``channel_order``              str, ``"RGB"``
``input_layout``               str, ``"NCHW"`` float32
``embedding_dim``              int, output width (1024)
``normalized``                 bool, true when the outputs are L2-normalised
``quantization``               str, ``"none"`` or ``"dynamic_int8"``
``source_checkpoint_sha256``   str, SHA-256 of the checkpoint file, or
                               ``"random-init seed N"`` for a random-weight export
``source_checkpoint_layout``   str, ``official-clip``, ``bare``, ``timm``, ``open_clip-timm``
                               or ``random-init``
``torch_version``              str, torch that wrote the file
``perception_retrieval_version`` str, version of this package
=============================  ==============================================================
"""

import argparse
import contextlib
import copy
import json
import os
import sys
import shutil
import tempfile
import time
import warnings
import zipfile
from typing import Callable, Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import checkpoints, errors, pe_core

__all__ = ["export", "main", "ExportedEncoder", "METADATA_FILE", "FORMAT_VERSION", "MODEL_FORMATS",
           "read_metadata", "quantize_dynamic_int8", "has_aoti", "load_aoti"]

METADATA_FILE = "pe_metadata.json"
FORMAT_VERSION = 1
MODEL_FORMATS = ("torchscript", "aoti")
# Batch sizes a .pt2 package accepts (torch.export needs bounds for a dynamic dimension).
AOTI_MAX_BATCH = 4096


def has_aoti() -> bool:
    """Whether this torch can write AOTInductor packages (torch >= 2.6)."""
    try:
        import torch._inductor  # noqa: F401  (absent or partial on torch 1.13)
    except ImportError:
        return False
    return hasattr(torch._inductor, "aoti_compile_and_package") and hasattr(torch, "export")


def load_aoti(path):
    """A ``.pt2`` package from :func:`export`, loaded for Python (a callable)."""
    return torch._inductor.aoti_load_package(os.fspath(path))


@contextlib.contextmanager
def _quiet_torchscript():
    """torch 2.x warns on every torch.jit call that TorchScript is deprecated; the export
    says so once itself, so its own calls stay quiet. Nothing else is filtered."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        yield


@contextlib.contextmanager
def _aoti_build_settings():
    """Two fixes for AOTInductor's C++ build, for the duration of one compile.

    1. Link the torch being used. Inductor puts Python's LIBDIR (/usr/lib/x86_64-linux-gnu
       on Debian) before torch's own lib folder on the link line, so where Debian's
       libtorch-dev is installed, ``-ltorch`` finds LibTorch 1.13 and the package cannot
       be loaded (``undefined symbol: aoti_torch_dtype_float32``). An AOT package needs no
       libpython, so that folder is dropped.
    2. Choose the vector ISA from the CPU's flags (``cpp.vec_isa_ok``) instead of a
       dry-run compile whose cached result a build broken as in 1 poisons (it then
       compiles scalar kernels).
    """
    from torch._inductor import config as inductor_config
    from torch._inductor import cpp_builder

    original = getattr(cpp_builder, "_get_python_related_args", None)

    def without_python_libraries():
        include_dirs, _library_dirs = original()
        return include_dirs, []

    if original is not None:
        cpp_builder._get_python_related_args = without_python_libraries
    try:
        with inductor_config.patch({"cpp.vec_isa_ok": True}):
            yield
    finally:
        if original is not None:
            cpp_builder._get_python_related_args = original


class _ExportableEncoder(nn.Module):
    """What torch.export traces: the tower's functional path plus optional L2 normalisation."""

    def __init__(self, model: nn.Module, normalize: bool):
        super().__init__()
        self.model = model
        self.normalize = normalize

    def forward(self, images: Tensor) -> Tensor:
        embeddings = self.model(images)
        return F.normalize(embeddings, p=2.0, dim=1) if self.normalize else embeddings


def _resolve_format(model_format: Optional[str], out: str) -> str:
    if model_format is None:
        return "aoti" if out.endswith(".pt2") else "torchscript"
    if model_format not in MODEL_FORMATS:
        raise ValueError(f"model_format must be one of {', '.join(MODEL_FORMATS)} (or None: from the suffix), "
                         f"got {model_format!r}")
    return model_format


class ExportedEncoder(nn.Module):
    """The vision tower plus optional L2 normalisation: ``[B,3,H,W] -> [B,D]``."""

    normalize: torch.jit.Final[bool]

    def __init__(self, model: nn.Module, normalize: bool = True):
        super().__init__()
        self.model = model
        self.normalize = normalize

    def forward(self, images: Tensor) -> Tensor:
        if images.dtype != torch.float32:
            raise ValueError(
                "PE-Core encoder expects float32 images, got {}; convert with .float() after "
                "normalising with mean/std".format(images.dtype)
            )
        # Inference only: no_grad selects the model's in-place, workspace-based path even
        # when the caller (e.g. LibTorch, where grad mode is on by default) did not disable it.
        with torch.no_grad():
            embeddings = self.model(images)
            if self.normalize:
                embeddings = F.normalize(embeddings, p=2.0, dim=1)
        return embeddings


def _package_version() -> str:
    try:
        from . import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover - partial installs
        try:
            from importlib.metadata import version

            return version("perception_retrieval")
        except Exception:
            return "unknown"


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantisation of the ``nn.Linear`` layers (attention out_proj and
    the MLPs, 75% of the matmul work; the fused qkv projection stays float32).

    Weights are int8 per tensor, activations quantised per call. Needs a quantized
    engine (oneDNN or QNNPACK; Debian's torch has no FBGEMM); the one in use is
    recorded by torch inside the packed weights and re-packed at load.
    """
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if not engines:
        raise RuntimeError("this torch build has no quantized engine; export without --quantize")
    if torch.backends.quantized.engine not in engines:
        torch.backends.quantized.engine = "onednn" if "onednn" in engines else engines[0]
    model = copy.deepcopy(model)
    for module in model.modules():
        if hasattr(module, "float_linears"):  # the fast path may not read their .weight any more
            del module.float_linears
    return torch.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)


def read_metadata(path) -> Dict[str, object]:
    """The ``pe_metadata.json`` dict of an exported file, read from the archive without
    loading the module. Both formats are zip archives: a TorchScript file holds
    ``<name>/extra/pe_metadata.json``, a ``.pt2`` package AOTInductor's
    ``<name>/data/aotinductor/model/*wrapper_metadata.json`` with it as one entry."""
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            extra = [n for n in names if n.endswith("/extra/" + METADATA_FILE)]
            if extra:
                return json.loads(archive.read(extra[0]).decode("utf-8"))
            aoti = [n for n in names if "/data/aotinductor/" in n and n.endswith("wrapper_metadata.json")]
            if aoti:
                entries = json.loads(archive.read(aoti[0]).decode("utf-8"))
                if METADATA_FILE in entries:
                    return json.loads(entries[METADATA_FILE])
            raise errors.CorruptFileError(
                f"{path} has no {METADATA_FILE}; it was not written by perception_retrieval.export "
                "(re-export it with python -m perception_retrieval.export)"
            )
    except zipfile.BadZipFile:
        raise errors.CorruptFileError(f"{path} is not a model file from the export tool (not a zip archive)") from None


def _human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def export(
    out: Union[str, os.PathLike],
    checkpoint: Optional[Union[str, os.PathLike]] = None,
    *,
    config: Union[str, pe_core.PECoreConfig] = pe_core.DEFAULT_CONFIG,
    random_init: bool = False,
    seed: int = 0,
    normalize: bool = True,
    quantize: Optional[str] = None,
    image_size: Optional[int] = None,
    verify: bool = True,
    log: Optional[Callable[[str], None]] = print,
    model_format: Optional[str] = None,
) -> Dict[str, object]:
    """Write a PE-Core encoder to ``out``; returns its metadata dict.

    Give either ``checkpoint`` (a local file, see :func:`pe_core.load_checkpoint`) or
    ``random_init=True`` (weights from ``seed``, for tests and demos). ``quantize`` is
    ``None`` or ``"dynamic_int8"`` (TorchScript only). ``image_size`` overrides the size
    recorded in the metadata (a multiple of the patch size; default the config's).
    ``model_format`` is ``"torchscript"``, ``"aoti"`` (a ``.pt2`` AOTInductor package) or
    ``None``: ``aoti`` when ``out`` ends in ``.pt2``. With ``verify`` the written file is
    loaded back and must reproduce the eager output on one image.
    """
    say = log or (lambda _message: None)
    cfg = pe_core.get_config(config)
    out = os.fspath(out)
    model_format = _resolve_format(model_format, out)
    if (checkpoint is None) == (not random_init):
        raise ValueError("give exactly one of checkpoint=PATH or random_init=True")
    if quantize not in (None, "none", "dynamic_int8"):
        raise ValueError(f"quantize must be None or 'dynamic_int8', got {quantize!r}")
    quantize = None if quantize == "none" else quantize
    if model_format == "aoti":
        if not has_aoti():
            raise RuntimeError(f"torch {torch.__version__} cannot write AOTInductor (.pt2) packages (torch >= 2.6 "
                               "can); export TorchScript instead: --out model.pt")
        if quantize:
            raise ValueError("--quantize dynamic_int8 is for TorchScript files; export the .pt2 without it")
    size = int(image_size or cfg.image_size)
    if size <= 0 or size % cfg.patch_size != 0:
        raise ValueError(f"image_size must be a positive multiple of the patch size {cfg.patch_size}, got {size}")
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise FileNotFoundError(f"output directory {out_dir} does not exist; create it first")

    started = time.perf_counter()
    if random_init:
        say(f"[1/4] building {cfg.name} with random weights (seed {seed})")
        model = pe_core.build(cfg, seed=seed)
        source_hash, layout = f"random-init seed {seed}", "random-init"
    else:
        checkpoint = os.fspath(checkpoint)
        say(f"[1/4] reading {checkpoint} ({_human_size(os.path.getsize(checkpoint))})")
        state, layout = checkpoints.read_vision_state_dict(checkpoint)
        model = pe_core.PECoreVision(cfg)
        checkpoints.load_strict(model, state, checkpoint)
        del state
        model.eval()
        say(f"      layout {layout}; hashing the file")
        source_hash = checkpoints.file_sha256(checkpoint)
    say(f"      {sum(p.numel() for p in model.parameters()):,} parameters")

    wrapper = ExportedEncoder(model, normalize=normalize).eval()
    if quantize == "dynamic_int8":
        say("[2/4] quantizing Linear layers to dynamic int8")
        wrapper = quantize_dynamic_int8(wrapper)
    if model_format == "torchscript":
        say("[2/4] scripting (torch.jit.script)")
        if hasattr(torch, "export"):
            say(f"      note: torch {torch.__version__} deprecates TorchScript; --out FILE.pt2 writes an "
                "AOTInductor package instead")
        with _quiet_torchscript():
            scripted = torch.jit.script(wrapper)

    metadata = {
        "format_version": FORMAT_VERSION,
        "model_format": model_format,
        "model_name": cfg.name,
        "image_size": size,
        "patch_size": cfg.patch_size,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "resize": "bilinear_squash",
        "channel_order": "RGB",
        "input_layout": "NCHW",
        "embedding_dim": cfg.output_dim,
        "normalized": bool(normalize),
        "quantization": quantize or "none",
        "source_checkpoint_sha256": source_hash,
        "source_checkpoint_layout": layout,
        "torch_version": torch.__version__,
        "perception_retrieval_version": _package_version(),
    }
    say(f"[3/4] writing {out}")
    # Write next to the target and rename, so a failed export leaves no half file. The file
    # keeps its final name inside the temporary folder: TorchScript names the archive's
    # top-level folder after it.
    staging = tempfile.mkdtemp(prefix=".pe-export-", dir=out_dir)
    partial = os.path.join(staging, os.path.basename(out))
    try:
        if model_format == "torchscript":
            with _quiet_torchscript():
                torch.jit.save(scripted, partial, _extra_files={METADATA_FILE: json.dumps(metadata, indent=2)})
        else:
            _write_aoti(model, normalize, size, partial, metadata, say)
        if verify:
            say("[4/4] verifying: reloading the file and comparing one forward with eager")
            if model_format == "torchscript":
                with _quiet_torchscript():
                    reloaded = torch.jit.load(partial, map_location="cpu")
            else:
                reloaded = load_aoti(partial)
            probe = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1234))
            with torch.no_grad():
                expected = wrapper(probe)
                got = reloaded(probe)
            difference = (expected - got).abs().max().item()
            if not torch.isfinite(got).all() or difference > 1e-4 * max(1.0, expected.abs().max().item()):
                raise RuntimeError(f"exported module disagrees with the eager model (max abs diff {difference:.3g})")
            say(f"      max abs diff eager vs reloaded: {difference:.2e}")
        else:
            say("[4/4] verification skipped")
        os.replace(partial, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size_bytes = os.path.getsize(out)
    say(f"wrote {os.path.abspath(out)} ({_human_size(size_bytes)}, {size_bytes} bytes) "
        f"in {time.perf_counter() - started:.1f} s")
    return metadata


def _write_aoti(model: nn.Module, normalize: bool, size: int, path: str, metadata: Dict[str, object],
                say: Callable[[str], None]) -> None:
    """torch.export with a dynamic batch, then AOTInductor into the package ``path``."""
    exportable = copy.copy(model)  # the caller's module keeps its own forward path
    exportable.exportable = True
    wrapper = _ExportableEncoder(exportable, normalize).eval()
    example = torch.zeros(2, 3, size, size)  # 2, not 1: torch.export specialises size-1 dimensions
    batch = torch.export.Dim("batch", min=1, max=AOTI_MAX_BATCH)
    say(f"[2/4] torch.export (batch 1..{AOTI_MAX_BATCH}, {size} x {size} px)")
    started = time.perf_counter()
    with torch.no_grad():
        program = torch.export.export(wrapper, (example,), dynamic_shapes={"images": {0: batch}})
    say(f"      traced in {time.perf_counter() - started:.1f} s; compiling with AOTInductor for this CPU "
        "(minutes for L14)")
    started = time.perf_counter()
    with _aoti_build_settings():
        torch._inductor.aoti_compile_and_package(
            program, package_path=path,
            # freezing: the weights become constants that Inductor folds and prepacks for
            # oneDNN; measured on B16-224 (batch 8, 2 cores): 1.58x the unfrozen package.
            inductor_configs={"freezing": True,
                              "aot_inductor.metadata": {METADATA_FILE: json.dumps(metadata, indent=2)}})
    say(f"      compiled in {time.perf_counter() - started:.1f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="perception-retrieval-export",
        description="Export PE-Core to a model file (with metadata) that pe::Encoder loads: TorchScript (.pt) or "
                    "an AOTInductor package (.pt2, torch >= 2.6).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="PATH",
                        help="local checkpoint: official PE-Core-*.pt, bare vision state_dict, or timm/open_clip")
    source.add_argument("--random-init", action="store_true", help="random weights (tests and demos)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-init (default 0)")
    parser.add_argument("--config", default=pe_core.DEFAULT_CONFIG,
                        help=f"model config (default {pe_core.DEFAULT_CONFIG}; one of: {', '.join(pe_core.CONFIGS)})")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="output file: FILE.pt2 writes an AOTInductor package, anything else TorchScript")
    parser.add_argument("--format", dest="model_format", choices=MODEL_FORMATS, default=None,
                        help="torchscript or aoti (default: from the --out suffix)")
    parser.add_argument("--no-normalize", dest="normalize", action="store_false",
                        help="output raw embeddings instead of L2-normalised ones")
    parser.add_argument("--quantize", choices=["none", "dynamic_int8"], default="none",
                        help="dynamic int8 quantisation of the Linear layers (default none)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="input size recorded in the metadata (default: the config's)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip reloading the file and comparing one forward")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads (default: all cores)")
    args = parser.parse_args(argv)
    if args.seed != 0 and not args.random_init:
        parser.error("--seed only applies with --random-init")

    torch.set_num_threads(max(1, args.threads))
    try:
        export(args.out, args.checkpoint, config=args.config, random_init=args.random_init, seed=args.seed,
               normalize=args.normalize, quantize=args.quantize, image_size=args.image_size,
               verify=args.verify, log=lambda message: print(message, flush=True), model_format=args.model_format)
    except (checkpoints.CheckpointError, FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"perception-retrieval-export: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
