// The AVX2 + FMA kernel set, compiled with -mavx2 -mfma -mf16c (CMakeLists.txt)
// and only called after the CPU reported support. Everything here has internal
// linkage: see kernels.hpp for why.

#include <immintrin.h>

#include <cstdint>

#include "retriever/kernels.hpp"

namespace pe::detail::kernels {
namespace {

inline float to_float(float value) { return value; }
inline float to_float(uint16_t value) { return half_to_float(value); }

// ---------------------------------------------------------------------------
// Packing with 8 x 8 transposes (AVX2, also used by the AVX-512 kernel): each
// 64-byte line of a gallery row is read once and the panel is written in
// 32-byte pieces, about 4x faster than element-wise packing. It matters when
// few query panels share each packed chunk (tens of queries).

__m256 load8_as_float(const float* p) { return _mm256_loadu_ps(p); }
__m256 load8_as_float(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

/// Transposes the 8 x 8 block in r[0..8) and stores row i of the result at out + i * stride.
void transpose8_store(__m256 r[8], float* out, int64_t stride) {
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
void pack_gallery_transposing(const G* rows, int64_t count, int64_t dim, float* out) {
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
    pack_gallery_transposing<NR>(rows, count, dim, out);
  }

  static bool tile(const float* a, const float* b, int64_t dim, const float* thresholds,
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

  static inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
  static inline __m256 load8(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  /// R rows x QB queries; the R rows stay in L1 while the query blocks pass.
  template <int R, int QB, class G>
  static void dots(const G* rows, int64_t dim, const float* queries, int64_t query_stride,
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
  static void score_strip(const G* rows, int64_t count, int64_t dim, const float* queries,
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

  static void to_half(const float* in, int64_t n, uint16_t* out) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
    }
    for (; i < n; ++i) out[i] = float_to_half(in[i]);
  }

  static float read_sum(const float* data, int64_t n) {
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

template <class G>
void pack_gallery_16(const G* rows, int64_t count, int64_t dim, float* out) {
  pack_gallery_transposing<16>(rows, count, dim, out);
}

constexpr KernelSet kAvx2{Simd::avx2,
                          Avx2Kernel::MR,
                          Avx2Kernel::NR,
                          pack_gallery_16<float>,
                          pack_gallery_16<uint16_t>,
                          Avx2Kernel::tile,
                          Avx2Kernel::score_strip<float>,
                          Avx2Kernel::score_strip<uint16_t>,
                          Avx2Kernel::to_half,
                          Avx2Kernel::read_sum};

}  // namespace

const KernelSet& avx2_kernels() { return kAvx2; }

void pack_gallery_avx2_nr32_f32(const float* rows, int64_t count, int64_t dim, float* out) {
  pack_gallery_transposing<32>(rows, count, dim, out);
}
void pack_gallery_avx2_nr32_f16(const uint16_t* rows, int64_t count, int64_t dim, float* out) {
  pack_gallery_transposing<32>(rows, count, dim, out);
}

}  // namespace pe::detail::kernels
