#pragma once
// pe::detail::retriever_kernels — the arithmetic under pe::Retriever::search:
// SIMD dot products and a GEMM micro-kernel fused with the top-k threshold test,
// for three instruction sets chosen at run time (AVX-512, AVX2+FMA, portable C++).
//
// Why our own kernels and not cblas_sgemm: measured on the reference machine
// (AMD EPYC Zen 5, 2 cores, Debian 12's OpenBLAS 0.3.21), OpenBLAS picks its
// Haswell (AVX2) kernel and its sgemm reaches ~190 GFLOPS; FAISS on top of it
// ~108. The 14x32 AVX-512 micro-kernel below, streaming the full depth D from
// L2, reaches ~350 GFLOPS for the whole search (packing and top-k included;
// AVX-512 FMA peak ~440), and our AVX2 6x16 kernel ~200 (AVX2 peak ~220). The
// top-k test runs on the accumulators while they are still in registers, so
// the Q x N score matrix is never written to memory. And it keeps
// perception_retrieval::pe header-only: no BLAS to find or link, no second
// threading runtime next to LibTorch's.
//
// Why runtime dispatch: binaries must run on any x86-64, so nothing here relies
// on -march; each kernel carries __attribute__((target(...))) and is only called
// after the CPU (and OS, for AVX-512 state) reported support. Non-x86 builds and
// old CPUs use the portable kernels. PE_RETRIEVER_SIMD=scalar|avx2|avx512 in
// the environment caps the level (for benchmarks and for testing every path).
//
// Determinism: for a given level, one (query, gallery row) score is computed by
// the same sequence of operations wherever the row sits in a panel or strip, so
// identical rows give bit-identical scores and ties are real ties. Different
// levels (and the batch path vs the few-queries path) sum in different orders,
// so scores may differ in the last bits between them.
//
// Thread safety: every function is pure apart from writing its output buffers;
// supported_simd() initialises a function-local static once (thread-safe).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

// -DPE_RETRIEVER_X86=0 builds only the portable kernels (tests use it to
// check the non-x86 build on x86).
#ifndef PE_RETRIEVER_X86
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PE_RETRIEVER_X86 1
#else
#define PE_RETRIEVER_X86 0
#endif
#endif
#if PE_RETRIEVER_X86
#include <cpuid.h>
#include <immintrin.h>
#define PE_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define PE_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#endif

