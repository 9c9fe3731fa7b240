"""The fused RoPE attention operator (torch.ops.pe.rope_attention, src/encoder/attention_op.cpp)
against an independent float64 reference, on every kernel this CPU has, and pe::Encoder's
own forward (which uses it) against the eager model."""

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import perception_retrieval as pr
from perception_retrieval import export, pe_core

pr.cpu_features()  # loads the native module, which registers the pe:: operators


def naive_attention(qkv, cos_qk, sin_qk, heads, return_probs=False):
    """Float64, straight from docs/model.md: rotate adjacent pairs of q and k
    (out[2i] = t[2i] cos - t[2i+1] sin, out[2i+1] = t[2i+1] cos + t[2i] sin, with the
    tables' signed sin and q's 1/sqrt(D) scale), softmax(q k^T) v per head."""
    batch, tokens, width3 = qkv.shape
    width = width3 // 3
    dim = width // heads
    q, k, v = qkv.double().view(batch, tokens, 3, heads, dim).unbind(2)
    cos, sin = cos_qk.double().view(tokens, 2, dim), sin_qk.double().view(tokens, 2, dim)

    def rotate(t, which):
        out = torch.empty_like(t)
        c, s = cos[:, which][None, :, None, :], sin[:, which][None, :, None, :]
        out[..., 0::2] = t[..., 0::2] * c[..., 0::2] + t[..., 1::2] * s[..., 0::2]
        out[..., 1::2] = t[..., 1::2] * c[..., 1::2] + t[..., 0::2] * s[..., 1::2]
        return out

    probs = torch.einsum("bnhd,bmhd->bhnm", rotate(q, 0), rotate(k, 1)).softmax(-1)
    out = torch.einsum("bhnm,bmhd->bnhd", probs, v).reshape(batch, tokens, width)
    return (out, probs) if return_probs else out


def tables(grid, dim, cls=True):
    return pe_core._rope_tables(grid, grid, dim, cls, 10000.0, dim ** -0.5, torch.device("cpu"))


KERNELS = ["scalar", "avx2", "avx512"]


@pytest.mark.parametrize("grid, heads, dim, batch, cls", [
    (2, 4, 16, 2, True),     # test-tiny's heads
    (24, 16, 64, 1, True),   # L14-336: 577 tokens
    (3, 2, 24, 2, False),    # head size not a multiple of 16: AVX-512 falls back to AVX2
    (5, 3, 96, 1, True),     # G14's head size
    (7, 2, 64, 3, False),    # 49 tokens: partial row groups and column tiles
])
@pytest.mark.parametrize("simd", KERNELS)
def test_matches_naive_float64_attention(grid, heads, dim, batch, cls, simd):
    tokens = grid * grid + int(cls)
    cos_qk, sin_qk = tables(grid, dim, cls)
    generator = torch.Generator().manual_seed(grid * 100 + dim)
    qkv = torch.randn(batch, tokens, 3 * heads * dim, generator=generator)  # scores of a few units, as in the model
    out = torch.ops.pe.rope_attention(qkv, cos_qk, sin_qk, heads, simd)
    reference = naive_attention(qkv, cos_qk, sin_qk, heads)
    assert out.shape == (batch, tokens, heads * dim) and out.dtype == torch.float32
    np.testing.assert_allclose(out.double().numpy(), reference.numpy(), rtol=0, atol=3e-6)
    kernel = torch.ops.pe.rope_attention_kernel(dim, simd)
    assert kernel in KERNELS and KERNELS.index(kernel) <= KERNELS.index(simd)


