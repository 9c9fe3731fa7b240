"""Reading PE-Core checkpoints from local files into the official vision layout.

Accepted files (format found from the file's first bytes, not its name):

* torch pickles (``torch.save``, zip or legacy), loaded with ``weights_only=True``
  where the installed torch has it (1.13+), always onto the CPU;
* safetensors, read by the ``safetensors`` package where it is installed (the PyPI
  stack) and otherwise by the package's own reader, :mod:`perception_retrieval.safetensors`
  (the Debian stack has no safetensors package). Both give the same tensors.

Accepted layouts (found from the keys):

* ``official-clip``: the official ``PE-Core-*.pt`` CLIP checkpoint; image keys
  under ``visual.`` (text keys, which are unprefixed and collide with image names,
  are dropped);
* ``bare``: a vision state_dict with the official names (``conv1.weight``, ...);
* ``timm``: timm's ``vit_pe_core_*`` names (``patch_embed.proj.weight``,
  ``blocks.N.attn.qkv.weight``, ...), also as open_clip stores them under
  ``visual.trunk.``; mapped back to the official names (``attn_pool.q`` and
  ``attn_pool.kv`` are concatenated into ``in_proj_*``, ``proj = head.weight.T``,
  ``head.bias`` must be zero).

Any of them may be wrapped in a top-level ``state_dict``, ``weights`` or ``model``
entry and carry a ``module.`` prefix. The conversions are exact (reshape, concat,
transpose), so the same weights in any layout give bit-identical embeddings.

Problems raise :class:`CheckpointError` (a ``RuntimeError``) naming the file and
what to do; strict loading lists missing keys, unexpected image keys and shape
mismatches.
"""

import hashlib
import inspect
import os
import pickle
import re
from typing import Dict, List, Mapping, Tuple

import torch

from . import safetensors

__all__ = [
    "CheckpointError",
    "read_checkpoint_file",
    "read_vision_state_dict",
    "timm_to_official",
    "official_to_timm",
    "load_strict",
    "file_sha256",
]

_WRAPPER_KEYS = ("state_dict", "weights", "model")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read or does not fit the model."""


def _supports_weights_only() -> bool:
    try:
        return "weights_only" in inspect.signature(torch.load).parameters
    except (TypeError, ValueError):  # pragma: no cover - exotic torch builds
        return False


# Decided once: torch 1.13 added torch.load(weights_only=...).
_WEIGHTS_ONLY = _supports_weights_only()


def _sniff(path: str) -> str:
    """'torch', 'safetensors', or raise CheckpointError for anything else."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    if os.path.isdir(path):
        raise CheckpointError(
            f"{path} is a directory; pass the weights file inside it "
            "(e.g. PE-Core-L14-336.pt, model.safetensors or open_clip_pytorch_model.bin)"
        )
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); the download or copy did not complete")
    with open(path, "rb") as handle:
        prefix = handle.read(64)
    if prefix.startswith(b"PK\x03\x04") or prefix[:1] == b"\x80":
        return "torch"
    if safetensors.looks_like_safetensors(prefix, size):
        return "safetensors"
    stripped = prefix.lstrip()
    if stripped[:1] in (b"{", b"["):
        raise CheckpointError(
            f"{path} is a JSON file (a config or metadata file?), not a checkpoint; pass the weights "
            "file: the official PE-Core-L14-336.pt, a timm model.safetensors or an open_clip .bin"
        )
    raise CheckpointError(
        f"{path} is not a checkpoint this loader knows (first bytes {prefix[:16]!r}); expected a torch "
        "file (.pt/.pth/.bin written by torch.save) or a .safetensors file"
    )


def _safetensors_library():
    """safetensors.torch, or None where the package is not installed."""
    try:
        import safetensors.torch as library
    except ImportError:
        return None
    return library


