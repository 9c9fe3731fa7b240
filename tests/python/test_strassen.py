"""One level of Strassen-Winograd for x W^T (torch.ops.pe.strassen_linear_out, the Encoder's
"strassen" GEMM route; src/encoder/strassen.cpp) against the plain product in float64."""

import numpy as np
import pytest
import torch

import perception_retrieval as pr

pr.cpu_features()  # loads the native module, which registers the pe:: operators


def _product(x, weight, accumulate=False, out=None, scratch=None):
    sums = torch.ops.pe.strassen_weights(weight)
    if out is None:
        out = torch.full((x.shape[0], weight.shape[0]), float("nan"))
    return torch.ops.pe.strassen_linear_out(x, weight, sums, out, accumulate, scratch)


def _bound(x, weight):
    # float32 rounding of a K-term sum, with Strassen's block sums: a few units of
    # eps * K * max|x| * max|w|, far below any error of a wrong block combination.
    return 8 * np.finfo(np.float32).eps * x.shape[1] * float(x.abs().max()) * float(weight.abs().max())


@pytest.mark.parametrize("rows, n, k", [
    (34, 192, 64),    # even rows: the plain split
    (17, 256, 64),    # odd rows: the bottom half has a virtual zero row
    (3, 2, 2),        # the smallest split
    (577, 96, 48),    # one L14-sized token count (odd)
    (2, 64, 256),
])
def test_matches_float64_product(rows, n, k):
    generator = torch.Generator().manual_seed(rows * 1000 + n + k)
    x = torch.randn(rows, k, generator=generator)
    weight = torch.randn(n, k, generator=generator) / k ** 0.5
    got = _product(x, weight)
    reference = x.double() @ weight.double().t()
    assert got.shape == (rows, n) and got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy(), reference.numpy(), rtol=0, atol=_bound(x, weight))


def test_accumulates_into_a_strided_output_and_leaves_the_rest_alone():
    """accumulate=True adds to out (the residual stream); out may be a view with longer rows,
    whose other columns stay as they were."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(21, 64, generator=generator)
    weight = torch.randn(128, 64, generator=generator) / 8
    wide = torch.randn(21, 200, generator=generator)
    before = wide.clone()
    out = wide[:, 40:168]
    _product(x, weight, accumulate=True, out=out)
    expected = before[:, 40:168].double() + x.double() @ weight.double().t()
    np.testing.assert_allclose(wide[:, 40:168].double().numpy(), expected.numpy(), rtol=0, atol=_bound(x, weight))
    assert torch.equal(wide[:, :40], before[:, :40]) and torch.equal(wide[:, 168:], before[:, 168:])


def test_reused_scratch_gives_the_same_result():
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(33, 96, generator=generator)
    weight = torch.randn(64, 96, generator=generator)
    floats = torch.ops.pe.strassen_scratch_floats(33, 64, 96)
    assert floats == 2 * 17 * 32 + 4 * 17 * 48
    scratch = torch.full((floats,), float("nan"))  # left over from anything: every value is written first
    first = _product(x, weight, scratch=scratch)
    second = _product(x, weight, scratch=scratch)
    assert torch.equal(first, second) and torch.equal(first, _product(x, weight))


def test_weight_sums_are_winograds_block_differences():
    weight = torch.arange(4 * 6, dtype=torch.float32).view(4, 6)  # N = 4, K = 6: blocks [2, 3]
    t1, t2, t3, t4 = torch.ops.pe.strassen_weights(weight)
    b = weight.t()  # B = W^T [6, 4], blocks [3, 2]
    b11, b12, b21, b22 = b[:3, :2], b[:3, 2:], b[3:, :2], b[3:, 2:]
    # stored transposed like W
    assert torch.equal(t1.t(), b12 - b11)
    assert torch.equal(t2.t(), b22 - (b12 - b11))
    assert torch.equal(t3.t(), b22 - b12)
    assert torch.equal(t4.t(), b22 - (b12 - b11) - b21)


def test_bad_arguments_name_the_problem():
    x = torch.randn(8, 6)
    weight = torch.randn(4, 6)
    sums = torch.ops.pe.strassen_weights(weight)
    out = torch.empty(8, 4)
    with pytest.raises(RuntimeError, match="N and K must be even"):
        torch.ops.pe.strassen_weights(torch.randn(5, 6))
    with pytest.raises(RuntimeError, match="weight must be a float32"):
        torch.ops.pe.strassen_weights(torch.randn(4, 6, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"x must be float32 \[M, 6\]"):
        torch.ops.pe.strassen_linear_out(torch.randn(8, 5), weight, sums, out)
    with pytest.raises(RuntimeError, match=r"out must be float32 \[8, 4\]"):
        torch.ops.pe.strassen_linear_out(x, weight, sums, torch.empty(8, 5))
    with pytest.raises(RuntimeError, match="sums must be pe::strassen_weights"):
        torch.ops.pe.strassen_linear_out(x, weight, sums[:3], out)
    with pytest.raises(RuntimeError, match=r"each of sums must be a contiguous float32 \[2, 3\]"):
        torch.ops.pe.strassen_linear_out(x, weight, [s.t() for s in sums], out)
    with pytest.raises(RuntimeError, match="scratch must be a contiguous float32 tensor of at least"):
        torch.ops.pe.strassen_linear_out(x, weight, sums, out, False, torch.empty(3))