namespace pe {

/// Instruction set used by pe::Retriever's kernels. `best` = the highest the CPU
/// supports (capped by PE_RETRIEVER_SIMD); asking for more than the CPU has
/// gives the highest it has.
enum class Simd { best = 0, scalar = 1, avx2 = 2, avx512 = 3 };

inline const char* name(Simd simd) {
  switch (simd) {
    case Simd::best: return "best";
    case Simd::scalar: return "scalar";
    case Simd::avx2: return "avx2";
    case Simd::avx512: return "avx512";
  }
  return "unknown";
}

namespace detail::retriever {

// ---------------------------------------------------------------------------
// Dispatch

#if PE_RETRIEVER_X86
// clang (14) does not accept "f16c" in __builtin_cpu_supports; CPUID leaf 1,
// ECX bit 29 is the same flag (and the AVX checks already cover OS support).
inline bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
}
#endif

inline Simd detect_simd() {
#if PE_RETRIEVER_X86
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

/// The highest level this process may use: the CPU's, capped by PE_RETRIEVER_SIMD.
inline Simd supported_simd() {
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

/// The level a request resolves to on this machine.
inline Simd resolve_simd(Simd requested) {
  const Simd top = supported_simd();
  if (requested == Simd::best) return top;
  return static_cast<Simd>(std::min(static_cast<int>(requested), static_cast<int>(top)));
}

// ---------------------------------------------------------------------------
// float16 storage: IEEE binary16 bits in uint16_t. The portable conversions
// round to nearest even exactly like F16C, so a gallery stores the same bits
// whichever level converted it.

inline float half_to_float(uint16_t half) {
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

inline uint16_t float_to_half(float value) {
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

/// Largest finite float16 value; larger magnitudes cannot be stored.
constexpr float kHalfMax = 65504.0f;

// ---------------------------------------------------------------------------
// Kernel interface (one struct per level, same static members):
//
//   MR, NR          micro-tile: MR queries x NR gallery rows; queries are packed
//                   by pack_query_panels<MR> into [panel][k][MR]
//   pack_gallery    up to NR gallery rows (float or half) -> [k][NR], zero padded
//   tile            MR x NR scores over the full depth, then the top-k test:
//                   lanes with score >= threshold[i]; returns whether any lane
//                   passed, and only then stores the scores to `tile_out`
//   score_strip     scores of `rows` consecutive gallery rows against `nq`
//                   queries (few-queries path), out[q * rows + r]
//   to_half         float -> half, n values
//   read_sum        sum of n floats (bandwidth probe)

/// Bits 0..count-1 set (count <= 32).
inline uint32_t low_lanes(int64_t count) {
  return count >= 32 ? 0xffffffffu : ((uint32_t{1} << count) - 1u);
}

/// Queries (rows of `dim` floats, `stride` apart) to MR-interleaved panels;
/// rows past nq are zero. `scale` (may be null) multiplies each query (cosine).
template <int MR>
inline void pack_query_panels(const float* queries, int64_t nq, int64_t stride, int64_t dim, const float* scale,
                              float* out) {
  const int64_t panels = (nq + MR - 1) / MR;
  for (int64_t p = 0; p < panels; ++p) {
    float* panel = out + p * MR * dim;
    for (int i = 0; i < MR; ++i) {
      const int64_t q = p * MR + i;
      if (q >= nq) {
        for (int64_t k = 0; k < dim; ++k) panel[k * MR + i] = 0.0f;
        continue;
      }
      const float* row = queries + q * stride;
      const float s = scale ? scale[q] : 1.0f;
      for (int64_t k = 0; k < dim; ++k) panel[k * MR + i] = row[k] * s;
    }
  }
}

inline float to_float(float value) { return value; }
inline float to_float(uint16_t value) { return half_to_float(value); }

/// Portable packing: block over k so the 64 x NR destination block stays in L1.
template <int NR, class G>
inline void pack_gallery_portable(const G* rows, int64_t count, int64_t dim, float* out) {
  constexpr int64_t kBlock = 64;
  for (int64_t k0 = 0; k0 < dim; k0 += kBlock) {
    const int64_t k1 = std::min(dim, k0 + kBlock);
    for (int64_t j = 0; j < NR; ++j) {
      if (j < count) {
        const G* row = rows + j * dim;
        for (int64_t k = k0; k < k1; ++k) out[k * NR + j] = to_float(row[k]);
      } else {
        for (int64_t k = k0; k < k1; ++k) out[k * NR + j] = 0.0f;
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Portable level. Plain loops the compiler may vectorise with the baseline ISA.

struct ScalarKernel {
  static constexpr int MR = 4;
  static constexpr int NR = 8;

  template <class G>
  static void pack_gallery(const G* rows, int64_t count, int64_t dim, float* out) {
    pack_gallery_portable<NR>(rows, count, dim, out);
  }

  static bool tile(const float* a, const float* b, int64_t dim, const float* thresholds, uint32_t valid,
                   float* tile_out, uint32_t* masks) {
    float acc[MR][NR] = {};
    for (int64_t k = 0; k < dim; ++k) {
      for (int i = 0; i < MR; ++i) {
        const float x = a[k * MR + i];
        for (int j = 0; j < NR; ++j) acc[i][j] += x * b[k * NR + j];
      }
    }
    uint32_t any = 0;
    for (int i = 0; i < MR; ++i) {
      uint32_t mask = 0;
      for (int j = 0; j < NR; ++j) mask |= (acc[i][j] >= thresholds[i] ? 1u : 0u) << j;
      masks[i] = mask & valid;
      any |= masks[i];
    }
    if (any) {
      for (int i = 0; i < MR; ++i) {
        for (int j = 0; j < NR; ++j) tile_out[i * NR + j] = acc[i][j];
      }
    }
    return any != 0;
  }

  template <class G>
  static void score_strip(const G* rows, int64_t count, int64_t dim, const float* queries, int64_t nq,
                          int64_t query_stride, float* out) {
    for (int64_t r = 0; r < count; ++r) {
      const G* row = rows + r * dim;
      for (int64_t q = 0; q < nq; ++q) {
        const float* query = queries + q * query_stride;
        float partial[8] = {};
        int64_t k = 0;
        for (; k + 8 <= dim; k += 8) {
          for (int l = 0; l < 8; ++l) partial[l] += query[k + l] * to_float(row[k + l]);
        }
        float sum = ((partial[0] + partial[4]) + (partial[1] + partial[5])) +
                    ((partial[2] + partial[6]) + (partial[3] + partial[7]));
        for (; k < dim; ++k) sum += query[k] * to_float(row[k]);
        out[q * count + r] = sum;
      }
    }
  }

  static void to_half(const float* in, int64_t n, uint16_t* out) {
    for (int64_t i = 0; i < n; ++i) out[i] = float_to_half(in[i]);
  }

  static float read_sum(const float* data, int64_t n) {
    float partial[8] = {};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      for (int l = 0; l < 8; ++l) partial[l] += data[i + l];
    }
    float sum = 0;
    for (float p : partial) sum += p;
    for (; i < n; ++i) sum += data[i];
    return sum;
  }
};

#if PE_RETRIEVER_X86

// ---------------------------------------------------------------------------
// Packing with 8 x 8 transposes (AVX2, also used by the AVX-512 kernel): each
// 64-byte line of a gallery row is read once and the panel is written in
// 32-byte pieces, about 4x faster than element-wise packing. It matters when
// few query panels share each packed chunk (tens of queries).

PE_TARGET_AVX2 inline __m256 load8_as_float(const float* p) { return _mm256_loadu_ps(p); }
PE_TARGET_AVX2 inline __m256 load8_as_float(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

/// Transposes the 8 x 8 block in r[0..8) and stores row i of the result at out + i * stride.
PE_TARGET_AVX2 inline void transpose8_store(__m256 r[8], float* out, int64_t stride) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  _mm256_store_ps(out + 0 * stride, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_store_ps(out + 1 * stride, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_store_ps(out + 2 * stride, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_store_ps(out + 3 * stride, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_store_ps(out + 4 * stride, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_store_ps(out + 5 * stride, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_store_ps(out + 6 * stride, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_store_ps(out + 7 * stride, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/// Packs `count` (<= NR) rows into [k][NR] with zero rows after `count`; `out`
/// must be 32-byte aligned and NR a multiple of 8.
template <int NR, class G>
PE_TARGET_AVX2 void pack_gallery_avx2(const G* rows, int64_t count, int64_t dim, float* out) {
  const int64_t full = dim / 16 * 16;
  for (int64_t k = 0; k < full; k += 16) {
    for (int64_t r0 = 0; r0 < NR; r0 += 8) {
      __m256 lo[8], hi[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        if (r0 + i < count) {
          const G* row = rows + (r0 + i) * dim + k;
          lo[i] = load8_as_float(row);
          hi[i] = load8_as_float(row + 8);
        } else {
          lo[i] = _mm256_setzero_ps();
          hi[i] = _mm256_setzero_ps();
        }
      }
      transpose8_store(lo, out + k * NR + r0, NR);
      transpose8_store(hi, out + (k + 8) * NR + r0, NR);
    }
  }
  for (int64_t k = full; k < dim; ++k) {
    for (int64_t j = 0; j < NR; ++j) out[k * NR + j] = j < count ? to_float(rows[j * dim + k]) : 0.0f;
  }
}

// ---------------------------------------------------------------------------
// AVX2 + FMA: the classic 6 x 16 tile (12 accumulators + 2 B vectors + 1
// broadcast = 15 of 16 ymm registers).

struct Avx2Kernel {
  static constexpr int MR = 6;
  static constexpr int NR = 16;

  template <class G>
  static void pack_gallery(const G* rows, int64_t count, int64_t dim, float* out) {
    pack_gallery_avx2<NR>(rows, count, dim, out);
  }

  PE_TARGET_AVX2 static bool tile(const float* a, const float* b, int64_t dim, const float* thresholds,
                                  uint32_t valid, float* tile_out, uint32_t* masks) {
    __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      c0[i] = _mm256_setzero_ps();
      c1[i] = _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < dim; ++k) {
      const __m256 b0 = _mm256_load_ps(b + k * NR);
      const __m256 b1 = _mm256_load_ps(b + k * NR + 8);
#pragma GCC unroll 6
      for (int i = 0; i < MR; ++i) {
        const __m256 x = _mm256_broadcast_ss(a + k * MR + i);
        c0[i] = _mm256_fmadd_ps(x, b0, c0[i]);
        c1[i] = _mm256_fmadd_ps(x, b1, c1[i]);
      }
    }
    uint32_t any = 0;
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 t = _mm256_broadcast_ss(thresholds + i);
      const auto lo = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(c0[i], t, _CMP_GE_OQ)));
      const auto hi = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(c1[i], t, _CMP_GE_OQ)));
      masks[i] = (lo | (hi << 8)) & valid;
      any |= masks[i];
    }
    if (any) {
#pragma GCC unroll 6
      for (int i = 0; i < MR; ++i) {
        _mm256_storeu_ps(tile_out + i * NR, c0[i]);
        _mm256_storeu_ps(tile_out + i * NR + 8, c1[i]);
      }
    }
    return any != 0;
  }

  PE_TARGET_AVX2 static inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
  PE_TARGET_AVX2 static inline __m256 load8(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  PE_TARGET_AVX2 static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  /// R rows x QB queries; the R rows stay in L1 while the query blocks pass.
  template <int R, int QB, class G>
  PE_TARGET_AVX2 static void dots(const G* rows, int64_t dim, const float* queries, int64_t query_stride,
                                  float* out, int64_t out_stride) {
    __m256 acc[QB][R];
#pragma GCC unroll 8
    for (int q = 0; q < QB; ++q) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[q][r] = _mm256_setzero_ps();
    }
    int64_t k = 0;
    for (; k + 8 <= dim; k += 8) {
      __m256 g[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) g[r] = load8(rows + r * dim + k);
#pragma GCC unroll 8
      for (int q = 0; q < QB; ++q) {
        const __m256 x = _mm256_loadu_ps(queries + q * query_stride + k);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[q][r] = _mm256_fmadd_ps(x, g[r], acc[q][r]);
      }
    }
#pragma GCC unroll 8
    for (int q = 0; q < QB; ++q) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        float sum = hsum(acc[q][r]);
        for (int64_t t = k; t < dim; ++t) sum += queries[q * query_stride + t] * to_float(rows[r * dim + t]);
        out[q * out_stride + r] = sum;
      }
    }
  }

  template <class G>
  PE_TARGET_AVX2 static void score_strip(const G* rows, int64_t count, int64_t dim, const float* queries,
                                         int64_t nq, int64_t query_stride, float* out) {
    int64_t r = 0;
    if (nq == 1) {
      for (; r + 8 <= count; r += 8) dots<8, 1>(rows + r * dim, dim, queries, query_stride, out + r, count);
    }
    for (; r + 4 <= count; r += 4) {
      int64_t q = 0;
      for (; q + 2 <= nq; q += 2) {
        dots<4, 2>(rows + r * dim, dim, queries + q * query_stride, query_stride, out + q * count + r, count);
      }
      if (q < nq) dots<4, 1>(rows + r * dim, dim, queries + q * query_stride, query_stride, out + q * count + r, count);
    }
    for (; r < count; ++r) {
      for (int64_t q = 0; q < nq; ++q) {
        dots<1, 1>(rows + r * dim, dim, queries + q * query_stride, query_stride, out + q * count + r, count);
      }
    }
  }

  PE_TARGET_AVX2 static void to_half(const float* in, int64_t n, uint16_t* out) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
    }
    for (; i < n; ++i) out[i] = float_to_half(in[i]);
  }

  PE_TARGET_AVX2 static float read_sum(const float* data, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
      s0 = _mm256_add_ps(s0, _mm256_loadu_ps(data + i));
      s1 = _mm256_add_ps(s1, _mm256_loadu_ps(data + i + 8));
      s2 = _mm256_add_ps(s2, _mm256_loadu_ps(data + i + 16));
      s3 = _mm256_add_ps(s3, _mm256_loadu_ps(data + i + 24));
    }
    float sum = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; ++i) sum += data[i];
    return sum;
  }
};

// ---------------------------------------------------------------------------
// AVX-512: a 14 x 32 tile (28 accumulators + 2 B vectors + 1 broadcast = 31 of
// 32 zmm registers). Per depth step: 2 aligned loads of the packed gallery panel
// and 14 broadcasts for 28 FMAs, so the two FMA pipes stay busy while the
// 128 KiB gallery panel streams from L2.

struct Avx512Kernel {
  static constexpr int MR = 14;
  static constexpr int NR = 32;

  // GCC 12's unmasked AVX-512 intrinsics that pass _mm512_undefined_*() (shuffle,
  // extract, cvtph/cvtps_ph, reduce_add) trip -Wuninitialized once inlined, so
  // the all-lanes masked forms with an explicit source are used instead.
  static constexpr __mmask16 kAll = 0xffff;

  PE_TARGET_AVX512 static inline float hsum(__m512 v) {
    __m512 t = _mm512_add_ps(v, _mm512_mask_shuffle_f32x4(v, kAll, v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    t = _mm512_add_ps(t, _mm512_mask_shuffle_f32x4(t, kAll, t, t, _MM_SHUFFLE(2, 3, 0, 1)));
    __m128 s = _mm512_mask_extractf32x4_ps(_mm_setzero_ps(), 0xff, t, 0);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  template <class G>
  static void pack_gallery(const G* rows, int64_t count, int64_t dim, float* out) {
    pack_gallery_avx2<NR>(rows, count, dim, out);
  }

  PE_TARGET_AVX512 static bool tile(const float* a, const float* b, int64_t dim, const float* thresholds,
                                    uint32_t valid, float* tile_out, uint32_t* masks) {
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i) {
      c0[i] = _mm512_setzero_ps();
      c1[i] = _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < dim; ++k) {
      const __m512 b0 = _mm512_load_ps(b + k * NR);
      const __m512 b1 = _mm512_load_ps(b + k * NR + 16);
      // The panel is read once per tile from L2; a software prefetch 16 steps
      // ahead hides L2 latency the hardware prefetcher leaves exposed.
      _mm_prefetch(reinterpret_cast<const char*>(b + k * NR + 16 * NR), _MM_HINT_T0);
#pragma GCC unroll 14
      for (int i = 0; i < MR; ++i) {
        const __m512 x = _mm512_set1_ps(a[k * MR + i]);
        c0[i] = _mm512_fmadd_ps(x, b0, c0[i]);
        c1[i] = _mm512_fmadd_ps(x, b1, c1[i]);
      }
    }
    uint32_t any = 0;
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i) {
      const __m512 t = _mm512_set1_ps(thresholds[i]);
      const auto lo = static_cast<uint32_t>(_mm512_cmp_ps_mask(c0[i], t, _CMP_GE_OQ));
      const auto hi = static_cast<uint32_t>(_mm512_cmp_ps_mask(c1[i], t, _CMP_GE_OQ));
      masks[i] = (lo | (hi << 16)) & valid;
      any |= masks[i];
    }
    if (any) {
#pragma GCC unroll 14
      for (int i = 0; i < MR; ++i) {
        _mm512_storeu_ps(tile_out + i * NR, c0[i]);
        _mm512_storeu_ps(tile_out + i * NR + 16, c1[i]);
      }
    }
    return any != 0;
  }

  PE_TARGET_AVX512 static inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
  PE_TARGET_AVX512 static inline __m512 load16(const uint16_t* p) {
    return _mm512_maskz_cvtph_ps(kAll, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  PE_TARGET_AVX512 static inline __m512 load16_masked(const float* p, __mmask16 mask) {
    return _mm512_maskz_loadu_ps(mask, p);
  }
  PE_TARGET_AVX512 static inline __m512 load16_masked(const uint16_t* p, __mmask16 mask) {
    alignas(32) uint16_t buffer[16] = {};
    for (int l = 0; l < 16; ++l) {
      if (mask & (1u << l)) buffer[l] = p[l];
    }
    return _mm512_maskz_cvtph_ps(kAll, _mm256_load_si256(reinterpret_cast<const __m256i*>(buffer)));
  }

  template <int R, int QB, class G>
  PE_TARGET_AVX512 static void dots(const G* rows, int64_t dim, const float* queries, int64_t query_stride,
                                    float* out, int64_t out_stride) {
    __m512 acc[QB][R];
#pragma GCC unroll 8
    for (int q = 0; q < QB; ++q) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[q][r] = _mm512_setzero_ps();
    }
    int64_t k = 0;
    for (; k + 16 <= dim; k += 16) {
      __m512 g[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) g[r] = load16(rows + r * dim + k);
#pragma GCC unroll 8
      for (int q = 0; q < QB; ++q) {
        const __m512 x = _mm512_loadu_ps(queries + q * query_stride + k);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[q][r] = _mm512_fmadd_ps(x, g[r], acc[q][r]);
      }
    }
    if (k < dim) {  // masked tail: zero lanes add nothing
      const auto mask = static_cast<__mmask16>((1u << (dim - k)) - 1u);
      __m512 g[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) g[r] = load16_masked(rows + r * dim + k, mask);
#pragma GCC unroll 8
      for (int q = 0; q < QB; ++q) {
        const __m512 x = _mm512_maskz_loadu_ps(mask, queries + q * query_stride + k);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[q][r] = _mm512_fmadd_ps(x, g[r], acc[q][r]);
      }
    }
#pragma GCC unroll 8
    for (int q = 0; q < QB; ++q) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) out[q * out_stride + r] = hsum(acc[q][r]);
    }
  }

  /// One row, one query: four accumulators keep the FMA latency hidden while
  /// the row streams in sequentially (the single-query path is bound by
  /// memory bandwidth; one stream per thread reads fastest here).
  template <class G>
  PE_TARGET_AVX512 static float dot_row(const G* row, const float* query, int64_t dim) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 64 <= dim; k += 64) {
      a0 = _mm512_fmadd_ps(load16(row + k), _mm512_loadu_ps(query + k), a0);
      a1 = _mm512_fmadd_ps(load16(row + k + 16), _mm512_loadu_ps(query + k + 16), a1);
      a2 = _mm512_fmadd_ps(load16(row + k + 32), _mm512_loadu_ps(query + k + 32), a2);
      a3 = _mm512_fmadd_ps(load16(row + k + 48), _mm512_loadu_ps(query + k + 48), a3);
    }
    for (; k + 16 <= dim; k += 16) a0 = _mm512_fmadd_ps(load16(row + k), _mm512_loadu_ps(query + k), a0);
    if (k < dim) {
      const auto mask = static_cast<__mmask16>((1u << (dim - k)) - 1u);
      a1 = _mm512_fmadd_ps(load16_masked(row + k, mask), _mm512_maskz_loadu_ps(mask, query + k), a1);
    }
    return hsum(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  }

  template <class G>
  PE_TARGET_AVX512 static void score_strip(const G* rows, int64_t count, int64_t dim, const float* queries,
                                           int64_t nq, int64_t query_stride, float* out) {
    int64_t r = 0;
    if (nq == 1) {
      for (; r < count; ++r) out[r] = dot_row(rows + r * dim, queries, dim);
      return;
    }
    for (; r + 4 <= count; r += 4) {
      int64_t q = 0;
      for (; q + 4 <= nq; q += 4) {
        dots<4, 4>(rows + r * dim, dim, queries + q * query_stride, query_stride, out + q * count + r, count);
      }
      switch (nq - q) {
        case 3: dots<4, 3>(rows + r * dim, dim, queries + q * query_stride, query_stride, out + q * count + r, count); break;
        case 2: dots<4, 2>(rows + r * dim, dim, queries + q * query_stride, query_stride, out + q * count + r, count); break;
        case 1: dots<4, 1>(rows + r * dim, dim, queries + q * query_stride, query_stride, out + q * count + r, count); break;
        default: break;
      }
    }
    for (; r < count; ++r) {
      for (int64_t q = 0; q < nq; ++q) {
        dots<1, 1>(rows + r * dim, dim, queries + q * query_stride, query_stride, out + q * count + r, count);
      }
    }
  }

  PE_TARGET_AVX512 static void to_half(const float* in, int64_t n, uint16_t* out) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const __m256i h =
          _mm512_maskz_cvtps_ph(kAll, _mm512_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), h);
    }
    for (; i < n; ++i) out[i] = float_to_half(in[i]);
  }

  PE_TARGET_AVX512 static float read_sum(const float* data, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
      s0 = _mm512_add_ps(s0, _mm512_loadu_ps(data + i));
      s1 = _mm512_add_ps(s1, _mm512_loadu_ps(data + i + 16));
      s2 = _mm512_add_ps(s2, _mm512_loadu_ps(data + i + 32));
      s3 = _mm512_add_ps(s3, _mm512_loadu_ps(data + i + 48));
    }
    float sum = hsum(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; i < n; ++i) sum += data[i];
    return sum;
  }
};

#endif  // PE_RETRIEVER_X86

/// Calls f(KernelType{}) for the kernel of `simd` (already resolved).
template <class F>
decltype(auto) with_kernel(Simd simd, F&& f) {
#if PE_RETRIEVER_X86
  if (simd == Simd::avx512) return f(Avx512Kernel{});
  if (simd == Simd::avx2) return f(Avx2Kernel{});
#endif
  (void)simd;
  return f(ScalarKernel{});
}

}  // namespace detail::retriever
}  // namespace pe