def test_matches_the_models_own_attention():
    """Same result as pe_core's bmm / softmax path (the eager model's arithmetic)."""
    model = pe_core.build("test-tiny", seed=1)
    attn = model.transformer.resblocks[0].attn
    cfg = model.config
    cos_qk, sin_qk = tables(cfg.grid_size, cfg.head_dim)
    x = torch.randn(3, cfg.num_tokens, cfg.width, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = attn(x, cos_qk, sin_qk, 1 << 30)
        qkv = torch.nn.functional.linear(x, attn.in_proj_weight, attn.in_proj_bias)
        ours = attn.out_proj(torch.ops.pe.rope_attention(qkv, cos_qk, sin_qk, cfg.heads))
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("simd", KERNELS)
def test_the_result_does_not_depend_on_the_thread_count(simd):
    """Images x heads are split over LibTorch's thread count (3 tasks per thread, 1, or an
    uneven split); every head is computed alone, so the output is bitwise the same."""
    cos_qk, sin_qk = tables(4, 32, cls=True)
    qkv = torch.randn(5, 17, 3 * 3 * 32, generator=torch.Generator().manual_seed(9))  # 15 image-head tasks
    threads = torch.get_num_threads()
    try:
        outputs = []
        for count in (1, 2, 4, 15, 16):
            torch.set_num_threads(count)
            outputs.append(torch.ops.pe.rope_attention(qkv, cos_qk, sin_qk, 3, simd))
    finally:
        torch.set_num_threads(threads)
    for out in outputs[1:]:
        assert torch.equal(out, outputs[0])
    np.testing.assert_allclose(outputs[0].double().numpy(), naive_attention(qkv, cos_qk, sin_qk, 3).numpy(),
                               rtol=0, atol=3e-6)


def test_softmax_is_stable_for_large_scores():
    cos_qk, sin_qk = tables(3, 16)
    qkv = torch.randn(1, 10, 3 * 32, generator=torch.Generator().manual_seed(5)) * 60.0  # scores in the thousands
    out = torch.ops.pe.rope_attention(qkv, cos_qk, sin_qk, 2)
    assert torch.isfinite(out).all()
    np.testing.assert_allclose(out.double().numpy(), naive_attention(qkv, cos_qk, sin_qk, 2).numpy(), atol=1e-4)


def keeps_denormals():
    """Whether this thread's arithmetic keeps denormal results (MXCSR's FZ and DAZ off):
    Python's float division runs on the same SSE unit as the kernels."""
    return sys.float_info.min / 4.0 > 0.0


@pytest.mark.parametrize("simd", KERNELS)
def test_peaked_scores_and_the_callers_float_mode(simd):
    # Scores spread over hundreds, as in a model whose attention concentrates on a few
    # tokens: most probabilities fall below float32's smallest normal number, where each
    # operation costs an x86 core a microcode assist; the kernels flush them to zero
    # (common/denormals.hpp, measured 4x faster) and must still match float64, and must
    # leave the calling thread's floating-point mode as it was, whichever it was.
    cos_qk, sin_qk = tables(7, 64, cls=True)
    qkv = torch.randn(2, 50, 3 * 2 * 64, generator=torch.Generator().manual_seed(8)) * 8.0
    expected, probs = naive_attention(qkv, cos_qk, sin_qk, 2, return_probs=True)
    tiny = float(np.finfo(np.float32).tiny)
    assert ((probs > 0) & (probs < tiny)).double().mean() > 0.3  # the case this test is about
    assert keeps_denormals()
    out = torch.ops.pe.rope_attention(qkv, cos_qk, sin_qk, 2, simd)
    assert keeps_denormals(), "the kernel left flush-to-zero on in the calling thread"
    # Scores of a few hundred carry float32 rounding of about 1e-4 into each exponent (the
    # kernels before flushing were 2.6e-4 off here too), against outputs of about 10.
    np.testing.assert_allclose(out.double().numpy(), expected.numpy(), rtol=0, atol=1e-3)
    if torch.set_flush_denormal(True):  # the caller's own choice, where the CPU has it
        try:
            assert not keeps_denormals()
            torch.ops.pe.rope_attention(qkv, cos_qk, sin_qk, 2, simd)
            assert not keeps_denormals(), "the kernel turned the caller's flush-to-zero off"
        finally:
            torch.set_flush_denormal(False)
    assert keeps_denormals()


@pytest.mark.parametrize("simd", KERNELS)
@pytest.mark.parametrize("tokens", [5, 49, 577])
def test_rows_of_only_negative_scores(simd, tokens):
    # Scores -199 (key 0) and -200 (the rest): a row maximum that let the zero-padded key
    # columns of the last tile count (0 > -199) would push every exp below the kernels'
    # clamp (e^-87.3) or to 0, so that the row came out the plain mean of V, or 0 / 0.
    # Identity RoPE tables (cos 1, sin 0) keep the scores exactly q . k.
    heads, dim = 2, 16
    cos_qk = torch.ones(tokens, 2, 1, dim)
    sin_qk = torch.zeros(tokens, 2, 1, dim)
    qkv = torch.zeros(1, tokens, 3 * heads * dim)
    q, k, v = qkv.view(1, tokens, 3, heads, dim).unbind(2)
    q[..., 0] = 10.0
    k[..., 0] = -20.0
    k[:, 0, :, 0] = -19.9
    v.copy_(torch.randn(v.shape, generator=torch.Generator().manual_seed(tokens)))
    out = torch.ops.pe.rope_attention(qkv, cos_qk, sin_qk, heads, simd)
    expected = naive_attention(qkv, cos_qk, sin_qk, heads)
    assert not torch.allclose(expected, v.double().mean(1, keepdim=True).reshape(1, 1, -1), atol=1e-3)
    np.testing.assert_allclose(out.double().numpy(), expected.numpy(), rtol=0, atol=2e-5)


@pytest.mark.parametrize("simd", KERNELS)
def test_qkv_bias_is_added_before_everything(simd):
    # The Encoder's qkv GEMM leaves the in-projection's bias to the kernel.
    grid, heads, dim = 7, 2, 64
    cos_qk, sin_qk = tables(grid, dim)
    generator = torch.Generator().manual_seed(11)
    qkv = torch.randn(2, grid * grid + 1, 3 * heads * dim, generator=generator)
    bias = torch.randn(3 * heads * dim, generator=generator)
    out = torch.ops.pe.rope_attention(qkv, cos_qk, sin_qk, heads, simd, bias)
    np.testing.assert_allclose(out.double().numpy(), naive_attention(qkv + bias, cos_qk, sin_qk, heads).numpy(),
                               rtol=0, atol=3e-6)
    with pytest.raises(RuntimeError, match="qkv_bias must be a float32 CPU vector of 384"):
        torch.ops.pe.rope_attention(qkv, cos_qk, sin_qk, heads, simd, bias[:-1])


@pytest.mark.parametrize("simd", KERNELS)
# L14's MLP width; 100: four vectors at a time, then one at a time, then a partial one
@pytest.mark.parametrize("cols", [4096, 100, 37, 5])
def test_bias_gelu_matches_exact_gelu(simd, cols):
    generator = torch.Generator().manual_seed(cols)
    # Activations of a few units, and the tails: far negative (where 1 + erf cancels),
    # large positive, and beyond the kernels' clamp of |x| / sqrt 2 at 9.
    x = torch.cat([torch.randn(40, cols, generator=generator) * 3,
                   torch.linspace(-30, 30, 3 * cols).view(3, cols)])
    bias = torch.randn(cols, generator=generator)
    expected = torch.nn.functional.gelu(x.double() + bias.double())  # erf GELU in float64
    out = x.clone()
    assert torch.ops.pe.bias_gelu_(out, bias, simd) is out
    # A&S 7.1.26's erf is within 1.5e-7, as ATen's own vectorized erf.
    assert float(((out.double() - expected).abs() / expected.abs().clamp_min(1.0)).max()) < 3e-7
    no_bias = x.clone()
    torch.ops.pe.bias_gelu_(no_bias, None, simd)
    assert float(((no_bias.double() - torch.nn.functional.gelu(x.double())).abs()).max()) < 3e-6


def test_bias_gelu_checks_its_arguments():
    with pytest.raises(RuntimeError, match="bias must be a float32 CPU vector of 8 elements"):
        torch.ops.pe.bias_gelu_(torch.zeros(2, 8), torch.zeros(7))
    with pytest.raises(RuntimeError, match="contiguous float32 CPU tensor"):
        torch.ops.pe.bias_gelu_(torch.zeros(8, 2).t(), None)
    with pytest.raises(RuntimeError, match="simd must be"):
        torch.ops.pe.bias_gelu_(torch.zeros(2, 8), None, "sse")


def reference_layer_norm(x, weight, bias, eps=1e-5):
    """Float64 LayerNorm over the last dimension, biased variance, from its definition."""
    x = x.double()
    mean = x.mean(-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(variance + eps) * weight.double() + bias.double()


@pytest.mark.parametrize("simd", KERNELS)
@pytest.mark.parametrize("cols", [1024, 100, 37, 5])  # L14's width; partial last vectors
def test_bias_layer_norm_adds_the_bias_and_normalises(simd, cols):
    generator = torch.Generator().manual_seed(cols + 1)
    # Residual-stream rows of a few units around a row mean, and rows far from zero with
    # a small spread, where a one-pass E[x^2] - mean^2 variance would cancel to nothing.
    x = torch.cat([torch.randn(70, cols, generator=generator) * 3 + torch.randn(70, 1, generator=generator),
                   1000 + 0.01 * torch.randn(3, cols, generator=generator)])
    bias = torch.randn(cols, generator=generator)
    weight, ln_bias = torch.randn(cols, generator=generator), torch.randn(cols, generator=generator)
    expected_x = x + bias  # the float32 sum, as the kernel computes it
    out = torch.ops.pe.bias_layer_norm_(x, bias, weight, ln_bias, 1e-5, simd)
    assert torch.equal(x, expected_x)
    expected = reference_layer_norm(expected_x, weight, ln_bias)
    error = (out.double() - expected).abs() / (weight.double().abs() + ln_bias.double().abs() + 1)
    assert float(error[:70].max()) < 1e-6
    # Far from zero a float32 mean is only good to half an ulp of 1000 (2^-15), which
    # the normalisation multiplies by 1 / std (about 100 here); nothing may add to it.
    # (A plain float sum for the mean: 3.6e-3 on AVX-512, 3e-2 on scalar.)
    assert float(bias.abs().max()) < 20  # the far rows stay below 1024: one ulp size
    limit = 2.0 ** -15 / expected_x[70:].double().std(-1, unbiased=False) + 1e-5
    assert bool((error[70:].max(-1).values < limit).all()), (error[70:].max(-1).values, limit)
    # Without a bias, x is left as it is.
    y = torch.randn(4, cols, generator=generator)
    before = y.clone()
    out = torch.ops.pe.bias_layer_norm_(y, None, weight, ln_bias, 1e-6, simd)
    assert torch.equal(y, before)
    error = (out.double() - reference_layer_norm(y, weight, ln_bias, 1e-6)).abs()
    assert float(error.max()) < 3e-5 * float((weight.abs() + ln_bias.abs()).max())


def test_bias_layer_norm_checks_its_arguments():
    x, vector = torch.zeros(2, 8), torch.ones(8)
    with pytest.raises(RuntimeError, match="bias must be a float32 CPU vector of 8 elements"):
        torch.ops.pe.bias_layer_norm_(x, torch.zeros(7), vector, vector)
    with pytest.raises(RuntimeError, match="weight must be a float32 CPU vector of 8 elements"):
        torch.ops.pe.bias_layer_norm_(x, None, vector.double(), vector)
    with pytest.raises(RuntimeError, match="ln_bias must be a float32 CPU vector of 8 elements"):
        torch.ops.pe.bias_layer_norm_(x, None, vector, torch.ones(2, 4))
    with pytest.raises(RuntimeError, match="contiguous float32 CPU tensor"):
        torch.ops.pe.bias_layer_norm_(torch.zeros(8, 2).t(), None, torch.ones(2), torch.ones(2))
    with pytest.raises(RuntimeError, match="eps must be positive"):
        torch.ops.pe.bias_layer_norm_(x, None, vector, vector, 0.0)
    with pytest.raises(RuntimeError, match="simd must be"):
        torch.ops.pe.bias_layer_norm_(x, None, vector, vector, 1e-5, "sse")


def test_bad_arguments_name_the_problem():
    cos_qk, sin_qk = tables(2, 16)
    qkv = torch.randn(1, 5, 3 * 64)
    with pytest.raises(RuntimeError, match="float32 CPU tensor"):
        torch.ops.pe.rope_attention(qkv.double(), cos_qk, sin_qk, 4)
    with pytest.raises(RuntimeError, match="3 \\* heads \\* head_dim"):
        torch.ops.pe.rope_attention(qkv, cos_qk, sin_qk, 5)
    with pytest.raises(RuntimeError, match="cos_qk and sin_qk"):
        torch.ops.pe.rope_attention(qkv, cos_qk[:4], sin_qk, 4)
    with pytest.raises(RuntimeError, match="simd must be"):
        torch.ops.pe.rope_attention(qkv, cos_qk, sin_qk, 4, "sse")


def test_environment_caps_the_kernel():
    code = textwrap.dedent("""
        import torch, perception_retrieval as pr
        pr.cpu_features()
        print(torch.ops.pe.rope_attention_kernel(64))
    """)
    env = dict(os.environ, PE_ENCODER_SIMD="scalar")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "scalar"


# --------------------------------------------------------------------------------------
# pe::Encoder's own forward


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(60, 80), (56, 56), (90, 41), (30, 70),
                                                                          (64, 64)]]


