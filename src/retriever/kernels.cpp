// Kernel dispatch, IEEE half conversions and query packing: baseline code
// (see kernels.hpp for why the SIMD sets live in their own files).

#include "retriever/kernels.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#if PE_X86_KERNELS
#include <cpuid.h>
#endif

namespace pe::detail::kernels {

namespace {

#if PE_X86_KERNELS
// clang (14) does not accept "f16c" in __builtin_cpu_supports; CPUID leaf 1,
// ECX bit 29 is the same flag (and the AVX checks already cover OS support).
bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
}
#endif

Simd detect_simd() {
#if PE_X86_KERNELS
  __builtin_cpu_init();
  // libgcc's avx512f bit also checks XCR0, i.e. that the OS saves zmm state.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      cpu_has_f16c()) {
    return Simd::avx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c()) {
    return Simd::avx2;
  }
#endif
  return Simd::scalar;
}

}  // namespace

Simd supported_simd() {
  static const Simd level = [] {
    Simd detected = detect_simd();
    if (const char* cap = std::getenv("PE_RETRIEVER_SIMD")) {
      const std::string text(cap);
      Simd wanted = detected;
      if (text == "scalar") wanted = Simd::scalar;
      if (text == "avx2") wanted = Simd::avx2;
      if (text == "avx512") wanted = Simd::avx512;
      detected = static_cast<Simd>(std::min(static_cast<int>(detected), static_cast<int>(wanted)));
    }
    return detected;
  }();
  return level;
}

Simd resolve_simd(Simd requested) {
  const Simd top = supported_simd();
  if (requested == Simd::best) return top;
  return static_cast<Simd>(std::min(static_cast<int>(requested), static_cast<int>(top)));
}

const KernelSet& kernels_for(Simd resolved) {
#if PE_X86_KERNELS
  if (resolved == Simd::avx512) return avx512_kernels();
  if (resolved == Simd::avx2) return avx2_kernels();
#endif
  (void)resolved;
  return scalar_kernels();
}

float half_to_float(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1fu;
  const uint32_t mantissa = half & 0x3ffu;
  uint32_t bits = 0;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: mantissa * 2^-24, exact in float
      const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
      std::memcpy(&bits, &magnitude, sizeof(bits));
      bits |= sign;
    }
  } else if (exponent == 31) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  }
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

uint16_t float_to_half(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude >= 0x7f800000u) {  // inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (magnitude > 0x7f800000u ? 0x200u : 0u));
  }
  if (magnitude >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (magnitude < 0x38800000u) {
    // Below the smallest normal half: adding 0.5f aligns the value so the FPU's
    // own round-to-nearest-even produces the subnormal half mantissa.
    float shifted;
    std::memcpy(&shifted, &magnitude, sizeof(shifted));
    shifted += 0.5f;
    uint32_t shifted_bits;
    std::memcpy(&shifted_bits, &shifted, sizeof(shifted_bits));
    return static_cast<uint16_t>(sign | (shifted_bits - 0x3f000000u));
  }
  const uint32_t odd = (magnitude >> 13) & 1u;  // ties go to even
  magnitude += 0xc8000fffu + odd;                // rebias exponent (-112 << 23) and round
  return static_cast<uint16_t>(sign | (magnitude >> 13));
}

void pack_query_panels(int mr, const float* queries, int64_t nq, int64_t stride, int64_t dim, const float* scale,
                       float* out) {
  const int64_t panels = (nq + mr - 1) / mr;
  for (int64_t p = 0; p < panels; ++p) {
    float* panel = out + p * mr * dim;
    for (int i = 0; i < mr; ++i) {
      const int64_t q = p * mr + i;
      if (q >= nq) {
        for (int64_t k = 0; k < dim; ++k) panel[k * mr + i] = 0.0f;
        continue;
      }
      const float* row = queries + q * stride;
      const float s = scale ? scale[q] : 1.0f;
      for (int64_t k = 0; k < dim; ++k) panel[k * mr + i] = row[k] * s;
    }
  }
}

}  // namespace pe::detail::kernels
