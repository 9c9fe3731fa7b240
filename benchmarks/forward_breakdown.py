"""Per-operator breakdown of the PE-Core forward on the CPU (bench_encoder.py --breakdown).

Replays transformer blocks of a random-weight tower op by op, with the same kernels
and memory handling as the code it stands for, and times each operator group with
``time.perf_counter`` (CPU ops are synchronous, so a timer around a call is its cost):

* ``eager``: ``pe_core.RopeSelfAttention.add_into`` / ``Mlp.add_into`` as the eager
  reference runs them (BLAS ``addmm``, bmm + softmax + bmm per head group, head merge
  copies), in the model's own micro-batches;
* ``script-onednn``: the same with the Linear layers through oneDNN, what pe::Encoder ran
  before its own forward (the TorchScript file with ``onednn_linears``);
* ``native``: what pe::Encoder's forward runs now: each Linear layer on its GEMM route
  (``openblas`` / ``strassen`` / ``onednn`` / ``onednn-packed``, one for all or one per
  layer as ``Encoder.gemm_route`` prints them), attention through the fused
  ``pe::rope_attention`` operator (the qkv bias, RoPE, scaled QK^T, softmax and AV in
  one pass) and GELU through ``pe::bias_gelu_``. On ``openblas`` and ``strassen``
  (``pe::strassen_linear_out``, its rate counting the plain product's FLOPs) the GEMMs write into
  reused buffers without their bias, out_proj and fc2 accumulating straight into the
  residual stream; the attention kernel adds qkv's bias, ``pe::bias_gelu_`` fc1's, and
  ``pe::bias_layer_norm_`` out_proj's and fc2's in the LayerNorm pass after them (so
  its LayerNorm row includes those adds). oneDNN's outputs come with their bias.

Each group's time is reported per image, as a share of the replay, and against the
GEMM limit: the time the block's matmul FLOPs would take at the sgemm rate measured in
the same run. The sum over groups divided by that limit is how far the forward is from
the limit (1.0 = at sgemm speed); a matmul group's own rate is given as % of sgemm.
The stem (patch embedding) and head (pooling, projection) are under 1% of the FLOPs
and are not replayed.
"""

import time
from collections import OrderedDict

import torch
import torch.nn.functional as F

from perception_retrieval import pe_core

GROUPS = ("LayerNorm", "Linear qkv", "Linear out_proj", "Linear fc1", "Linear fc2", "RoPE",
          "attention QK^T", "softmax", "attention AV", "fused attention", "GELU", "copies/permutes",
          "residual/bias adds")