def eager_reference(model, encoder, images):
    batch = torch.from_numpy(np.stack([encoder.preprocess(image) for image in images]))
    with torch.no_grad():
        return torch.nn.functional.normalize(model(batch), dim=1).numpy()


@pytest.mark.parametrize("config", ["test-tiny", "test-tiny-nocls"])
@pytest.mark.parametrize("gemm", ["auto", "openblas", "strassen", "onednn", "onednn-packed"])
def test_encoder_own_forward_matches_eager(tmp_path, images, config, gemm):
    path = tmp_path / "model.pt"
    export.export(path, config=config, random_init=True, seed=3, log=None)
    encoder = pr.Encoder(path, batch_size=2, gemm=gemm)
    assert encoder.uses_fused_attention, encoder.forward_description
    if gemm != "auto" and (torch.backends.mkldnn.is_available() or not gemm.startswith("onednn")):
        assert encoder.gemm_route == gemm
    assert set(layer_routes(encoder.gemm_route).values()) <= set(ROUTES), encoder.gemm_route
    reference = eager_reference(pe_core.build(config, seed=3), encoder, images)
    cosine = (encoder.encode(images) * reference).sum(axis=1)
    assert cosine.min() >= 0.999999, cosine
    off = pr.Encoder(path, batch_size=2, fused_attention=False)
    assert not off.uses_fused_attention and "fused_attention is off" in off.forward_description
    np.testing.assert_allclose(off.encode(images), encoder.encode(images), atol=2e-6)


