// The fused attention kernel for AVX-512F (16 floats a register; this file alone is
// compiled with -mavx512f, see attention_kernels.hpp for the rules it follows).

#include <immintrin.h>

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
  // The same expf as the AVX2 kernel (Cephes, about 1 ulp, inputs clamped at -87.3).
  static reg exp(reg x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.33654f));
    const reg fx = _mm512_roundscale_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f)),
                                        _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
    reg y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
    const __m512i exponent = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(fx), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(y, _mm512_castsi512_ps(exponent));
  }
  static float first(reg x) { return _mm512_cvtss_f32(x); }
};
constexpr int kAvVectors = 4;  // 6 rows x 4 registers of accumulators: 24 of the 32 zmm registers

#include "encoder/attention_kernel_impl.hpp"

}  // namespace

const KernelSet& avx512_kernels() {
  static const KernelSet set{Simd::avx512, "avx512", V::width, scratch_floats, attend_head};
  return set;
}

}  // namespace pe::detail::attention
