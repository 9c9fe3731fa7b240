"""PE-Core vision tower (Meta's Perception Encoder) as a scriptable PyTorch module.

The module reproduces the image tower of the official ``core/vision_encoder/pe.py``
(facebookresearch/perception_models) from the facts in ``docs/model.md``:

* ``state_dict()`` has exactly the official keys and shapes (307 float32 tensors,
  317,151,232 parameters for ``PE-Core-L14-336``) and no buffers, so official
  weights load strictly (see :func:`load_checkpoint`).
* ``torch.jit.script`` works on torch 1.13 and 2.x (where it warns that TorchScript is
  deprecated); the scripted module accepts any image
  size that is a multiple of the patch size. With ``exportable = True`` forward takes
  the functional path on the whole batch, which ``torch.export`` traces with a dynamic
  batch (the ``.pt2`` route of ``perception_retrieval.export``).
* Where torch has ``F.scaled_dot_product_attention`` (2.1+, :data:`HAS_SDPA`) the
  functional path attends through it, and so does the inference path on CUDA; on the
  CPU the inference path keeps its in-place bmm/softmax (as fast here, see
  ``RopeSelfAttention.add_into``). Same arithmetic up to summation order. For a grid other than the training
  grid the patch rows of the absolute positional embedding are resized
  (bilinear, ``align_corners=False``, no antialias; the CLS row is kept) and the
  2-D RoPE angles are recomputed for the new grid, as the official code does.
* ``forward(images)`` takes float32 ``[B, 3, H, W]`` images already normalised
  with the config's mean/std and returns **unnormalised** ``[B, output_dim]``
  embeddings (``x @ proj``), like the official encoder. L2-normalise for
  retrieval (the exported TorchScript file does, see ``perception_retrieval.export``).

Forward pass: ``conv1`` patchify -> prepend CLS -> add positional embedding ->
``ln_pre`` -> pre-norm blocks (``x += attn(ln_1(x))``, ``x += mlp(ln_2(x))``, RoPE
on q and k of every head) -> ``ln_post`` -> attention pooling (one learned probe,
``pool_heads`` heads, then ``x + mlp(layernorm(x))``) -> ``x @ proj``.

Performance notes (CPU, see docs/model.md "Performance facts"):
the 1/sqrt(head_dim) attention scale is folded into the RoPE tables of q; q, k
and v are used as strided views of the fused qkv projection (no head copies);
the RoPE tables are computed once per call and shared by all layers. On the
2-core reference VM a fresh tensor above glibc's 32 MiB mmap ceiling costs about
3 ms per MiB in page faults (a 33 MiB tensor: ~100 ms), more than the attention
matmuls themselves, so:

* a batch runs in micro-batches and attention in head groups such that no
  temporary exceeds ``work_elements`` floats (30 MiB; CPU only);
* without autograd (``torch.no_grad()`` / inference mode, and always in the
  exported encoder) the blocks take the in-place path (``add_into``): qkv, RoPE
  output, scores, MLP hidden activations live in one workspace allocated per
  call, softmax and GELU run in place, and the residual stream is updated with
  ``addmm_``. With autograd on, the plain functional path runs (same arithmetic).

oneDNN linears (``onednn_linears``, off by default): on the inference path the
blocks' Linear layers can run through oneDNN (``torch._C._nn.mkldnn_linear``)
instead of the BLAS behind ``addmm``. On the reference VM Debian's OpenBLAS runs
its AVX2 (Haswell) kernels while oneDNN uses AVX-512: one L14 block at 3 images
took 0.34 s instead of 0.52 s. oneDNN allocates a fresh output per call (no
``out=``), and fresh large buffers cost page faults unless the allocator keeps
freed memory, so the switch pays only together with that allocator setting:
``pe::Encoder`` turns both on (see include/pe/encoder.hpp). The eager model keeps
BLAS: it is the reference pipeline that benchmarks compare against.

Thread safety: ``forward`` does not mutate the module (its workspace is per call);
concurrent calls on one module are safe. ``load_state_dict`` and other mutation need exclusive access.
"""

# No "from __future__ import annotations": TorchScript reads the Final[...] class annotations.

import dataclasses
import math
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "PECoreConfig",
    "CONFIGS",
    "available_configs",
    "get_config",
    "build",
    "load_checkpoint",
    "PECoreVision",
    "rope_frequencies",
    "rope_angles",
    "resize_positional_embedding",
    "HAS_SDPA",
]

DEFAULT_CONFIG = "PE-Core-L14-336"

# Floats per temporary tensor on CPU (30 MiB): below glibc's 32 MiB dynamic mmap
# ceiling, so freed work memory is reused instead of being unmapped and faulted
# in again on the next call (measured on the reference VM: a fresh 33 MiB tensor
# costs ~100 ms of page faults, a reused one nothing).
DEFAULT_WORK_ELEMENTS = 30 * 1024 * 1024 // 4


