// The AVX-512 kernel set, compiled with -mavx512f -mavx2 -mfma -mf16c
// (CMakeLists.txt) and only called after the CPU (and OS) reported support.
// Everything here has internal linkage: see kernels.hpp for why. Gallery
// packing is the AVX2 transposing packer (kernels_avx2.cpp).

#include <immintrin.h>

#include <cstdint>

#include "retriever/kernels.hpp"

namespace pe::detail::kernels {
namespace {

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

  static inline float hsum(__m512 v) {
    __m512 t = _mm512_add_ps(v, _mm512_mask_shuffle_f32x4(v, kAll, v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    t = _mm512_add_ps(t, _mm512_mask_shuffle_f32x4(t, kAll, t, t, _MM_SHUFFLE(2, 3, 0, 1)));
    __m128 s = _mm512_mask_extractf32x4_ps(_mm_setzero_ps(), 0xff, t, 0);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  static bool tile(const float* a, const float* b, int64_t dim, const float* thresholds,
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

  static inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
  static inline __m512 load16(const uint16_t* p) {
    return _mm512_maskz_cvtph_ps(kAll, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static inline __m512 load16_masked(const float* p, __mmask16 mask) {
    return _mm512_maskz_loadu_ps(mask, p);
  }
  static inline __m512 load16_masked(const uint16_t* p, __mmask16 mask) {
    alignas(32) uint16_t buffer[16] = {};
    for (int l = 0; l < 16; ++l) {
      if (mask & (1u << l)) buffer[l] = p[l];
    }
    return _mm512_maskz_cvtph_ps(kAll, _mm256_load_si256(reinterpret_cast<const __m256i*>(buffer)));
  }

  template <int R, int QB, class G>
  static void dots(const G* rows, int64_t dim, const float* queries, int64_t query_stride,
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
  static float dot_row(const G* row, const float* query, int64_t dim) {
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
  static void score_strip(const G* rows, int64_t count, int64_t dim, const float* queries,
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

  static void to_half(const float* in, int64_t n, uint16_t* out) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const __m256i h =
          _mm512_maskz_cvtps_ph(kAll, _mm512_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), h);
    }
    for (; i < n; ++i) out[i] = float_to_half(in[i]);
  }

  static float read_sum(const float* data, int64_t n) {
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

constexpr KernelSet kAvx512{Simd::avx512,
                            Avx512Kernel::MR,
                            Avx512Kernel::NR,
                            pack_gallery_avx2_nr32_f32,
                            pack_gallery_avx2_nr32_f16,
                            Avx512Kernel::tile,
                            Avx512Kernel::score_strip<float>,
                            Avx512Kernel::score_strip<uint16_t>,
                            Avx512Kernel::to_half,
                            Avx512Kernel::read_sum};

}  // namespace

const KernelSet& avx512_kernels() { return kAvx512; }

}  // namespace pe::detail::kernels
