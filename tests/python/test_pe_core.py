"""PE-Core vision tower: structure, numerics against an independent reference, TorchScript.

The official code does not run on torch 1.13, so the reference below is a
deliberately plain re-implementation written from docs/model.md: explicit
patch loops, per-head attention, RoPE applied pair by pair from angles computed
in float64, the positional embedding resized with F.interpolate on the patch
rows. It shares no code with perception_retrieval.pe_core.
"""

import dataclasses
import math
import os

import pytest
import torch
import torch.nn.functional as F

from perception_retrieval import pe_core

TINY = "test-tiny"
TINY_NOCLS = "test-tiny-nocls"
L14 = "PE-Core-L14-336"


# ----------------------------------------------------------------------------------------
# Independent reference


def ref_frequency(j, head_dim, theta=10000.0):
    """Frequency j of one axis: theta ** (-2j / (head_dim / 2))."""
    return theta ** (-2.0 * j / (head_dim / 2))


def ref_angle(token_row, token_col, pair, head_dim, cls_token=True):
    """Angle for dimension pair `pair` (dims 2*pair, 2*pair+1) of a patch token."""
    offset = 1 if cls_token else 0
    quarter = head_dim // 4  # pairs per axis
    if pair < quarter:  # first half of the dims: column (x)
        return (token_col + offset) * ref_frequency(pair, head_dim)
    return (token_row + offset) * ref_frequency(pair - quarter, head_dim)


_REF_TABLES = {}