def read_checkpoint_file(path) -> object:
    """The object stored in a checkpoint file (a dict of tensors, possibly wrapped)."""
    path = os.fspath(path)
    kind = _sniff(path)
    if kind == "safetensors":
        library = _safetensors_library()
        if library is None:
            try:
                return safetensors.load_file(path)
            except safetensors.SafetensorsError as error:
                raise CheckpointError(str(error)) from None
        try:
            return library.load_file(path, device="cpu")
        except Exception as error:  # safetensors_rust.SafetensorError, not importable by name
            raise CheckpointError(
                f"could not read {path} as safetensors ({error}); the file is truncated or corrupt: "
                "download it again"
            ) from None
    kwargs = {"map_location": "cpu"}
    if _WEIGHTS_ONLY:
        kwargs["weights_only"] = True
    try:
        return torch.load(path, **kwargs)
    except pickle.UnpicklingError as error:
        if "weights" in str(error).lower() and "only" in str(error).lower():
            raise CheckpointError(
                f"{path} holds Python objects other than tensors, which torch.load(weights_only=True) "
                f"refuses ({error}). If you trust the file, re-save just its state_dict: "
                "torch.save(torch.load(path)['state_dict'], 'vision.pt')"
            ) from None
        raise CheckpointError(
            f"could not read {path} as a torch checkpoint ({error}); the file is truncated or corrupt: "
            "download it again"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"could not read {path} as a torch checkpoint ({type(error).__name__}: {error}); "
            "the file is truncated or corrupt: download it again"
        ) from None


def _unwrap(obj: object, path: str) -> Dict[str, torch.Tensor]:
    for _ in range(4):  # e.g. {"state_dict": {...}} or {"model": {"state_dict": {...}}}
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a state_dict (a dict of tensor names to tensors)"
        )
    tensors = {}
    others = []
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            name = str(key)
            tensors[name[len("module."):] if name.startswith("module.") else name] = value
        else:
            others.append(str(key))
    if not tensors:
        raise CheckpointError(
            f"{path} holds no tensors (top-level keys: {_listing(sorted(others))}); it is not a model checkpoint"
        )
    if others:
        raise CheckpointError(
            f"{path}: the state_dict mixes tensors with other entries ({_listing(sorted(others))}); "
            "pass a file whose state_dict holds only tensors"
        )
    return tensors


