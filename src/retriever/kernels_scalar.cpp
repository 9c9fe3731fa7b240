// The portable kernel set: plain loops the compiler may vectorise with the
// baseline instruction set (see kernels.hpp).

#include <algorithm>

#include "retriever/kernels.hpp"

namespace pe::detail::kernels {
namespace {

constexpr int MR = 4;
constexpr int NR = 8;

inline float to_float(float value) { return value; }
inline float to_float(uint16_t value) { return half_to_float(value); }

// Blocks over k so the 64 x NR destination block stays in L1.
template <class G>
void pack_gallery(const G* rows, int64_t count, int64_t dim, float* out) {
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

bool tile(const float* a, const float* b, int64_t dim, const float* thresholds, uint32_t valid, float* tile_out,
          uint32_t* masks) {
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
void score_strip(const G* rows, int64_t count, int64_t dim, const float* queries, int64_t nq, int64_t query_stride,
                 float* out) {
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

void to_half(const float* in, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = float_to_half(in[i]);
}

float read_sum(const float* data, int64_t n) {
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

constexpr KernelSet kScalar{Simd::scalar,           MR,   NR,         pack_gallery<float>, pack_gallery<uint16_t>,
                            tile,                   score_strip<float>, score_strip<uint16_t>, to_half, read_sum};

}  // namespace

const KernelSet& scalar_kernels() { return kScalar; }

}  // namespace pe::detail::kernels
