// The fused attention kernel and the bias + GELU and bias + LayerNorm passes in plain
// C++: CPUs without AVX2, and head sizes the vector kernels do not cover (see
// attention_op.cpp).

#include <algorithm>
#include <cmath>

#include "encoder/attention_kernels.hpp"

namespace pe::detail::attention {
namespace {

struct V {
  using reg = float;
  static constexpr int width = 1;
  static reg zero() { return 0.0f; }
  static reg load(const float* p) { return *p; }
  static void store(float* p, reg x) { *p = x; }
  static reg set1(float x) { return x; }
  static reg fma(reg a, reg b, reg c) { return a * b + c; }
  static reg mul(reg a, reg b) { return a * b; }
  static reg sub(reg a, reg b) { return a - b; }
  static reg max(reg a, reg b) { return a > b ? a : b; }
  static reg exp(reg x) { return std::exp(x); }
  static reg add(reg a, reg b) { return a + b; }
  static reg min(reg a, reg b) { return a < b ? a : b; }
  static reg abs(reg x) { return std::fabs(x); }
  static reg reciprocal(reg x) { return 1.0f / x; }
  static reg select_negative(reg x, reg a, reg b) { return x < 0.0f ? a : b; }
  static float sum(reg x) { return x; }
  static float first(reg x) { return x; }
};
constexpr int kQkRows = 6;
constexpr int kAvRows = 6;
constexpr int kAvVectors = 4;

#include "encoder/attention_kernel_impl.hpp"
#include "encoder/gelu_kernel_impl.hpp"
#include "encoder/layer_norm_kernel_impl.hpp"

}  // namespace

const KernelSet& scalar_kernels() {
  static const KernelSet set{Simd::scalar, "scalar", V::width, scratch_floats, attend_head, bias_gelu, bias_layer_norm};
  return set;
}

}  // namespace pe::detail::attention