class _Timer:
    def __init__(self):
        self.seconds = OrderedDict((name, 0.0) for name in GROUPS)

    def __call__(self, group, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[group] += time.perf_counter() - start
        return out


ROLES = ("qkv", "out_proj", "fc1", "fc2")
_BIAS_LEFT_OUT = ("openblas", "strassen")  # routes whose GEMMs leave the bias to the next pass


def parse_routes(route):
    """{role: route} from ``Encoder.gemm_route``'s form: one route for every Linear layer
    ("openblas"), or one per layer ("qkv=strassen,out_proj=openblas,fc1=openblas,fc2=onednn")."""
    if "=" not in route:
        return dict.fromkeys(ROLES, route)
    routes = dict(part.split("=", 1) for part in route.split(","))
    if sorted(routes) != sorted(ROLES):
        raise ValueError(f"route {route!r} must name each of {', '.join(ROLES)} once")
    return routes


def _linear(route, x, weight, bias, packed):
    """x [T, in] -> [T, out] + bias on a route that returns fresh outputs (eager's addmm, oneDNN)."""
    if route == "openblas":
        return torch.addmm(bias, x, weight.t())
    w = packed if route == "onednn-packed" else weight
    return torch._C._nn.mkldnn_linear(x.to_mkldnn(), w, bias).to_dense()


def _block_flops(tokens, width, mlp_width):
    return {"Linear qkv": 2 * tokens * width * 3 * width, "Linear out_proj": 2 * tokens * width * width,
            "Linear fc1": 2 * tokens * width * mlp_width, "Linear fc2": 2 * tokens * width * mlp_width,
            "attention QK^T": 2 * tokens * tokens * width, "attention AV": 2 * tokens * tokens * width,
            "fused attention": 4 * tokens * tokens * width}


def _replay_native(block, x, cos_qk, sin_qk, timer, buffers, routes, packed):
    """The own forward's block as forward.cpp runs it, each Linear layer on its route
    (``routes``: {role: route}). openblas and strassen (pe::strassen_linear_out) write
    products into reused buffers or accumulate into the residual stream, leaving the bias
    to the kernel after them; oneDNN returns fresh outputs with the bias, added to the
    residual stream for out_proj and fc2."""
    attn, mlp = block.attn, block.mlp
    batch, tokens, width = x.shape
    rows = batch * tokens
    x2d = x.view(rows, width)
    mlp_width = mlp.c_fc.out_features
    ops = torch.ops.pe
    layers = {"qkv": (attn.in_proj_weight, attn.in_proj_bias), "out_proj": (attn.out_proj.weight, attn.out_proj.bias),
              "fc1": (mlp.c_fc.weight, mlp.c_fc.bias), "fc2": (mlp.c_proj.weight, mlp.c_proj.bias)}
    if rows not in buffers:  # the forward's reused buffers for qkv, the MLP activations, strassen's scratch
        scratch = max([ops.strassen_scratch_floats(rows, *layers[role][0].shape)
                       for role in ROLES if routes[role] == "strassen"], default=0)
        buffers[rows] = (torch.empty(rows, 3 * width), torch.empty(rows, mlp_width), torch.empty(scratch))
    qkv_buffer, hidden_buffer, scratch = buffers[rows]
    sums = buffers.setdefault("sums", {})  # weight-side sums, made once per weight as at load
    for role in ROLES:
        weight = layers[role][0]
        if routes[role] == "strassen" and id(weight) not in sums:
            sums[id(weight)] = ops.strassen_weights(weight)

    def linear(role, a, out, accumulate):
        """The layer's output (into `out` on openblas and strassen; `out` is the residual
        stream when `accumulate`), timed as its Linear group."""
        weight, bias = layers[role]
        route, group = routes[role], "Linear " + role
        if route == "openblas":
            return timer(group, out.addmm_ if accumulate else (lambda a_, w_: torch.mm(a_, w_, out=out)), a,
                         weight.t())
        if route == "strassen":
            return timer(group, ops.strassen_linear_out, a, weight, sums[id(weight)], out, accumulate, scratch)
        fresh = timer(group, _linear, route, a, weight, bias, packed.get(role))
        return timer("residual/bias adds", out.add_, fresh) if accumulate else fresh

    def left_out(role):
        return layers[role][1] if routes[role] in _BIAS_LEFT_OUT else None

    # The first LayerNorm adds the previous block's fc2 bias when fc2's route left it out
    # (here this block's: the same size).
    h = timer("LayerNorm", ops.bias_layer_norm_, x2d, left_out("fc2"), block.ln_1.weight, block.ln_1.bias,
              block.ln_1.eps)
    qkv = linear("qkv", h, qkv_buffer, False)
    merged = timer("fused attention", ops.rope_attention, qkv.view(batch, tokens, 3 * width), cos_qk, sin_qk,
                   attn.heads, "best", left_out("qkv"))
    linear("out_proj", merged.view(rows, width), x2d, True)
    h = timer("LayerNorm", ops.bias_layer_norm_, x2d, left_out("out_proj"), block.ln_2.weight, block.ln_2.bias,
              block.ln_2.eps)
    hidden = linear("fc1", h, hidden_buffer, False)
    timer("GELU", ops.bias_gelu_, hidden, left_out("fc1"))
    linear("fc2", hidden, x2d, True)


def replay_block(block, x, cos_qk, sin_qk, timer, mode, route="openblas", packed=None, buffers=None):
    """One block, x [B, N, W] updated in place, each operator group timed. ``route``: the
    native mode's routes in ``Encoder.gemm_route``'s form (``parse_routes``)."""
    if mode == "native":
        return _replay_native(block, x, cos_qk, sin_qk, timer, buffers if buffers is not None else {},
                              parse_routes(route), packed or {})
    attn, mlp = block.attn, block.mlp
    batch, tokens, width = x.shape
    heads, head_dim = attn.heads, attn.head_dim
    rows = batch * tokens
    packed = packed or {}
    x2d = x.view(rows, width)
    h = timer("LayerNorm", F.layer_norm, x, (width,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
    linear_route = "openblas" if mode == "eager" else "onednn"
    qkv = timer("Linear qkv", _linear, linear_route, h.view(rows, width), attn.in_proj_weight, attn.in_proj_bias,
                packed.get("qkv"))
    qkv = qkv.view(batch, tokens, 3, heads, head_dim)
    qk = qkv[:, :, :2]
    rotated = torch.empty(batch, tokens, 2, heads, head_dim)

    def rope():
        pairs = rotated.view(batch, tokens, 2, heads, head_dim // 2, 2)
        qk_pairs = qk.reshape(batch, tokens, 2, heads, head_dim // 2, 2)
        pairs[..., 0].copy_(qk_pairs[..., 1])
        pairs[..., 1].copy_(qk_pairs[..., 0])
        rotated.mul_(sin_qk).addcmul_(qk, cos_qk)

    timer("RoPE", rope)
    v = qkv[:, :, 2]
    merged = torch.empty(batch, tokens, heads, head_dim)
    scores = torch.empty(heads, tokens, tokens)
    head_out = torch.empty(heads, tokens, head_dim)
    for b in range(batch):
        q_b = rotated[b, :, 0].transpose(0, 1)
        k_b = rotated[b, :, 1].transpose(0, 1)
        start = time.perf_counter()
        torch.bmm(q_b, k_b.transpose(1, 2), out=scores)
        timer.seconds["attention QK^T"] += time.perf_counter() - start
        start = time.perf_counter()
        torch.softmax(scores, -1, out=scores)
        timer.seconds["softmax"] += time.perf_counter() - start
        start = time.perf_counter()
        torch.bmm(scores, v[b].transpose(0, 1), out=head_out)
        timer.seconds["attention AV"] += time.perf_counter() - start
        start = time.perf_counter()
        merged[b].copy_(head_out.transpose(0, 1))
        timer.seconds["copies/permutes"] += time.perf_counter() - start
    attended = timer("Linear out_proj", _linear, linear_route, merged.reshape(rows, width), attn.out_proj.weight,
                     attn.out_proj.bias, packed.get("out_proj"))
    timer("residual/bias adds", x2d.add_, attended)
    h = timer("LayerNorm", F.layer_norm, x, (width,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
    hidden = timer("Linear fc1", _linear, linear_route, h.view(rows, width), mlp.c_fc.weight, mlp.c_fc.bias,
                   packed.get("fc1"))
    timer("GELU", torch._C._nn.gelu_, hidden)
    out = timer("Linear fc2", _linear, linear_route, hidden, mlp.c_proj.weight, mlp.c_proj.bias, packed.get("fc2"))
    timer("residual/bias adds", x2d.add_, out)


def breakdown(config, batch, layers, mode, sgemm_gflops, route="openblas", seed=0):
    """Times ``layers`` blocks of ``config`` on ``batch`` images (after one warm-up block) in
    ``mode`` (see the module notes); returns the per-group table as a dict."""
    cfg = pe_core.get_config(config)
    model = pe_core.PECoreVision(cfg)
    model.reset_parameters(torch.Generator().manual_seed(seed))
    blocks = list(model.transformer.resblocks)[: max(1, layers)]
    grid = cfg.grid_size
    tokens = cfg.num_tokens
    cos_qk, sin_qk = pe_core._rope_tables(grid, grid, cfg.head_dim, cfg.use_cls_token, cfg.rope_theta,
                                          cfg.head_dim ** -0.5, torch.device("cpu"))
    # The eager model runs micro-batches whose MLP activations stay under its work limit;
    # pe::Encoder's own forward uses the same limit (src/encoder/forward.cpp).
    micro = pe_core._balanced_chunk(batch, max(1, pe_core.DEFAULT_WORK_ELEMENTS //
                                               (tokens * max(3 * cfg.width, cfg.mlp_width))))
    x = torch.randn(batch, tokens, cfg.width, generator=torch.Generator().manual_seed(seed)) * 0.5
    with torch.no_grad():
        packed_roles = [role for role, r in parse_routes(route).items() if r == "onednn-packed"] \
            if mode == "native" else []
        packs = []
        for block in blocks:
            weights = {"qkv": block.attn.in_proj_weight, "out_proj": block.attn.out_proj.weight,
                       "fc1": block.mlp.c_fc.weight, "fc2": block.mlp.c_proj.weight}
            packs.append({role: weights[role].to_mkldnn() for role in packed_roles})
        warm, buffers = _Timer(), {}
        for part in x.split(micro):
            replay_block(blocks[0], part, cos_qk, sin_qk, warm, mode, route, packs[0], buffers)
        timer = _Timer()
        for block, pack in zip(blocks, packs):
            for part in x.split(micro):
                replay_block(block, part, cos_qk, sin_qk, timer, mode, route, pack, buffers)
    per_image = {name: s / (batch * len(blocks)) for name, s in timer.seconds.items()}
    total = sum(per_image.values())
    flops = _block_flops(tokens, cfg.width, cfg.mlp_width)
    if mode == "native":
        flops.pop("attention QK^T"), flops.pop("attention AV")
    else:
        flops.pop("fused attention")
    limit = sum(flops.values()) / (sgemm_gflops * 1e9)
    rows = OrderedDict()
    for name, seconds in per_image.items():
        if seconds == 0.0:
            continue
        rate = flops[name] / seconds / 1e9 if name in flops else None
        rows[name] = {"ms_per_image": 1e3 * seconds, "share": seconds / total, "of_gemm_limit": seconds / limit,
                      "gflops": rate, "pct_sgemm": None if rate is None else 100 * rate / sgemm_gflops}
    return {"mode": mode, "route": route if mode == "native" else ("onednn" if mode == "script-onednn" else
                                                                      "openblas"),
            "batch": batch, "micro_batch": micro, "layers": len(blocks), "rows": rows,
            "ms_per_image": 1e3 * total, "gemm_limit_ms": 1e3 * limit, "vs_limit": total / limit,
            "gflops": sum(flops.values()) / total / 1e9, "pct_sgemm": 100 * limit / total}


def format_table(result, sgemm_gflops):
    lines = [f"breakdown [{result['mode']}, Linear via {result['route']}, batch {result['batch']} "
             f"(micro-batches of {result['micro_batch']}), {result['layers']} blocks]: "
             f"{result['ms_per_image']:.1f} ms per image per block, GEMM limit {result['gemm_limit_ms']:.1f} ms "
             f"(sgemm {sgemm_gflops:.0f} GFLOP/s): {result['pct_sgemm']:.0f}% of sgemm"]
    lines.append(f"  {'operator':<20} {'ms/img':>8} {'share':>7} {'x limit':>8} {'GFLOP/s':>8} {'% sgemm':>8}")
    for name, row in result["rows"].items():
        rate = "" if row["gflops"] is None else f"{row['gflops']:8.1f}"
        pct = "" if row["pct_sgemm"] is None else f"{row['pct_sgemm']:7.0f}%"
        lines.append(f"  {name:<20} {row['ms_per_image']:8.2f} {100 * row['share']:6.1f}% "
                     f"{row['of_gemm_limit']:8.3f} {rate:>8} {pct:>8}")
    return "\n".join(lines)
