#pragma once
// One level of Strassen-Winograd for a Linear layer's product x W^T (the "strassen" GEMM
// route of pe::Encoder's own forward; internal to src/encoder, includes torch).
//
// Why: on the machines this runs on, the forward is mostly its Linear layers' GEMMs and
// the BLAS already runs them near the core's FMA peak, so a faster forward must do fewer
// multiplications. One level of Winograd's variant splits x and W^T into 2 x 2 blocks and
// forms the product from 7 half-size GEMMs instead of 8 (1/8 fewer FLOPs) plus block
// sums. The weight-side sums depend only on W, so they are formed once at load
// (StrassenWeights, as large as W itself); the activation-side sums and the output
// combination are memory passes over blocks that the GEMMs just touched. Rounding:
// the error bound grows by a small constant factor (measured on L14 layer shapes: max
// abs error against float64 about 3x the plain product's), checked at load like every
// route (the Encoder compares its own forward with the file's).
//
// The schedule (Boyer, Dumas, Pernet, Zhou 2009, adapted to a beta = 1 BLAS and
// weight sums known in advance) writes each output block once from a running sum and
// accumulates the products into it with beta = 1, using two half-size temporaries.
// An odd row count gets a virtual zero row in the sums (no product of a row alone).
//
// strassen.cpp also registers them as operators for benchmarks and tests
// (torch.ops.pe.strassen_weights, strassen_scratch_floats, strassen_linear_out).
//
// Thread safety: the functions hold no state; concurrent calls need their own scratch.
// Each call splits its memory passes over at::get_num_threads() plain threads.

#include <ATen/ATen.h>

#include <cstdint>

namespace pe::detail {

/// The weight-side block sums of W [N, K] (row-major, as nn.Linear stores it), each
/// [N/2, K/2] and stored like W (so that a product uses t.t()): with B = W^T split into
/// B11 B12 / B21 B22, T1 = B12 - B11, T2 = B22 - T1, T3 = B22 - B12, T4 = T2 - B21.
struct StrassenWeights {
  at::Tensor t1, t2, t3, t4;
  bool defined() const { return t1.defined(); }
};

/// Whether `strassen_linear` splits a product with this weight (N and K even, N, K >= 2).
bool strassen_applies(const at::Tensor& weight);

/// The sums for `weight` [N, K] float32 (strassen_applies must hold).
StrassenWeights strassen_weights(const at::Tensor& weight);

/// Floats of scratch strassen_linear needs for `rows` rows of a layer whose weight is
/// [out_features, in_features] (N, K).
int64_t strassen_scratch_floats(int64_t rows, int64_t out_features, int64_t in_features);

/// out = x W^T (accumulate: out += x W^T), no bias. x [M, K] and out [M, N] float32,
/// each row-major with unit column stride (out may be a row-major view with a longer
/// row); scratch holds at least strassen_scratch_floats(M, N, K) floats. Fewer than 2
/// rows run as a plain product.
void strassen_linear(const at::Tensor& x, const at::Tensor& weight, const StrassenWeights& sums, at::Tensor& out,
                     bool accumulate, float* scratch);

}  // namespace pe::detail
