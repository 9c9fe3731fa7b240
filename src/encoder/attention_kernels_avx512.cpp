// The fused attention kernel and the bias + GELU and bias + LayerNorm passes for
// AVX-512F (16 floats a register; this file alone is compiled with -mavx512f, see
// attention_kernels.hpp for the rules it follows).

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "encoder/attention_kernels.hpp"

namespace pe::detail::attention {
namespace {

struct V {
  using reg = __m512;
  static constexpr int width = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg x) { _mm512_storeu_ps(p, x); }
  static reg set1(float x) { return _mm512_set1_ps(x); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  // The AVX2 kernel's expf (Cephes, about 1 ulp, inputs clamped at -87.3), with
  // n = round(x log2 e) and the 2^n scaling done by scalef instead of building the
  // exponent bits (fewer instructions: the softmax of an L14 image on one thread
  // 1.67 -> 1.31 ms).
  static reg exp(reg x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.33654f));
    const reg n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), x);
    reg y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(y, n);
  }
  static reg swap_pairs(reg x) { return _mm512_permute_ps(x, 0xB1); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg min(reg a, reg b) { return _mm512_min_ps(a, b); }
  static reg abs(reg x) { return _mm512_abs_ps(x); }
  // rcp14 (14 bits) and one Newton step: about 23 bits, without a divide's 10+ cycles.
  static reg reciprocal(reg x) {
    const reg r = _mm512_rcp14_ps(x);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(x, r, _mm512_set1_ps(2.0f)));
  }
  static reg select_negative(reg x, reg a, reg b) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), b, a);
  }
  static float sum(reg x) { return _mm512_reduce_add_ps(x); }
  static float first(reg x) { return _mm512_cvtss_f32(x); }
};
// QK: 12 rows x 2 registers of accumulators (24 of the 32 zmm registers), which halves
// the key stream per FMA against 6 rows (measured 5% faster in all); AV: 6 rows x 4.
constexpr int kQkRows = 12;
constexpr int kAvRows = 6;
constexpr int kAvVectors = 4;

#include "encoder/attention_kernel_impl.hpp"
#include "encoder/gelu_kernel_impl.hpp"
#include "encoder/layer_norm_kernel_impl.hpp"

}  // namespace

const KernelSet& avx512_kernels() {
  static const KernelSet set{Simd::avx512, "avx512", V::width, scratch_floats, attend_head, bias_gelu, bias_layer_norm};
  return set;
}

}  // namespace pe::detail::attention
