// The fused attention kernel and the bias + GELU and bias + LayerNorm passes for AVX2
// + FMA (8 floats a register; this file alone is compiled with -mavx2 -mfma, see
// attention_kernels.hpp for the rules it follows).

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "encoder/attention_kernels.hpp"

namespace pe::detail::attention {
namespace {

struct V {
  using reg = __m256;
  static constexpr int width = 8;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, reg x) { _mm256_storeu_ps(p, x); }
  static reg set1(float x) { return _mm256_set1_ps(x); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  // exp(x) for x <= 0 (softmax after subtracting the row maximum): Cephes' expf, range
  // reduction by ln 2 in two parts and a degree-5 polynomial, about 1 ulp; inputs are
  // clamped at -87.3 (results below 1e-38 would be denormal and slow; they add nothing).
  static reg exp(reg x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.33654f));
    const reg fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    reg y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    const __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(exponent));
  }
  static reg swap_pairs(reg x) { return _mm256_permute_ps(x, 0xB1); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg min(reg a, reg b) { return _mm256_min_ps(a, b); }
  static reg abs(reg x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }
  // rcp (12 bits) and one Newton step: about 23 bits, without a divide.
  static reg reciprocal(reg x) {
    const reg r = _mm256_rcp_ps(x);
    return _mm256_mul_ps(r, _mm256_fnmadd_ps(x, r, _mm256_set1_ps(2.0f)));
  }
  static reg select_negative(reg x, reg a, reg b) { return _mm256_blendv_ps(b, a, x); }  // by x's sign bit
  static float sum(reg x) {
    const __m128 half = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    const __m128 pairs = _mm_add_ps(half, _mm_movehl_ps(half, half));
    return _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehdup_ps(pairs)));
  }
  static float first(reg x) { return _mm256_cvtss_f32(x); }
};
// Micro-tiles of 6 rows x 2 registers of accumulators (12 of the 16 ymm registers, the
// rest for the operands) for both QK and AV.
constexpr int kQkRows = 6;
constexpr int kAvRows = 6;
constexpr int kAvVectors = 2;

#include "encoder/attention_kernel_impl.hpp"
#include "encoder/gelu_kernel_impl.hpp"
#include "encoder/layer_norm_kernel_impl.hpp"

}  // namespace

const KernelSet& avx2_kernels() {
  static const KernelSet set{Simd::avx2, "avx2", V::width, scratch_floats, attend_head, bias_gelu, bias_layer_norm};
  return set;
}

}  // namespace pe::detail::attention