ROUTES = ("openblas", "strassen", "onednn", "onednn-packed")
LAYERS = ("qkv", "out_proj", "fc1", "fc2")


def layer_routes(gemm_route):
    """{layer: route} from Encoder.gemm_route: one route name, or qkv=...,out_proj=...,fc1=...,fc2=..."""
    if "=" not in gemm_route:
        return dict.fromkeys(LAYERS, gemm_route)
    routes = dict(part.split("=") for part in gemm_route.split(","))
    assert list(routes) == list(LAYERS), gemm_route
    return routes


# Mixed routes: each layer hands its bias on (openblas, strassen) or adds it itself (oneDNN),
# so every layer meets both kinds of route before and after it.
MIXED = ["qkv=onednn,out_proj=strassen,fc1=onednn-packed,fc2=openblas",
         "qkv=strassen,out_proj=onednn,fc1=openblas,fc2=onednn"]


@pytest.mark.parametrize("gemm", ["openblas", "strassen", "onednn"] + MIXED)
def test_encoder_own_forward_with_every_bias_set(tmp_path, images, gemm):
    """Random init leaves biases at 0 (as the official init does), so a bias the own forward
    dropped or added twice (each GEMM route leaves some to a later pass, and the pooling
    folds its K and V biases into other terms) shows only with biases set: every bias,
    LayerNorm shift and the probe get random values, through an official-layout checkpoint."""
    if "onednn" in gemm and not torch.backends.mkldnn.is_available():
        pytest.skip("this torch has no oneDNN")
    model = pe_core.build("test-tiny", seed=4)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith("bias") or name.endswith("probe"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.5)
    checkpoint = tmp_path / "official.pt"
    torch.save(model.state_dict(), checkpoint)
    path = tmp_path / "model.pt"
    export.export(path, checkpoint, config="test-tiny", log=None)
    encoder = pr.Encoder(path, batch_size=2, gemm=gemm)
    assert encoder.uses_fused_attention, encoder.forward_description
    assert encoder.gemm_route == gemm
    assert encoder.uses_onednn == ("onednn" in gemm)
    cosine = (encoder.encode(images) * eager_reference(model.eval(), encoder, images)).sum(axis=1)
    assert cosine.min() >= 0.999999, cosine
    off = pr.Encoder(path, batch_size=2, fused_attention=False)
    np.testing.assert_allclose(off.encode(images), encoder.encode(images), atol=2e-6)


