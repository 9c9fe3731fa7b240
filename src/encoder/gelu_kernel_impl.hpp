#pragma once
// The MLP's bias + GELU pass as a template over a vector type, included (inside an
// anonymous namespace) by each attention_kernels_<isa>.cpp after the attention kernel,
// whose V it shares (see attention_kernels.hpp for the rules).
//
// Why not addmm + at::gelu_: addmm starts by copying the bias into every output row
// (a full write of the [rows, 4 * width] activations, 28 MB per L14 micro-batch) and
// GELU is another pass. Here the GEMM writes plain products and one pass adds the bias
// and applies GELU.
//
// GELU(x) = x / 2 (1 + erf(x / sqrt 2)), through erfc of z = |x| / sqrt 2 by
// Abramowitz and Stegun 7.1.26 (|error| <= 1.5e-7 absolute, the accuracy of ATen's own
// vectorized erf, which the eager model's nn.GELU runs):
//   erfc(z) ~= t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) exp(-z^2),  t = 1 / (1 + p z),
// taken as x / 2 erfc(z) for x < 0 (where 1 + erf is small, so nothing is lost to
// cancellation) and x - x / 2 erfc(z) for x >= 0.

// Requires, beyond the attention kernel's V: abs(reg), min(reg, reg), reciprocal(reg)
// (about 23 bits), select_negative(reg x, reg a, reg b) (a where x < 0, else b).

inline typename V::reg gelu(typename V::reg x) {
  using reg = typename V::reg;
  // z at most 9 (|x| <= 12.7): beyond it erfc(z) < 1e-36 changes no float result, and
  // exp(-z^2) times the polynomial would be denormal, which costs a microcode assist per
  // operation (measured: the pass 2-5x slower on such inputs).
  const reg z = V::min(V::mul(V::abs(x), V::set1(0.70710678118654752f)), V::set1(9.0f));
  const reg t = V::reciprocal(V::fma(z, V::set1(0.3275911f), V::set1(1.0f)));
  reg poly = V::set1(1.061405429f);
  poly = V::fma(poly, t, V::set1(-1.453152027f));
  poly = V::fma(poly, t, V::set1(1.421413741f));
  poly = V::fma(poly, t, V::set1(-0.284496736f));
  poly = V::fma(poly, t, V::set1(0.254829592f));
  const reg erfc = V::mul(V::mul(poly, t), V::exp(V::mul(V::mul(z, z), V::set1(-1.0f))));
  const reg half_x_erfc = V::mul(V::mul(x, V::set1(0.5f)), erfc);
  return V::select_negative(x, half_x_erfc, V::sub(x, half_x_erfc));
}

// data[r][c] = GELU(data[r][c] + bias[c]) for rows x cols floats (row-major; bias may be
// null).
void bias_gelu(float* data, int64_t rows, int64_t cols, const float* bias) {
  const int64_t full = cols / V::width * V::width;
  for (int64_t r = 0; r < rows; ++r) {
    float* row = data + r * cols;
    int64_t c = 0;
    // Four vectors an iteration: GELU is one long dependency chain per vector, and
    // four independent chains keep both FMA ports busy (measured: 1.27x one at a time on AVX-512).
    for (; c + 4 * V::width <= full; c += 4 * V::width) {
      typename V::reg x0 = V::load(row + c), x1 = V::load(row + c + V::width);
      typename V::reg x2 = V::load(row + c + 2 * V::width), x3 = V::load(row + c + 3 * V::width);
      if (bias) {
        x0 = V::add(x0, V::load(bias + c));
        x1 = V::add(x1, V::load(bias + c + V::width));
        x2 = V::add(x2, V::load(bias + c + 2 * V::width));
        x3 = V::add(x3, V::load(bias + c + 3 * V::width));
      }
      V::store(row + c, gelu(x0));
      V::store(row + c + V::width, gelu(x1));
      V::store(row + c + 2 * V::width, gelu(x2));
      V::store(row + c + 3 * V::width, gelu(x3));
    }
    for (; c < full; c += V::width) {
      typename V::reg x = V::load(row + c);
      if (bias) x = V::add(x, V::load(bias + c));
      V::store(row + c, gelu(x));
    }
    if (c < cols) {  // the last, partial vector through a zero-padded copy
      float lanes[V::width] = {};
      for (int64_t i = c; i < cols; ++i) lanes[i - c] = row[i] + (bias ? bias[i] : 0.0f);
      V::store(lanes, gelu(V::load(lanes)));
      for (int64_t i = c; i < cols; ++i) row[i] = lanes[i - c];
    }
  }
}