# timm name -> official name, applied to keys without the attn_pool q/kv split
_TIMM_RULES = [
    (r"^patch_embed\.proj\.weight$", "conv1.weight"),
    (r"^norm_pre\.(weight|bias)$", r"ln_pre.\1"),
    (r"^norm\.(weight|bias)$", r"ln_post.\1"),
    (r"^blocks\.(\d+)\.norm1\.(weight|bias)$", r"transformer.resblocks.\1.ln_1.\2"),
    (r"^blocks\.(\d+)\.norm2\.(weight|bias)$", r"transformer.resblocks.\1.ln_2.\2"),
    (r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", r"transformer.resblocks.\1.attn.in_proj_\2"),
    (r"^blocks\.(\d+)\.attn\.proj\.(weight|bias)$", r"transformer.resblocks.\1.attn.out_proj.\2"),
    (r"^blocks\.(\d+)\.mlp\.fc1\.(weight|bias)$", r"transformer.resblocks.\1.mlp.c_fc.\2"),
    (r"^blocks\.(\d+)\.mlp\.fc2\.(weight|bias)$", r"transformer.resblocks.\1.mlp.c_proj.\2"),
    (r"^attn_pool\.proj\.(weight|bias)$", r"attn_pool.attn.out_proj.\1"),
    (r"^attn_pool\.norm\.(weight|bias)$", r"attn_pool.layernorm.\1"),
    (r"^attn_pool\.mlp\.fc1\.(weight|bias)$", r"attn_pool.mlp.c_fc.\1"),
    (r"^attn_pool\.mlp\.fc2\.(weight|bias)$", r"attn_pool.mlp.c_proj.\1"),
]
_TIMM_COMPILED = [(re.compile(pattern), replacement) for pattern, replacement in _TIMM_RULES]


def timm_to_official(state: Mapping[str, torch.Tensor], path: str = "<state_dict>") -> Dict[str, torch.Tensor]:
    """Map a timm ``vit_pe_core_*`` state_dict to the official vision names.

    Keys that no rule knows are kept under their timm names, so that strict loading
    reports them as unexpected.
    """
    out: Dict[str, torch.Tensor] = {}
    pool_parts = {}
    for key, value in state.items():
        if key == "cls_token":
            out["class_embedding"] = value.reshape(-1)
        elif key == "pos_embed":
            out["positional_embedding"] = value.reshape(value.shape[-2], value.shape[-1]) if value.dim() == 3 else value
        elif key == "attn_pool.latent":
            out["attn_pool.probe"] = value
        elif key == "head.weight":
            out["proj"] = value.t().contiguous()
        elif key == "head.bias":
            if torch.count_nonzero(value).item() != 0:
                raise CheckpointError(
                    f"{path}: head.bias is not zero; PE-Core's projection has no bias, so this checkpoint "
                    "is not a PE-Core model (or was fine-tuned with a bias) and cannot be loaded exactly"
                )
        elif key in ("attn_pool.q.weight", "attn_pool.q.bias", "attn_pool.kv.weight", "attn_pool.kv.bias"):
            pool_parts[key] = value
        else:
            for pattern, replacement in _TIMM_COMPILED:
                if pattern.match(key):
                    out[pattern.sub(replacement, key)] = value
                    break
            else:
                out[key] = value
    for leaf in ("weight", "bias"):
        q, kv = pool_parts.get(f"attn_pool.q.{leaf}"), pool_parts.get(f"attn_pool.kv.{leaf}")
        if q is not None and kv is not None:
            out[f"attn_pool.attn.in_proj_{leaf}"] = torch.cat([q, kv], dim=0)
        elif q is not None or kv is not None:
            present = f"attn_pool.q.{leaf}" if q is not None else f"attn_pool.kv.{leaf}"
            absent = f"attn_pool.kv.{leaf}" if q is not None else f"attn_pool.q.{leaf}"
            raise CheckpointError(f"{path}: has {present} but not {absent}; the attention-pool weights are incomplete")
    return out


_TO_TIMM_RULES = [
    (r"^conv1\.weight$", "patch_embed.proj.weight"),
    (r"^ln_pre\.(weight|bias)$", r"norm_pre.\1"),
    (r"^ln_post\.(weight|bias)$", r"norm.\1"),
    (r"^transformer\.resblocks\.(\d+)\.ln_1\.(weight|bias)$", r"blocks.\1.norm1.\2"),
    (r"^transformer\.resblocks\.(\d+)\.ln_2\.(weight|bias)$", r"blocks.\1.norm2.\2"),
    (r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$", r"blocks.\1.attn.qkv.\2"),
    (r"^transformer\.resblocks\.(\d+)\.attn\.out_proj\.(weight|bias)$", r"blocks.\1.attn.proj.\2"),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_fc\.(weight|bias)$", r"blocks.\1.mlp.fc1.\2"),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_proj\.(weight|bias)$", r"blocks.\1.mlp.fc2.\2"),
    (r"^attn_pool\.attn\.out_proj\.(weight|bias)$", r"attn_pool.proj.\1"),
    (r"^attn_pool\.layernorm\.(weight|bias)$", r"attn_pool.norm.\1"),
    (r"^attn_pool\.mlp\.c_fc\.(weight|bias)$", r"attn_pool.mlp.fc1.\1"),
    (r"^attn_pool\.mlp\.c_proj\.(weight|bias)$", r"attn_pool.mlp.fc2.\1"),
]
_TO_TIMM_COMPILED = [(re.compile(pattern), replacement) for pattern, replacement in _TO_TIMM_RULES]


def official_to_timm(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official vision names -> timm ``vit_pe_core_*`` names, as timm's own converter
    writes them (the inverse of :func:`timm_to_official`; used for test fixtures)."""
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == "class_embedding":
            out["cls_token"] = value.reshape(1, 1, -1)
        elif key == "positional_embedding":
            out["pos_embed"] = value.unsqueeze(0)
        elif key == "proj":
            out["head.weight"] = value.t().contiguous()
            out["head.bias"] = torch.zeros(value.shape[1], dtype=value.dtype)
        elif key == "attn_pool.probe":
            out["attn_pool.latent"] = value
        elif key.startswith("attn_pool.attn.in_proj_"):
            leaf = key[len("attn_pool.attn.in_proj_"):]
            width = value.shape[0] // 3
            out[f"attn_pool.q.{leaf}"] = value[:width].clone()
            out[f"attn_pool.kv.{leaf}"] = value[width:].clone()
        else:
            for pattern, replacement in _TO_TIMM_COMPILED:
                if pattern.match(key):
                    out[pattern.sub(replacement, key)] = value
                    break
            else:
                out[key] = value
    return out


def _is_timm(keys) -> bool:
    return any(k == "patch_embed.proj.weight" or k.startswith(("blocks.", "attn_pool.latent", "norm_pre.")) for k in keys)


def read_vision_state_dict(path) -> Tuple[Dict[str, torch.Tensor], str]:
    """(vision state_dict with official names, layout name) from a checkpoint file.

    The layout is ``"official-clip"``, ``"bare"``, ``"timm"`` or ``"open_clip-timm"``.
    No key or shape checking happens here; see :func:`load_strict`.
    """
    path = os.fspath(path)
    state = _unwrap(read_checkpoint_file(path), path)
    layout = "bare"
    if any(k.startswith("visual.") for k in state):
        state = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
        layout = "official-clip"
    if any(k.startswith("trunk.") for k in state):
        state = {(k[len("trunk."):] if k.startswith("trunk.") else k): v for k, v in state.items()}
        layout = "open_clip-timm"
    if _is_timm(state):
        state = timm_to_official(state, path)
        if layout == "bare":
            layout = "timm"
    return state, layout


def _listing(keys: List[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _config_hint(state: Mapping[str, torch.Tensor]) -> str:
    from . import pe_core

    conv = state.get("conv1.weight")
    if conv is None or conv.dim() != 4:
        return ""
    width, patch = int(conv.shape[0]), int(conv.shape[-1])
    layers = len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")})
    matches = [c.name for c in pe_core.CONFIGS.values()
               if c.width == width and c.patch_size == patch and c.layers == layers]
    found = f" The checkpoint looks like width {width}, patch {patch}, {layers} layers"
    if matches:
        return found + f": try config={matches[0]!r}."
    return found + "; no named config matches it."


def load_strict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source="<state_dict>") -> None:
    """Copy ``state`` into ``model``; every model key must be present with its shape and
    no other key may be present, else :class:`CheckpointError` listing the offenders."""
    source = os.fspath(source) if not isinstance(source, str) else source
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: checkpoint {list(state[k].shape)} vs model {list(expected[k].shape)}"
        for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    not_float = sorted(k for k in expected if k in state and not state[k].is_floating_point())
    if missing or unexpected or mismatched or not_float:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected image key(s): {_listing(unexpected)}")
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatch(es): {_listing(mismatched, 8)}")
        if not_float:
            problems.append(f"non-floating tensors: {_listing(not_float)}")
        name = getattr(getattr(model, "config", None), "name", type(model).__name__)
        raise CheckpointError(
            f"{source} does not fit {name}: " + "; ".join(problems) + "." + _config_hint(state)
        )
    model.load_state_dict(dict(state), strict=True)


def file_sha256(path, chunk_bytes: int = 16 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with open(os.fspath(path), "rb") as handle:
        while True:
            block = handle.read(chunk_bytes)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()