def test_quantized_files_keep_their_torchscript_forward(tmp_path, images):
    path = tmp_path / "int8.pt"
    export.export(path, config="test-tiny", random_init=True, seed=3, quantize="dynamic_int8", log=None)
    encoder = pr.Encoder(path)
    assert not encoder.uses_fused_attention
    assert "quantized" in encoder.forward_description
    assert encoder.encode(images).shape == (len(images), 32)


def test_exported_file_runs_in_plain_pytorch(tmp_path, images):
    """The file never names a pe:: operator: a process without perception_retrieval loads it."""
    path = tmp_path / "model.pt"
    export.export(path, config="test-tiny", random_init=True, seed=3, log=None)
    code = textwrap.dedent(f"""
        import sys, torch
        module = torch.jit.load({str(path)!r})
        out = module(torch.zeros(2, 3, 56, 56))
        assert "perception_retrieval" not in sys.modules
        print(tuple(out.shape))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(2, 32)"


def test_bad_gemm_option(tmp_path):
    path = tmp_path / "model.pt"
    export.export(path, config="test-tiny", random_init=True, seed=3, log=None)
    with pytest.raises(ValueError, match="gemm \"mkl\" is not auto, openblas, strassen, onednn or onednn-packed"):
        pr.Encoder(path, gemm="mkl")
    for gemm, problem in [("qkv=fast", 'route "fast" for qkv is not openblas, strassen, onednn or onednn-packed'),
                          ("attn=openblas", 'layer "attn" is not qkv, out_proj, fc1 or fc2'),
                          ("fc1=openblas,fc1=strassen", "fc1 is named twice"),
                          ("fc1=openblas,", '"" is not layer=route'),
                          ("fc1=openblas,fc2", '"fc2" is not layer=route')]:
        with pytest.raises(ValueError, match=re.escape(f'gemm "{gemm}": {problem}')):
            pr.Encoder(path, gemm=gemm)


def test_gemm_pins_some_layers_and_measures_the_rest(tmp_path):
    """A partial list pins the layers it names; auto's choice, printed by gemm_route, pins
    all four on a later load (measurement noise then cannot change the routes)."""
    path = tmp_path / "model.pt"
    export.export(path, config="test-tiny", random_init=True, seed=3, log=None)
    pinned = "onednn" if torch.backends.mkldnn.is_available() else "strassen"
    encoder = pr.Encoder(path, gemm=f"fc2={pinned}")
    routes = layer_routes(encoder.gemm_route)
    assert routes["fc2"] == pinned and set(routes.values()) <= set(ROUTES), encoder.gemm_route
    # Only the three measured layers are reported with their rates.
    assert "fc2:" not in encoder.forward_description and "qkv:" in encoder.forward_description
    measured = pr.Encoder(path, gemm="auto")
    again = pr.Encoder(path, gemm=measured.gemm_route)
    assert again.gemm_route == measured.gemm_route
    assert "measured" not in again.forward_description


@pytest.mark.slow
def test_l14_own_forward_matches_eager(tmp_path):
    path = tmp_path / "l14.pt"
    export.export(path, config="PE-Core-L14-336", random_init=True, seed=0, verify=False, log=None)
    encoder = pr.Encoder(path, batch_size=2, threads=pr.usable_cpu_count())
    assert encoder.uses_fused_attention, encoder.forward_description
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (336, 336, 3), dtype=np.uint8), rng.integers(0, 256, (400, 300, 3), dtype=np.uint8)]
    reference = eager_reference(pe_core.build("PE-Core-L14-336", seed=0), encoder, images)
    cosine = (encoder.encode(images) * reference).sum(axis=1)
    assert cosine.min() >= 0.999999, cosine


class _MirroredEncoder(export.ExportedEncoder):
    """An exported file whose forward does more than the tower: it mirrors the images first."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.nn.functional.normalize(self.model(images.flip(-1)), p=2.0, dim=1)


def test_a_file_whose_forward_the_own_forward_does_not_reproduce_keeps_its_own(tmp_path, images, monkeypatch):
    """The own forward re-implements the file from its weights and constants; a file whose TorchScript forward
    computes something else (here: mirrored images) must keep that forward, with the measured disagreement in
    forward_description, and give the file's own embeddings."""
    monkeypatch.setattr(export, "ExportedEncoder", _MirroredEncoder)
    path = tmp_path / "edited.pt"
    export.export(path, config="test-tiny", random_init=True, seed=3, log=None)
    monkeypatch.undo()
    encoder = pr.Encoder(path, batch_size=2)
    assert not encoder.uses_fused_attention, encoder.forward_description
    assert "to the file's forward at load" in encoder.forward_description and "cosine" in encoder.forward_description
    script = pr.Encoder(path, batch_size=2, fused_attention=False)
    np.testing.assert_allclose(encoder.encode(images), script.encode(images), atol=1e-6)