def _has_sdpa_with_scale() -> bool:
    """torch >= 2.1: ``F.scaled_dot_product_attention`` with its ``scale`` argument (the
    1/sqrt(head_dim) scale is already folded into q's RoPE table, so SDPA must not apply
    its own). torch 1.13 has neither; its modules keep the explicit bmm/softmax/bmm."""
    if not hasattr(F, "scaled_dot_product_attention"):
        return False
    try:
        major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    except ValueError:  # pragma: no cover - unusual version strings
        return False
    return (major, minor) >= (2, 1)


HAS_SDPA = _has_sdpa_with_scale()


@dataclasses.dataclass(frozen=True)
class PECoreConfig:
    """Hyper-parameters of a PE-Core vision tower.

    ``image_size`` is the training resolution (square); it fixes the number of
    rows of ``positional_embedding`` (``(image_size // patch_size) ** 2`` plus one
    for the CLS token) and is the size the exported encoder asks images to be
    resized to. ``pool_type`` is ``"attn"`` (attention pooling, the PE-Core head),
    ``"tok"`` (CLS token) or ``"avg"`` (mean of all tokens).
    """

    name: str
    image_size: int
    patch_size: int
    width: int
    layers: int
    heads: int
    mlp_width: int
    output_dim: int
    pool_type: str = "attn"
    pool_heads: int = 8
    pool_mlp_width: Optional[int] = None  # None: 4 * width (official mlp_ratio 4)
    use_cls_token: bool = True
    rope_theta: float = 10000.0
    layer_norm_eps: float = 1e-5
    mean: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: Tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        problems = []
        if self.image_size % self.patch_size != 0:
            problems.append(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.width % self.heads != 0:
            problems.append(f"width {self.width} is not divisible by heads {self.heads}")
        elif (self.width // self.heads) % 4 != 0:
            problems.append(f"head dim {self.width // self.heads} is not a multiple of 4 (2-D RoPE needs x and y pairs)")
        if self.pool_type not in ("attn", "tok", "avg"):
            problems.append(f"pool_type {self.pool_type!r} is not one of 'attn', 'tok', 'avg'")
        if self.pool_type == "attn" and self.width % self.pool_heads != 0:
            problems.append(f"width {self.width} is not divisible by pool_heads {self.pool_heads}")
        if self.pool_type == "tok" and not self.use_cls_token:
            problems.append("pool_type 'tok' needs use_cls_token=True")
        for field in ("image_size", "patch_size", "width", "layers", "heads", "mlp_width", "output_dim"):
            if getattr(self, field) <= 0:
                problems.append(f"{field} must be positive, got {getattr(self, field)}")
        if problems:
            raise ValueError(f"invalid PE-Core config {self.name!r}: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def grid_size(self) -> int:
        """Patches per side at the training resolution."""
        return self.image_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        """Tokens at the training resolution (patches plus the CLS token if any)."""
        return self.grid_size ** 2 + int(self.use_cls_token)

    @property
    def resolved_pool_mlp_width(self) -> int:
        return self.pool_mlp_width if self.pool_mlp_width is not None else 4 * self.width

    def num_parameters(self) -> int:
        """Parameter count of the tower, computed from the shapes (no model built)."""
        d, p = self.width, self.patch_size
        count = d * 3 * p * p + self.num_tokens * d + d * self.output_dim + 4 * d
        count += d if self.use_cls_token else 0
        block = 3 * d * d + 3 * d + d * d + d + 4 * d + 2 * d * self.mlp_width + self.mlp_width + d
        count += self.layers * block
        if self.pool_type == "attn":
            m = self.resolved_pool_mlp_width
            count += d + 3 * d * d + 3 * d + d * d + d + 2 * d + 2 * d * m + m + d
        return count


# Numbers from the official core/vision_encoder/config.py (PE_VISION_CONFIG).
CONFIGS: Dict[str, PECoreConfig] = {
    c.name: c
    for c in (
        PECoreConfig("PE-Core-L14-336", image_size=336, patch_size=14, width=1024, layers=24,
                     heads=16, mlp_width=4096, output_dim=1024),
        PECoreConfig("PE-Core-B16-224", image_size=224, patch_size=16, width=768, layers=12,
                     heads=12, mlp_width=3072, output_dim=1024),
        PECoreConfig("PE-Core-S16-384", image_size=384, patch_size=16, width=384, layers=12,
                     heads=6, mlp_width=1536, output_dim=512),
        PECoreConfig("PE-Core-T16-384", image_size=384, patch_size=16, width=192, layers=12,
                     heads=3, mlp_width=768, output_dim=512),
        PECoreConfig("PE-Core-G14-448", image_size=448, patch_size=14, width=1536, layers=50,
                     heads=16, mlp_width=8960, output_dim=1280, use_cls_token=False),
        # Tiny configs for tests and demos: same code paths, milliseconds per image.
        PECoreConfig("test-tiny", image_size=56, patch_size=14, width=64, layers=2,
                     heads=4, mlp_width=256, output_dim=32, pool_heads=8),
        PECoreConfig("test-tiny-nocls", image_size=48, patch_size=8, width=48, layers=2,
                     heads=2, mlp_width=96, output_dim=24, pool_heads=4, use_cls_token=False),
    )
}


def available_configs() -> List[str]:
    return list(CONFIGS)


def get_config(config: Union[str, PECoreConfig]) -> PECoreConfig:
    """A named config (see :data:`CONFIGS`) or the given :class:`PECoreConfig`."""
    if isinstance(config, PECoreConfig):
        return config
    if not isinstance(config, str):
        raise TypeError(f"config must be a config name or a PECoreConfig, got {type(config).__name__}")
    try:
        return CONFIGS[config]
    except KeyError:
        raise ValueError(
            f"unknown PE-Core config {config!r}; available: {', '.join(CONFIGS)}"
        ) from None


# --------------------------------------------------------------------------------------
# Pure helpers (scripted together with the module)


def rope_frequencies(head_dim: int, theta: float = 10000.0) -> Tensor:
    """The ``head_dim // 2`` RoPE frequencies of one axis, each repeated twice in place.

    ``f_j = theta ** (-2j / (head_dim / 2))`` for ``j = 0 .. head_dim // 4 - 1``, laid
    out ``f0, f0, f1, f1, ...`` (float32). For head_dim 64: 16 frequencies
    ``10000 ** (-2j / 32)``, 32 values.
    """
    axis_dim = head_dim // 2
    exponents = torch.arange(0, axis_dim, 2, dtype=torch.float32) / float(axis_dim)
    freqs = 1.0 / torch.pow(theta, exponents)
    return freqs.repeat_interleave(2)


def rope_angles(grid_h: int, grid_w: int, head_dim: int, cls_token: bool = True,
                theta: float = 10000.0) -> Tensor:
    """RoPE angles ``[tokens, head_dim]`` (float32) for a ``grid_h x grid_w`` patch grid.

    Token order is the model's: the CLS token first (all-zero angles: not rotated),
    then patches row-major. With a CLS token patch positions are 1-based
    (``x = col + 1``, ``y = row + 1``), without one 0-based. Per token the first
    ``head_dim // 2`` entries are ``x * freqs`` and the last ``y * freqs``
    (``freqs`` from :func:`rope_frequencies`).
    """
    freqs = rope_frequencies(head_dim, theta)
    offset = 1 if cls_token else 0
    ys = torch.arange(grid_h, dtype=torch.float32) + float(offset)
    xs = torch.arange(grid_w, dtype=torch.float32) + float(offset)
    x_angles = (xs[:, None] * freqs[None, :])[None, :, :].expand(grid_h, grid_w, freqs.numel())
    y_angles = (ys[:, None] * freqs[None, :])[:, None, :].expand(grid_h, grid_w, freqs.numel())
    angles = torch.cat([x_angles, y_angles], dim=-1).reshape(grid_h * grid_w, 2 * freqs.numel())
    if cls_token:
        angles = torch.cat([torch.zeros(1, angles.size(1), dtype=angles.dtype), angles], dim=0)
    return angles


def _rope_tables(grid_h: int, grid_w: int, head_dim: int, cls_token: bool, theta: float,
                 q_scale: float, device: torch.device) -> Tuple[Tensor, Tensor]:
    """cos and signed-sin tables ``[tokens, 2, 1, head_dim]`` for q (index 0) and k (1).

    Rotating adjacent pairs, ``out[2i] = t[2i] cos - t[2i+1] sin`` and
    ``out[2i+1] = t[2i+1] cos + t[2i] sin``, equals ``t * cos + swap(t) * ssin`` with
    ``swap`` exchanging the two members of each pair and ``ssin = (-sin, +sin, ...)``.
    The q half carries the attention scale, which saves a pass over the scores.
    """
    angles = rope_angles(grid_h, grid_w, head_dim, cls_token, theta)
    cos = angles.cos()
    sign = torch.tensor([-1.0, 1.0], dtype=torch.float32).repeat(head_dim // 2)
    sin = angles.sin() * sign
    scale = torch.tensor([q_scale, 1.0], dtype=torch.float32)[None, :, None, None]
    cos_qk = (cos[:, None, None, :] * scale).to(device)
    sin_qk = (sin[:, None, None, :] * scale).to(device)
    return cos_qk, sin_qk


def resize_positional_embedding(pos: Tensor, trained_grid: int, grid_h: int, grid_w: int,
                                cls_token: bool) -> Tensor:
    """Positional embedding ``[tokens, width]`` for a ``grid_h x grid_w`` grid.

    Only the patch rows are resized (bilinear, ``align_corners=False``, no antialias);
    the CLS row is kept as is. Returns ``pos`` itself for the training grid.
    """
    if grid_h == trained_grid and grid_w == trained_grid:
        return pos
    width = pos.size(1)
    patches = pos[1:] if cls_token else pos
    patches = patches.reshape(1, trained_grid, trained_grid, width).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=(grid_h, grid_w), mode="bilinear", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(grid_h * grid_w, width)
    if cls_token:
        return torch.cat([pos[:1], patches], dim=0)
    return patches


def _balanced_chunk(total: int, limit: int) -> int:
    """Chunk size <= limit that splits ``total`` into the fewest, most even chunks."""
    if total <= limit:
        return total
    chunks = (total + limit - 1) // limit
    return (total + chunks - 1) // chunks


# --------------------------------------------------------------------------------------
# Modules (attribute names are the official state_dict names)


class Mlp(nn.Module):
    """``c_proj(gelu(c_fc(x)))`` with exact (erf) GELU."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.c_proj = nn.Linear(hidden, width)
        # Marks float nn.Linear layers whose weights add_into may use directly; deleted when
        # the layers are replaced by quantized ones (TorchScript resolves hasattr statically).
        self.float_linears = True

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))

    def add_into(self, residual: Tensor, x: Tensor, hidden: Tensor, onednn: bool = False) -> None:
        """``residual += forward(x)`` for 2-D ``[T, width]`` tensors, with the hidden
        activations in the caller's ``hidden`` buffer (``[T, mlp_width]``), or in
        oneDNN's own buffers with ``onednn`` (see the module notes). No autograd."""
        if hasattr(self, "float_linears") and onednn:
            # The hidden activations stay in oneDNN's layout between the two layers (GELU included).
            hidden_onednn = F.gelu(torch._C._nn.mkldnn_linear(x.to_mkldnn(), self.c_fc.weight, self.c_fc.bias))
            residual.add_(torch._C._nn.mkldnn_linear(hidden_onednn, self.c_proj.weight, self.c_proj.bias).to_dense())
        elif hasattr(self, "float_linears"):
            torch.addmm(self.c_fc.bias, x, self.c_fc.weight.t(), out=hidden)
            torch._C._nn.gelu_(hidden)
            residual.addmm_(hidden, self.c_proj.weight.t())
            residual.add_(self.c_proj.bias)
        else:  # quantized layers
            residual.add_(self.c_proj(torch._C._nn.gelu_(self.c_fc(x))))


class RopeSelfAttention(nn.Module):
    """Multi-head self-attention with 2-D RoPE on q and k (official ``SelfAttention``)."""

    heads: torch.jit.Final[int]
    head_dim: torch.jit.Final[int]

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)
        self.float_linears = True  # see Mlp
        if HAS_SDPA:
            # Present only where torch has SDPA (TorchScript resolves hasattr statically, so
            # torch 1.13 never compiles the SDPA branches). The functional path (autograd,
            # torch.export) always attends through it: no N x N scores kept for backward,
            # and no Python loop over the batch, which torch.export cannot trace for a
            # dynamic batch. The in-place inference path uses it on CUDA (see add_into).
            self.sdpa = True

    def forward(self, x: Tensor, cos_qk: Tensor, sin_qk: Tensor, work_elements: int) -> Tensor:
        """Autograd-friendly path: ``x`` ``[B, N, width]`` -> ``[B, N, width]``."""
        batch, tokens, width = x.shape
        heads, head_dim = self.heads, self.head_dim
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias).view(batch, tokens, 3, heads, head_dim)
        qk = qkv[:, :, :2]
        compute_dtype = qk.dtype
        if compute_dtype != torch.float32:  # RoPE math in fp32
            qk = qk.float()
        # Rotate pairs (see _rope_tables); q also picks up the 1/sqrt(head_dim) scale.
        swapped = qk.reshape(batch, tokens, 2, heads, head_dim // 2, 2).flip(-1)
        rotated = (qk * cos_qk).addcmul_(swapped.view(batch, tokens, 2, heads, head_dim), sin_qk)
        rotated = rotated.to(compute_dtype)
        v = qkv[:, :, 2]
        if hasattr(self, "sdpa"):
            # [B, heads, tokens, head_dim] strided views; q already carries the scale.
            attended = F.scaled_dot_product_attention(rotated[:, :, 0].transpose(1, 2),
                                                      rotated[:, :, 1].transpose(1, 2), v.transpose(1, 2),
                                                      scale=1.0)
            return self.out_proj(attended.transpose(1, 2).reshape(batch, tokens, width))
        merged = torch.empty(batch, tokens, heads, head_dim, dtype=x.dtype, device=x.device)
        heads_per_group = _balanced_chunk(heads, max(1, work_elements // (tokens * tokens)))
        for b in range(batch):
            q_b = rotated[b, :, 0].transpose(0, 1)  # [heads, tokens, head_dim], strided view
            k_b = rotated[b, :, 1].transpose(0, 1)
            v_b = v[b].transpose(0, 1)
            for h0 in range(0, heads, heads_per_group):
                h1 = min(heads, h0 + heads_per_group)
                scores = torch.bmm(q_b[h0:h1], k_b[h0:h1].transpose(1, 2))
                probs = scores.softmax(dim=-1)
                merged[b, :, h0:h1] = torch.bmm(probs, v_b[h0:h1]).transpose(0, 1)
        return self.out_proj(merged.view(batch, tokens, width))

    def add_into(self, residual: Tensor, x: Tensor, cos_qk: Tensor, sin_qk: Tensor,
                 workspace: List[Tensor], onednn: bool = False) -> None:
        """Inference path: ``residual += forward(x)`` in place (``[B, N, width]`` each),
        every large temporary in ``workspace`` (see ``PECoreVision._workspace``). No autograd.

        Same arithmetic as ``forward``; only the memory handling differs.
        """
        batch, tokens, width = x.shape
        heads, head_dim = self.heads, self.head_dim
        rows = batch * tokens
        if onednn and hasattr(self, "float_linears"):  # see the module notes
            qkv = torch._C._nn.mkldnn_linear(x.reshape(rows, width).to_mkldnn(), self.in_proj_weight,
                                             self.in_proj_bias).to_dense().view(batch, tokens, 3, heads, head_dim)
        else:
            qkv = workspace[0][: rows * 3 * width].view(batch, tokens, 3, heads, head_dim)
            torch.addmm(self.in_proj_bias, x.view(rows, width), self.in_proj_weight.t(),
                        out=qkv.view(rows, 3 * width))
        qk = qkv[:, :, :2]
        # rotated = swap(qk) * ssin + qk * cos, built in the workspace (see _rope_tables)
        rotated = workspace[1][: rows * 2 * width].view(batch, tokens, 2, heads, head_dim)
        pairs = rotated.view(batch, tokens, 2, heads, head_dim // 2, 2)
        qk_pairs = qk.reshape(batch, tokens, 2, heads, head_dim // 2, 2)
        pairs[..., 0].copy_(qk_pairs[..., 1])
        pairs[..., 1].copy_(qk_pairs[..., 0])
        rotated.mul_(sin_qk).addcmul_(qk, cos_qk)
        v = qkv[:, :, 2]
        merged = workspace[2][: rows * width].view(batch, tokens, heads, head_dim)
        fused = False
        if hasattr(self, "sdpa") and x.is_cuda:
            # On CUDA SDPA's fused kernels beat bmm + softmax; on the CPU this in-place path
            # was as fast as SDPA (L14, 2 cores: 0.98x at batch 4, 1.02x at batch 8) and keeps it.
            fused = True
            attended = F.scaled_dot_product_attention(rotated[:, :, 0].transpose(1, 2),
                                                      rotated[:, :, 1].transpose(1, 2), v.transpose(1, 2),
                                                      scale=1.0)
            merged.copy_(attended.transpose(1, 2))
        scores_buffer, heads_buffer = workspace[4], workspace[5]
        heads_per_group = heads_buffer.size(0)
        for b in range(0 if fused else batch):
            q_b = rotated[b, :, 0].transpose(0, 1)  # [heads, tokens, head_dim], strided view
            k_b = rotated[b, :, 1].transpose(0, 1)
            v_b = v[b].transpose(0, 1)
            for h0 in range(0, heads, heads_per_group):
                h1 = min(heads, h0 + heads_per_group)
                scores = scores_buffer[: (h1 - h0) * tokens * tokens].view(h1 - h0, tokens, tokens)
                head_out = heads_buffer[: h1 - h0, :tokens]
                torch.bmm(q_b[h0:h1], k_b[h0:h1].transpose(1, 2), out=scores)
                torch.softmax(scores, -1, out=scores)
                torch.bmm(scores, v_b[h0:h1], out=head_out)
                merged[b, :, h0:h1] = head_out.transpose(0, 1)
        residual2d = residual.view(rows, width)
        if onednn and hasattr(self, "float_linears"):
            residual2d.add_(torch._C._nn.mkldnn_linear(merged.view(rows, width).to_mkldnn(), self.out_proj.weight,
                                                       self.out_proj.bias).to_dense())
        elif hasattr(self, "float_linears"):
            residual2d.addmm_(merged.view(rows, width), self.out_proj.weight.t())
            residual2d.add_(self.out_proj.bias)
        else:  # quantized out_proj
            residual2d.add_(self.out_proj(merged.view(rows, width)))


class ResidualAttentionBlock(nn.Module):
    mlp_width: torch.jit.Final[int]

    def __init__(self, width: int, heads: int, mlp_width: int, eps: float):
        super().__init__()
        self.mlp_width = mlp_width
        self.attn = RopeSelfAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width, eps=eps)
        self.ln_2 = nn.LayerNorm(width, eps=eps)
        self.mlp = Mlp(width, mlp_width)

    def forward(self, x: Tensor, cos_qk: Tensor, sin_qk: Tensor, work_elements: int,
                workspace: List[Tensor], onednn: bool = False) -> Tensor:
        if len(workspace) == 0:  # autograd-friendly
            x = x + self.attn(self.ln_1(x), cos_qk, sin_qk, work_elements)
            return x + self.mlp(self.ln_2(x))
        # Inference: x (owned by the caller's forward) is updated in place.
        self.attn.add_into(x, self.ln_1(x), cos_qk, sin_qk, workspace, onednn)
        rows = x.size(0) * x.size(1)
        hidden = workspace[3]  # empty with onednn
        if not onednn:
            hidden = hidden[: rows * self.mlp_width].view(rows, self.mlp_width)
        self.mlp.add_into(x.view(rows, x.size(2)), self.ln_2(x).view(rows, x.size(2)), hidden, onednn)
        return x


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_width: int, eps: float):
        super().__init__()
        self.resblocks = nn.ModuleList(
            [ResidualAttentionBlock(width, heads, mlp_width, eps) for _ in range(layers)]
        )

    def forward(self, x: Tensor, cos_qk: Tensor, sin_qk: Tensor, work_elements: int,
                workspace: List[Tensor], onednn: bool = False) -> Tensor:
        for block in self.resblocks:
            x = block(x, cos_qk, sin_qk, work_elements, workspace, onednn)
        return x


class PoolAttention(nn.Module):
    """Multi-head attention of one query over all tokens; parameters named like
    ``nn.MultiheadAttention`` (``in_proj_weight`` rows: q, k, v)."""

    heads: torch.jit.Final[int]
    head_dim: torch.jit.Final[int]

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, query: Tensor, x: Tensor) -> Tensor:
        """query ``[width]``, x ``[B, N, width]`` -> ``[B, width]``."""
        batch, tokens, width = x.shape
        heads, head_dim = self.heads, self.head_dim
        q = F.linear(query, self.in_proj_weight[:width], self.in_proj_bias[:width])
        q = (q * (head_dim ** -0.5)).view(heads, head_dim)
        kv = F.linear(x, self.in_proj_weight[width:], self.in_proj_bias[width:])
        kv = kv.view(batch, tokens, 2, heads, head_dim)
        scores = (kv[:, :, 0] * q).sum(-1)  # [B, N, heads]
        probs = scores.softmax(dim=1)
        pooled = (probs.unsqueeze(-1) * kv[:, :, 1]).sum(1)  # [B, heads, head_dim]
        return self.out_proj(pooled.reshape(batch, width))


class AttentionPooling(nn.Module):
    """One learned probe attends over all tokens (CLS included, no RoPE), then
    ``x + mlp(layernorm(x))``."""

    def __init__(self, width: int, heads: int, mlp_width: int, eps: float):
        super().__init__()
        self.probe = nn.Parameter(torch.empty(1, 1, width))
        self.attn = PoolAttention(width, heads)
        self.layernorm = nn.LayerNorm(width, eps=eps)
        self.mlp = Mlp(width, mlp_width)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.attn(self.probe.view(-1).to(x.dtype), x)
        return pooled + self.mlp(self.layernorm(pooled))


class PECoreVision(nn.Module):
    """The PE-Core image tower. ``forward``: float32 ``[B, 3, H, W]`` (normalised with
    the config's mean/std, H and W multiples of ``patch_size``) -> ``[B, output_dim]``
    unnormalised embeddings."""

    patch_size: torch.jit.Final[int]
    width: torch.jit.Final[int]
    heads: torch.jit.Final[int]
    head_dim: torch.jit.Final[int]
    mlp_width: torch.jit.Final[int]
    trained_grid: torch.jit.Final[int]
    use_cls_token: torch.jit.Final[bool]
    pool_type: torch.jit.Final[str]
    rope_theta: torch.jit.Final[float]
    fused_attention: torch.jit.Final[bool]  # HAS_SDPA: attention through F.scaled_dot_product_attention
    work_elements: int
    onednn_linears: bool  # run the blocks' Linear layers through oneDNN (see the module notes)
    # The functional path only, whole batch at once (no workspace, micro-batches or per-image
    # loops): what torch.export traces for the .pt2 route, where AOTInductor plans memory.
    exportable: bool

    def __init__(self, config: Union[str, PECoreConfig] = DEFAULT_CONFIG):
        super().__init__()
        cfg = get_config(config)
        self.config = cfg  # plain Python attribute; not seen by TorchScript
        self.patch_size = cfg.patch_size
        self.width = cfg.width
        self.heads = cfg.heads
        self.head_dim = cfg.head_dim
        self.mlp_width = cfg.mlp_width
        self.trained_grid = cfg.grid_size
        self.use_cls_token = cfg.use_cls_token
        self.pool_type = cfg.pool_type
        self.rope_theta = cfg.rope_theta
        self.fused_attention = HAS_SDPA
        self.work_elements = DEFAULT_WORK_ELEMENTS
        self.onednn_linears = False
        self.exportable = False

        # Own parameters first: the official state_dict lists them first too.
        if cfg.use_cls_token:
            self.class_embedding = nn.Parameter(torch.empty(cfg.width))
        else:
            self.register_parameter("class_embedding", None)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.num_tokens, cfg.width))
        self.proj = nn.Parameter(torch.empty(cfg.width, cfg.output_dim))
        self.conv1 = nn.Conv2d(3, cfg.width, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.ln_pre = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.ln_post = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_width, cfg.layer_norm_eps)
        if cfg.pool_type == "attn":
            self.attn_pool = AttentionPooling(cfg.width, cfg.pool_heads, cfg.resolved_pool_mlp_width,
                                              cfg.layer_norm_eps)
        else:
            self.attn_pool = None
        self.reset_parameters()

    @torch.jit.ignore
    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        """Random init: weight matrices uniform with std 0.02 (the official init's scale;
        uniform draws are 6x faster than normal ones for the 300M L14 weights), biases 0,
        LayerNorms identity, CLS/positional embedding and ``proj`` N(0, width**-0.5), probe
        N(0, 1) as in the official code. Unlike images give clearly distinct embeddings
        (random-weight models serve demos and tests)."""
        scale = self.width ** -0.5
        bound = 0.02 * math.sqrt(3.0)
        with torch.no_grad():
            for name, param in self.named_parameters():
                leaf = name.rsplit(".", 1)[-1]
                if name in ("class_embedding", "positional_embedding", "proj"):
                    param.normal_(0.0, scale, generator=generator)
                elif name == "attn_pool.probe":
                    param.normal_(0.0, 1.0, generator=generator)
                elif ".ln_" in name or name.startswith(("ln_pre", "ln_post")) or "layernorm" in name:
                    param.fill_(1.0 if leaf == "weight" else 0.0)
                elif leaf in ("bias", "in_proj_bias"):
                    param.zero_()
                else:
                    param.uniform_(-bound, bound, generator=generator)

    def _tokens(self, images: Tensor, pos: Tensor) -> Tensor:
        """Patch embedding + CLS + positional embedding -> ``[B, tokens, width]``."""
        x = self.conv1(images)  # [B, width, gh, gw]
        x = x.flatten(2).transpose(1, 2)
        cls = self.class_embedding
        if cls is not None:
            x = torch.cat([cls.to(x.dtype).view(1, 1, -1).expand(x.size(0), 1, self.width), x], dim=1)
        return x + pos.to(x.dtype)

    def _workspace(self, batch: int, tokens: int, work_elements: int, like: Tensor,
                   onednn: bool = False) -> List[Tensor]:
        """Flat work buffers for the inference path, sized for micro-batches of ``batch``
        images: [qkv, rotated q/k, merged heads, MLP hidden, attention scores, head outputs].
        Allocated once per forward call and reused by every layer and micro-batch, so the
        large temporaries are not freed to (and faulted back from) the OS layer by layer.
        With ``onednn`` the Linear layers write to oneDNN's buffers: qkv and hidden are empty."""
        rows = batch * tokens
        linear_rows = 0 if onednn else rows
        heads_per_group = _balanced_chunk(self.heads, max(1, work_elements // (tokens * tokens)))
        score_elements = heads_per_group * tokens * tokens
        if self.fused_attention and like.is_cuda:  # SDPA keeps its scores to itself (see add_into)
            heads_per_group, score_elements = 1, 0
        options_dtype, options_device = like.dtype, like.device
        return [
            torch.empty(linear_rows * 3 * self.width, dtype=options_dtype, device=options_device),
            torch.empty(rows * 2 * self.width, dtype=options_dtype, device=options_device),
            torch.empty(rows * self.width, dtype=options_dtype, device=options_device),
            torch.empty(linear_rows * self.mlp_width, dtype=options_dtype, device=options_device),
            torch.empty(score_elements, dtype=options_dtype, device=options_device),
            torch.empty(heads_per_group, 0 if score_elements == 0 else tokens, self.head_dim, dtype=options_dtype,
                        device=options_device),
        ]

    def _forward_micro_batch(self, images: Tensor, pos: Tensor, cos_qk: Tensor, sin_qk: Tensor,
                             work_elements: int, workspace: List[Tensor], onednn: bool) -> Tensor:
        x = self.ln_pre(self._tokens(images, pos))
        x = self.transformer(x, cos_qk, sin_qk, work_elements, workspace, onednn)
        x = self.ln_post(x)
        if self.attn_pool is not None:
            x = self.attn_pool(x)
        elif self.pool_type == "tok":
            x = x[:, 0]
        else:
            x = x.mean(dim=1)
        return x @ self.proj.to(x.dtype)

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.size(1) != 3:
            raise ValueError(
                "PE-Core expects images as a [B, 3, H, W] tensor, got shape {}".format(list(images.shape))
            )
        height, width = images.size(2), images.size(3)
        if height % self.patch_size != 0 or width % self.patch_size != 0 or height == 0 or width == 0:
            raise ValueError(
                "PE-Core image height and width must be positive multiples of the patch size {}, got {}x{}; "
                "resize the images first".format(self.patch_size, height, width)
            )
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        pos = resize_positional_embedding(self.positional_embedding, self.trained_grid, grid_h, grid_w,
                                          self.use_cls_token)
        cos_qk, sin_qk = _rope_tables(grid_h, grid_w, self.head_dim, self.use_cls_token, self.rope_theta,
                                      self.head_dim ** -0.5, images.device)
        if self.exportable:
            return self._forward_micro_batch(images, pos, cos_qk, sin_qk, 1 << 62, [], False)
        batch = images.size(0)
        tokens = grid_h * grid_w + int(self.use_cls_token)
        work_elements = self.work_elements
        if images.is_cuda:
            # Devices have their own caching allocators and want big batches.
            work_elements = 1 << 62
        widest = max(3 * self.width, self.mlp_width)
        per_micro_batch = _balanced_chunk(batch, max(1, work_elements // (tokens * widest)))
        # Out-variant ops (the in-place inference path) do not support autograd.
        workspace: List[Tensor] = []
        onednn = False
        if not torch.is_grad_enabled() and images.dtype == self.positional_embedding.dtype:
            onednn = self.onednn_linears and images.device.type == "cpu"
            workspace = self._workspace(min(batch, per_micro_batch), tokens, work_elements, images, onednn)
        if batch <= per_micro_batch:
            return self._forward_micro_batch(images, pos, cos_qk, sin_qk, work_elements, workspace, onednn)
        outputs: List[Tensor] = []
        for part in images.split(per_micro_batch):
            outputs.append(self._forward_micro_batch(part, pos, cos_qk, sin_qk, work_elements, workspace, onednn))
        return torch.cat(outputs, dim=0)


# --------------------------------------------------------------------------------------
# Public entry points


def build(config: Union[str, PECoreConfig] = DEFAULT_CONFIG, seed: Optional[int] = None) -> PECoreVision:
    """A PE-Core vision tower with random weights, in eval mode.

    ``seed`` makes the init reproducible without touching the global RNG; ``None``
    draws from the global generator.
    """
    model = PECoreVision(config)
    if seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
        model.reset_parameters(generator)
    return model.eval()


def load_checkpoint(path, config: Union[str, PECoreConfig] = DEFAULT_CONFIG) -> PECoreVision:
    """A PE-Core vision tower with the weights of the checkpoint at ``path``, in eval mode.

    Accepted: the official CLIP checkpoint (``PE-Core-L14-336.pt``: image keys under
    ``visual.``, text keys ignored, optionally wrapped in ``state_dict``/``weights`` and
    ``module.``-prefixed), a bare vision state_dict, and the timm / open_clip layout
    (``vit_pe_core_*``, optionally under ``visual.trunk.``) as safetensors or a torch
    pickle. Loading is strict: missing keys, unexpected image keys and shape mismatches
    raise :class:`perception_retrieval.checkpoints.CheckpointError` listing the keys.
    """
    from . import checkpoints

    cfg = get_config(config)
    model = PECoreVision(cfg)
    state, _layout = checkpoints.read_vision_state_dict(path)
    checkpoints.load_strict(model, state, path)
    return model.eval()