def ref_rope_table(grid_h, grid_w, head_dim, cls_token):
    """cos, sin [patches, head_dim // 2] (one column per pair), float64 loops, cached."""
    key = (grid_h, grid_w, head_dim, cls_token)
    if key not in _REF_TABLES:
        angles = torch.tensor(
            [[ref_angle(n // grid_w, n % grid_w, pair, head_dim, cls_token) for pair in range(head_dim // 2)]
             for n in range(grid_h * grid_w)],
            dtype=torch.float64,
        )
        _REF_TABLES[key] = (angles.cos().float(), angles.sin().float())
    return _REF_TABLES[key]


def ref_rope(t, grid_h, grid_w, cls_token):
    """Rotate t [tokens, head_dim] pair by pair; the CLS token (index 0) is not rotated."""
    head_dim = t.shape[1]
    cos, sin = ref_rope_table(grid_h, grid_w, head_dim, cls_token)
    out = torch.empty_like(t)
    first = 1 if cls_token else 0
    out[:first] = t[:first]
    for pair in range(head_dim // 2):
        even, odd = t[first:, 2 * pair], t[first:, 2 * pair + 1]
        out[first:, 2 * pair] = even * cos[:, pair] - odd * sin[:, pair]
        out[first:, 2 * pair + 1] = odd * cos[:, pair] + even * sin[:, pair]
    return out


def ref_layer_norm(x, sd, prefix):
    return F.layer_norm(x, (x.shape[-1],), sd[prefix + ".weight"], sd[prefix + ".bias"], 1e-5)


def ref_mlp(x, sd, prefix):
    hidden = x @ sd[prefix + ".c_fc.weight"].t() + sd[prefix + ".c_fc.bias"]
    hidden = 0.5 * hidden * (1.0 + torch.erf(hidden / math.sqrt(2.0)))
    return hidden @ sd[prefix + ".c_proj.weight"].t() + sd[prefix + ".c_proj.bias"]


def ref_attention_pool(x, sd, heads):
    """nn.MultiheadAttention semantics, one query (the probe), written per head."""
    width = x.shape[1]
    head_dim = width // heads
    w, b = sd["attn_pool.attn.in_proj_weight"], sd["attn_pool.attn.in_proj_bias"]
    probe = sd["attn_pool.probe"].reshape(width)
    q = w[:width] @ probe + b[:width]
    k = x @ w[width:2 * width].t() + b[width:2 * width]
    v = x @ w[2 * width:].t() + b[2 * width:]
    pooled = torch.zeros(width)
    for h in range(heads):
        sl = slice(h * head_dim, (h + 1) * head_dim)
        scores = (k[:, sl] @ q[sl]) / math.sqrt(head_dim)
        weights = torch.softmax(scores, dim=0)
        pooled[sl] = weights @ v[:, sl]
    pooled = pooled @ sd["attn_pool.attn.out_proj.weight"].t() + sd["attn_pool.attn.out_proj.bias"]
    return pooled + ref_mlp(ref_layer_norm(pooled, sd, "attn_pool.layernorm"), sd, "attn_pool.mlp")


def reference_forward(sd, cfg, image):
    """One image [3, H, W] -> [output_dim]."""
    p, width, heads = cfg.patch_size, cfg.width, cfg.heads
    head_dim = width // heads
    _, height, wide = image.shape
    grid_h, grid_w = height // p, wide // p
    kernel = sd["conv1.weight"].reshape(width, -1)
    patches = []
    for r in range(grid_h):
        for c in range(grid_w):
            patches.append(kernel @ image[:, r * p:(r + 1) * p, c * p:(c + 1) * p].reshape(-1))
    x = torch.stack(patches)
    pos = sd["positional_embedding"]
    if cfg.use_cls_token:
        x = torch.cat([sd["class_embedding"][None], x])
        cls_pos, patch_pos = pos[:1], pos[1:]
    else:
        cls_pos, patch_pos = pos[:0], pos
    g = cfg.image_size // p
    if (grid_h, grid_w) != (g, g):
        grid = patch_pos.reshape(g, g, width).permute(2, 0, 1)[None]
        grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bilinear", align_corners=False)
        patch_pos = grid[0].permute(1, 2, 0).reshape(grid_h * grid_w, width)
    x = x + torch.cat([cls_pos, patch_pos])
    x = ref_layer_norm(x, sd, "ln_pre")
    for layer in range(cfg.layers):
        pre = f"transformer.resblocks.{layer}"
        h = ref_layer_norm(x, sd, pre + ".ln_1")
        qkv = h @ sd[pre + ".attn.in_proj_weight"].t() + sd[pre + ".attn.in_proj_bias"]
        q, k, v = qkv[:, :width], qkv[:, width:2 * width], qkv[:, 2 * width:]
        merged = torch.zeros_like(q)
        for head in range(heads):
            sl = slice(head * head_dim, (head + 1) * head_dim)
            qh = ref_rope(q[:, sl], grid_h, grid_w, cfg.use_cls_token)
            kh = ref_rope(k[:, sl], grid_h, grid_w, cfg.use_cls_token)
            scores = (qh @ kh.t()) / math.sqrt(head_dim)
            merged[:, sl] = torch.softmax(scores, dim=-1) @ v[:, sl]
        x = x + merged @ sd[pre + ".attn.out_proj.weight"].t() + sd[pre + ".attn.out_proj.bias"]
        x = x + ref_mlp(ref_layer_norm(x, sd, pre + ".ln_2"), sd, pre + ".mlp")
    x = ref_layer_norm(x, sd, "ln_post")
    if cfg.pool_type == "attn":
        pooled = ref_attention_pool(x, sd, cfg.pool_heads)
    elif cfg.pool_type == "tok":
        pooled = x[0]
    else:
        pooled = x.mean(dim=0)
    return pooled @ sd["proj"]


def reference_batch(model, images):
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    with torch.no_grad():
        return torch.stack([reference_forward(sd, model.config, image) for image in images])


# ----------------------------------------------------------------------------------------
# Hand-computed pieces


def test_rope_frequencies_hand_values():
    freqs = pe_core.rope_frequencies(64)
    assert freqs.shape == (32,) and freqs.dtype == torch.float32
    expected = [10000.0 ** (-2.0 * j / 32) for j in range(16)]
    for j, value in enumerate(expected):
        assert freqs[2 * j].item() == pytest.approx(value, rel=1e-6)
        assert freqs[2 * j + 1].item() == freqs[2 * j].item()  # each repeated in place
    assert freqs[0].item() == 1.0
    assert freqs[2].item() == pytest.approx(10000.0 ** (-1 / 16), rel=1e-6)
    assert pe_core.rope_frequencies(8).tolist() == pytest.approx([1.0, 1.0, 0.01, 0.01], rel=1e-6)


def test_rope_angles_table_with_cls():
    angles = pe_core.rope_angles(2, 3, head_dim=8)  # freqs per axis: [1, 1, .01, .01]
    assert angles.shape == (1 + 6, 8)
    assert torch.count_nonzero(angles[0]) == 0  # CLS row first, all zero
    # patch (row 0, col 1) is token 2: x = 2, y = 1 (1-based)
    assert angles[2].tolist() == pytest.approx([2, 2, 0.02, 0.02, 1, 1, 0.01, 0.01], rel=1e-6)
    # patch (row 1, col 2) is token 1 + 1 * 3 + 2 = 6: x = 3, y = 2
    assert angles[6].tolist() == pytest.approx([3, 3, 0.03, 0.03, 2, 2, 0.02, 0.02], rel=1e-6)
    full = pe_core.rope_angles(24, 24, head_dim=64)
    assert full.shape == (577, 64)
    freqs = torch.tensor([10000.0 ** (-2.0 * j / 32) for j in range(16)]).repeat_interleave(2)
    assert torch.allclose(full[2, :32], 2 * freqs) and torch.allclose(full[2, 32:], 1 * freqs)
    assert torch.allclose(full[576, :32], 24 * freqs) and torch.allclose(full[576, 32:], 24 * freqs)


def test_rope_angles_without_cls_are_zero_based():
    angles = pe_core.rope_angles(2, 2, head_dim=8, cls_token=False)
    assert angles.shape == (4, 8)
    assert torch.count_nonzero(angles[0]) == 0  # patch (0, 0)
    assert angles[1].tolist() == pytest.approx([1, 1, 0.01, 0.01, 0, 0, 0, 0], rel=1e-6)


def _identity_attention(width, heads):
    attn = pe_core.RopeSelfAttention(width, heads)
    with torch.no_grad():
        attn.in_proj_weight.copy_(torch.cat([torch.eye(width)] * 3))
        attn.in_proj_bias.zero_()
        attn.out_proj.weight.copy_(torch.eye(width))
        attn.out_proj.bias.zero_()
    return attn


def _rope_tables_for(grid_h, grid_w, head_dim, cls_token=True):
    return pe_core._rope_tables(grid_h, grid_w, head_dim, cls_token, 10000.0, head_dim ** -0.5,
                                torch.device("cpu"))


@pytest.mark.parametrize("inference", [False, True])
def test_attention_rope_cls_and_scale_by_hand(inference):
    """q = k = v = x: output = softmax(rot(x) rot(x)^T / sqrt(d)) x, rotation by hand."""
    torch.manual_seed(0)
    width, heads, grid_h, grid_w = 8, 1, 1, 2
    attn = _identity_attention(width, heads)
    x = torch.randn(1, 1 + grid_h * grid_w, width)
    rotated = x[0].clone()
    for token, (row, col) in ((1, (0, 0)), (2, (0, 1))):
        for pair in range(width // 2):
            quarter = width // 4
            position = (col + 1) if pair < quarter else (row + 1)
            angle = position * 10000.0 ** (-2.0 * (pair % quarter) / (width / 2))
            a, b = x[0, token, 2 * pair].item(), x[0, token, 2 * pair + 1].item()
            rotated[token, 2 * pair] = a * math.cos(angle) - b * math.sin(angle)
            rotated[token, 2 * pair + 1] = b * math.cos(angle) + a * math.sin(angle)
    assert torch.equal(rotated[0], x[0, 0])  # CLS not rotated
    expected = torch.softmax(rotated @ rotated.t() / math.sqrt(width), dim=-1) @ x[0]
    cos, sin = _rope_tables_for(grid_h, grid_w, width)
    with torch.no_grad():
        if inference:
            residual = torch.zeros_like(x)
            tokens = x.shape[1]
            workspace = [torch.empty(tokens * 3 * width), torch.empty(tokens * 2 * width),
                         torch.empty(tokens * width), torch.empty(1), torch.empty(tokens * tokens),
                         torch.empty(1, tokens, width)]
            attn.add_into(residual, x, cos, sin, workspace)
            got = residual
        else:
            got = attn(x, cos, sin, 1 << 20)
    torch.testing.assert_close(got[0], expected, rtol=1e-5, atol=1e-6)


def test_cls_token_and_positional_embedding_order():
    model = pe_core.build(TINY, seed=0)
    cfg = model.config
    image = torch.randn(1, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        tokens = model._tokens(image, model.positional_embedding)
    p, g = cfg.patch_size, cfg.grid_size
    kernel = model.conv1.weight.detach().reshape(cfg.width, -1)
    assert tokens.shape == (1, 1 + g * g, cfg.width)
    torch.testing.assert_close(tokens[0, 0], (model.class_embedding + model.positional_embedding[0]).detach())
    for r, c in ((0, 0), (0, 1), (1, 0), (g - 1, g - 1)):
        patch = image[0, :, r * p:(r + 1) * p, c * p:(c + 1) * p].reshape(-1)
        expected = kernel @ patch + model.positional_embedding[1 + r * g + c].detach()
        torch.testing.assert_close(tokens[0, 1 + r * g + c], expected, rtol=1e-5, atol=1e-5)


def test_positional_embedding_resize_keeps_cls_row():
    pos = torch.randn(1 + 16, 6)
    resized = pe_core.resize_positional_embedding(pos, 4, 6, 5, cls_token=True)
    assert resized.shape == (1 + 30, 6)
    assert torch.equal(resized[0], pos[0])
    grid = pos[1:].reshape(4, 4, 6).permute(2, 0, 1)[None]
    expected = F.interpolate(grid, size=(6, 5), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(resized[1:], expected.permute(1, 2, 0).reshape(30, 6))
    assert pe_core.resize_positional_embedding(pos, 4, 4, 4, cls_token=True) is pos


def test_attention_pool_by_hand_and_against_multihead_attention():
    torch.manual_seed(0)
    width, heads, tokens = 8, 2, 5
    pool = pe_core.AttentionPooling(width, heads, 16, 1e-5)
    for param in pool.parameters():
        torch.nn.init.normal_(param, std=0.5)
    x = torch.randn(3, tokens, width)
    sd = {"attn_pool." + k: v.detach() for k, v in pool.state_dict().items()}
    expected = torch.stack([ref_attention_pool(x[i], sd, heads) for i in range(3)])
    mha = torch.nn.MultiheadAttention(width, heads, batch_first=True)
    mha.load_state_dict(pool.attn.state_dict())
    with torch.no_grad():
        got = pool(x)
        attended = mha(pool.probe.expand(3, 1, width), x, x, need_weights=False)[0][:, 0]
        via_mha = attended + pool.mlp(pool.layernorm(attended))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, via_mha, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------
# Whole model against the reference


@pytest.mark.parametrize("name", [TINY, TINY_NOCLS])
def test_tiny_matches_reference_at_training_and_other_resolutions(name):
    model = pe_core.build(name, seed=1)
    scripted = torch.jit.script(model)
    cfg = model.config
    p = cfg.patch_size
    for height, width in ((cfg.image_size, cfg.image_size),
                          (cfg.image_size * 4 // 3 // p * p, cfg.image_size * 4 // 3 // p * p),
                          (cfg.image_size + 2 * p, cfg.image_size - p)):
        images = torch.randn(2, 3, height, width)
        expected = reference_batch(model, images)
        with torch.no_grad():
            eager = model(images)
            script = scripted(images)
        grad_path = model(images).detach()  # autograd-friendly path
        for got in (eager, script, grad_path):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(script, eager, rtol=0, atol=1e-6)


@pytest.mark.parametrize("pool_type", ["tok", "avg"])
def test_other_pooling_types_match_reference(pool_type):
    cfg = dataclasses.replace(pe_core.get_config(TINY), pool_type=pool_type, name=f"tiny-{pool_type}")
    model = pe_core.build(cfg, seed=2)
    assert not any(k.startswith("attn_pool.") for k in model.state_dict())
    images = torch.randn(2, 3, 70, 56)
    with torch.no_grad():
        got = torch.jit.script(model)(images)
    torch.testing.assert_close(got, reference_batch(model, images), rtol=1e-4, atol=1e-5)


def test_micro_batches_and_head_groups_do_not_change_results():
    model = pe_core.build(TINY, seed=3)
    images = torch.randn(5, 3, 84, 70)
    with torch.no_grad():
        whole = model(images)
        model.work_elements = 2000  # forces one image per micro-batch and single-head groups
        chunked = model(images)
        scripted_chunked = torch.jit.script(model)(images)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scripted_chunked, whole, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")
@pytest.mark.parametrize("name", [TINY, TINY_NOCLS])
def test_onednn_linears_match_the_reference(name):
    model = pe_core.build(name, seed=5)
    assert model.onednn_linears is False  # the eager default stays BLAS (the benchmark peer)
    cfg = model.config
    images = torch.randn(3, 3, cfg.image_size, cfg.image_size + cfg.patch_size)
    with torch.no_grad():
        blas = model(images)
        model.onednn_linears = True
        eager = model(images)
        scripted = torch.jit.script(model)
        script = scripted(images)
        model.work_elements = 2000  # one image per micro-batch, single-head groups
        chunked = torch.jit.script(model)(images)
        scripted.onednn_linears = False  # the switch is read per call, also after scripting
        script_blas = scripted(images)
    expected = reference_batch(model, images)
    for got in (eager, script, chunked):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got, blas, rtol=0, atol=1e-6)  # summation order only
    # It did take the oneDNN path (where torch's BLAS is oneDNN/MKL too, as in the PyPI
    # wheel, the two results can be bit-identical, so look at the ops that ran).
    with torch.no_grad(), torch.autograd.profiler.profile() as profile:
        scripted.onednn_linears = True
        scripted(images)
        scripted.onednn_linears = False
    assert any("mkldnn_linear" in event.name for event in profile.function_events)
    torch.testing.assert_close(script_blas, blas, rtol=0, atol=1e-6)
    # With autograd on, the functional path runs; the switch does not apply.
    model.train()
    torch.testing.assert_close(model(images).detach(), expected, rtol=1e-4, atol=1e-5)


def test_gradients_flow_in_training_mode():
    model = pe_core.build(TINY, seed=4).train()
    images = torch.randn(2, 3, 56, 56, requires_grad=True)
    model(images).pow(2).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert model.transformer.resblocks[0].attn.in_proj_weight.grad is not None


def test_random_init_is_seeded_and_gives_distinct_embeddings():
    a, b, c = (pe_core.build(TINY, seed=s) for s in (7, 7, 8))
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.proj, c.proj)
    images = torch.rand(6, 3, 56, 56) * 2 - 1
    with torch.no_grad():
        emb = F.normalize(a(images), dim=1)
    cosine = emb @ emb.t()
    off_diagonal = cosine[~torch.eye(6, dtype=torch.bool)]
    assert off_diagonal.max().item() < 0.99, cosine
    assert float(emb.std(dim=0).mean()) > 1e-3


def test_bad_inputs_and_configs_raise_clear_errors():
    model = pe_core.build(TINY, seed=0)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        for module in (model, scripted):
            with pytest.raises(Exception, match="multiples of the patch size 14"):
                module(torch.randn(1, 3, 57, 56))
            with pytest.raises(Exception, match=r"\[B, 3, H, W\]"):
                module(torch.randn(3, 56, 56))
    with pytest.raises(ValueError, match="unknown PE-Core config 'nope'.*PE-Core-L14-336"):
        pe_core.build("nope")
    with pytest.raises(ValueError, match="not divisible by heads"):
        dataclasses.replace(pe_core.get_config(TINY), heads=3)
    with pytest.raises(ValueError, match="multiple of 4"):
        dataclasses.replace(pe_core.get_config(TINY), width=72, heads=4)


def test_named_configs_count_parameters_like_the_official_models():
    assert pe_core.get_config(L14).num_parameters() == 317_151_232
    for name in pe_core.available_configs():
        if pe_core.get_config(name).num_parameters() < 5_000_000:
            model = pe_core.PECoreVision(name)
            assert sum(p.numel() for p in model.parameters()) == model.config.num_parameters()


# ----------------------------------------------------------------------------------------
# Full-size PE-Core-L14-336 (random weights)


def official_l14_keys():
    """The official vision state_dict keys and shapes, written out from the spec."""
    d, mlp = 1024, 4096
    keys = {
        "class_embedding": (d,), "positional_embedding": (577, d), "proj": (d, d),
        "conv1.weight": (d, 3, 14, 14),
        "ln_pre.weight": (d,), "ln_pre.bias": (d,), "ln_post.weight": (d,), "ln_post.bias": (d,),
    }
    for n in range(24):
        b = f"transformer.resblocks.{n}."
        keys.update({
            b + "attn.in_proj_weight": (3 * d, d), b + "attn.in_proj_bias": (3 * d,),
            b + "attn.out_proj.weight": (d, d), b + "attn.out_proj.bias": (d,),
            b + "ln_1.weight": (d,), b + "ln_1.bias": (d,), b + "ln_2.weight": (d,), b + "ln_2.bias": (d,),
            b + "mlp.c_fc.weight": (mlp, d), b + "mlp.c_fc.bias": (mlp,),
            b + "mlp.c_proj.weight": (d, mlp), b + "mlp.c_proj.bias": (d,),
        })
    keys.update({
        "attn_pool.probe": (1, 1, d),
        "attn_pool.attn.in_proj_weight": (3 * d, d), "attn_pool.attn.in_proj_bias": (3 * d,),
        "attn_pool.attn.out_proj.weight": (d, d), "attn_pool.attn.out_proj.bias": (d,),
        "attn_pool.layernorm.weight": (d,), "attn_pool.layernorm.bias": (d,),
        "attn_pool.mlp.c_fc.weight": (mlp, d), "attn_pool.mlp.c_fc.bias": (mlp,),
        "attn_pool.mlp.c_proj.weight": (d, mlp), "attn_pool.mlp.c_proj.bias": (d,),
    })
    return keys


@pytest.fixture(scope="module")
def l14():
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # Debian's torch starts with one thread
    try:
        yield pe_core.build(L14, seed=0)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_l14_state_dict_is_the_official_one(l14):
    state = l14.state_dict()
    expected = official_l14_keys()
    assert len(state) == 307 == len(expected)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert all(v.dtype == torch.float32 for v in state.values())
    assert sum(v.numel() for v in state.values()) == 317_151_232
    assert sum(p.numel() for p in l14.parameters()) == 317_151_232
    assert list(l14.buffers()) == []


def structured_images(size):
    """Two unlike images in [-1, 1]: a colour gradient and a white disc on black."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    gradient = torch.stack([xx, yy, -xx])
    disc = (((xx ** 2 + yy ** 2) < 0.3).float() * 2 - 1).expand(3, size, size)
    return torch.stack([gradient, disc])


@pytest.mark.slow
def test_l14_matches_reference_at_336(l14):
    images = structured_images(336)
    with torch.no_grad():
        got = l14(images)
    expected = reference_batch(l14, images[:1])
    assert got.shape == (2, 1024)
    difference = (got[:1] - expected).abs().max().item()
    assert difference <= 1e-4, difference
    normalized = F.normalize(got, dim=1)
    # Random weights still separate unlike images (demos use a random-weight model).
    assert (normalized[0] @ normalized[1]).item() < 0.95
