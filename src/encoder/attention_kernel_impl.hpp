#pragma once
// The fused attention kernel as a template over a vector type, included (inside an
// anonymous namespace, so every instantiation has internal linkage) by each
// attention_kernels_<isa>.cpp. See attention_kernels.hpp. Only the including file's
// intrinsics and plain C++ appear here: no standard-library templates, whose
// instantiations would be shared with baseline code by the linker.
//
// Per head (q, k and v first get the in-projection's bias when the caller passes it, so
// that the qkv GEMM need not start from a copy of it): K is rotated a vector at a time
// and packed transposed in tiles of kTile key columns (each tile dim x kTile floats,
// contiguous, so the QK micro-kernel reads one sequential stream); V is copied contiguous. Then blocks of kBlockRows
// query rows are rotated, their scores computed by a register-blocked
// kQkRows x (2 vectors) micro-kernel that also keeps each row's running maximum,
// exponentiated in place with their sum, and multiplied into V by a
// kAvRows x (kAvVectors vectors) micro-kernel; the rows are scaled by 1 / sum at the
// end (no second pass over the probabilities).
//
// The q, k and v rows of consecutive tokens are a fused qkv row apart (12 KiB for L14),
// so each token's head slice is on its own page, where the hardware prefetchers do not
// follow; the packing loops prefetch kPrefetchRows tokens ahead into L2.
//
// Measured on one L14 image (16 heads of 577 tokens, one thread, Intel Xeon with
// AVX-512) against the kernel before this layout (K transposed as one dim x tokens
// panel, scalar rotation, no prefetch, a separate pass for each row's maximum, one
// micro-tile height for QK and AV, floor-and-shift exp): 16.0 -> 10.7 ms with AVX-512,
// 21.7 -> 16.7 ms with AVX2. Of the 10.7 ms, QK and AV take 8.7 (about 150 GFLOP/s,
// near the core's FMA peak), packing and rotation 1.3, the softmax 1.3.

// Requires, from the includer: a struct V with
//   using reg; static constexpr int width;
//   reg zero(); reg load(const float*); void store(float*, reg); reg set1(float);
//   reg fma(reg a, reg b, reg c) (a * b + c); reg mul(reg, reg); reg sub(reg, reg);
//   reg max(reg, reg); reg exp(reg); float first(reg);
//   reg add(reg, reg); reg swap_pairs(reg) (lanes 2i and 2i + 1 exchanged; only for width >= 2)
// and the constants kQkRows (query rows per QK micro-tile), kAvRows (per AV micro-tile)
// and kAvVectors (vectors of output columns per AV micro-tile).

constexpr int kBlockRows = 48;  // query rows per block: a multiple of kQkRows and kAvRows
constexpr int kTile = 2 * V::width;  // key columns per QK micro-tile
constexpr int kPrefetchRows = 32;  // tokens ahead (8 and 16 were slower)
static_assert(kBlockRows % kQkRows == 0 && kBlockRows % kAvRows == 0, "blocks are whole micro-tiles");

inline int64_t padded_tokens(int tokens) { return (tokens + kTile - 1) / kTile * kTile; }

size_t scratch_floats(int tokens, int head_dim) {
  const int64_t np = padded_tokens(tokens);
  return static_cast<size_t>(head_dim * np + static_cast<int64_t>(tokens) * head_dim + kBlockRows * head_dim +
                             kBlockRows * np + 2 * kBlockRows + kTile * head_dim);
}

inline void prefetch_row(const float* row, int floats) {
  const char* bytes = reinterpret_cast<const char*>(row);
  for (int offset = 0; offset < floats * static_cast<int>(sizeof(float)); offset += 64) {
    __builtin_prefetch(bytes + offset, /*read*/ 0, /*into L2*/ 2);
  }
}

// out[d] = u[d] * cos[d] + u[d ^ 1] * sin[d] with u = t + bias (sin signed: -sin on even
// d; bias may be null). A template so that the scalar kernel's V needs no swap_pairs.
template <typename W = V>
void rotate_row(const float* t, const float* bias, const float* cos, const float* sin, float* out, int dim) {
  if constexpr (W::width >= 2) {
    for (int d = 0; d < dim; d += W::width) {
      typename W::reg x = W::load(t + d);
      if (bias) x = W::add(x, W::load(bias + d));
      W::store(out + d, W::fma(x, W::load(cos + d), W::mul(W::swap_pairs(x), W::load(sin + d))));
    }
  } else {
    for (int d = 0; d < dim; ++d) {
      const float even = t[d] + (bias ? bias[d] : 0.0f), odd = t[d ^ 1] + (bias ? bias[d ^ 1] : 0.0f);
      out[d] = even * cos[d] + odd * sin[d];
    }
  }
}

inline float horizontal_max(typename V::reg x) {
  float lanes[V::width];
  V::store(lanes, x);
  float top = lanes[0];
  for (int l = 1; l < V::width; ++l) top = lanes[l] > top ? lanes[l] : top;
  return top;
}

// Rotated K, transposed into tiles (tile t: kt + t * dim * kTile, [dim][kTile], padding
// columns zero), and V copied contiguous ([tokens][dim]).
void pack_keys_values(const HeadArgs& a, float* kt, float* vp, float* rows) {
  const int dim = a.head_dim;
  for (int j0 = 0; j0 < a.tokens; j0 += kTile) {
    const int count = a.tokens - j0 < kTile ? a.tokens - j0 : kTile;
    for (int jj = 0; jj < count; ++jj) {
      const int j = j0 + jj;
      if (j + kPrefetchRows < a.tokens) {
        prefetch_row(a.k + (j + kPrefetchRows) * a.row_stride, dim);
        prefetch_row(a.v + (j + kPrefetchRows) * a.row_stride, dim);
      }
      const float* k = a.k + j * a.row_stride;
      const float* table = a.cos + j * a.table_stride + dim;  // k's entries follow q's
      rotate_row(k, a.k_bias, table, a.sin + j * a.table_stride + dim, rows + jj * dim, dim);
      const float* v = a.v + j * a.row_stride;
      for (int d = 0; d < dim; d += V::width) {
        typename V::reg x = V::load(v + d);
        if (a.v_bias) x = V::add(x, V::load(a.v_bias + d));
        V::store(vp + j * dim + d, x);
      }
    }
    float* tile = kt + static_cast<int64_t>(j0) * dim;
    for (int d = 0; d < dim; ++d) {
      for (int jj = 0; jj < count; ++jj) tile[d * kTile + jj] = rows[jj * dim + d];
      for (int jj = count; jj < kTile; ++jj) tile[d * kTile + jj] = 0.0f;
    }
  }
}

// scores[m][j0 .. j0 + kTile) = q_m . k_j for M query rows; with `maxima`, each row's
// running maximum is updated in registers (the caller passes it only for full tiles, so
// that padding columns never count).
template <int M>
void qk_tile(const float* qb, int dim, const float* tile, float* scores, int64_t np, int64_t j0,
             typename V::reg* maxima) {
  typename V::reg acc[M][2];
  for (int m = 0; m < M; ++m) acc[m][0] = acc[m][1] = V::zero();
  for (int d = 0; d < dim; ++d) {
    const typename V::reg b0 = V::load(tile + d * kTile);
    const typename V::reg b1 = V::load(tile + d * kTile + V::width);
    for (int m = 0; m < M; ++m) {
      const typename V::reg q = V::set1(qb[m * dim + d]);
      acc[m][0] = V::fma(q, b0, acc[m][0]);
      acc[m][1] = V::fma(q, b1, acc[m][1]);
    }
  }
  for (int m = 0; m < M; ++m) {
    V::store(scores + m * np + j0, acc[m][0]);
    V::store(scores + m * np + j0 + V::width, acc[m][1]);
    if (maxima) maxima[m] = V::max(maxima[m], V::max(acc[m][0], acc[m][1]));
  }
}

// Scores of M query rows against every key, and each row's maximum over the real tokens.
template <int M>
void qk_rows(const float* qb, const float* kt, const HeadArgs& a, int64_t np, float* scores, float* row_max) {
  typename V::reg maxima[M];
  for (int m = 0; m < M; ++m) maxima[m] = V::set1(-3.4e38f);
  const int full = a.tokens / kTile * kTile;
  for (int j0 = 0; j0 < full; j0 += kTile) {
    qk_tile<M>(qb, a.head_dim, kt + static_cast<int64_t>(j0) * a.head_dim, scores, np, j0, maxima);
  }
  if (full < a.tokens) qk_tile<M>(qb, a.head_dim, kt + static_cast<int64_t>(full) * a.head_dim, scores, np, full, nullptr);
  for (int m = 0; m < M; ++m) {
    float top = horizontal_max(maxima[m]);
    for (int j = full; j < a.tokens; ++j) top = scores[m * np + j] > top ? scores[m * np + j] : top;
    row_max[m] = top;
  }
}

// out rows = probs . V for M rows and C vectors of columns from d0, scaled by 1 / sum.
template <int M, int C>
void av_tile(const float* probs, int64_t np, const float* vp, const HeadArgs& a, int64_t d0, const float* inv_sum,
             int64_t row0) {
  typename V::reg acc[M][C];
  for (int m = 0; m < M; ++m)
    for (int c = 0; c < C; ++c) acc[m][c] = V::zero();
  const float* v = vp + d0;
  for (int j = 0; j < a.tokens; ++j) {
    typename V::reg b[C];
    for (int c = 0; c < C; ++c) b[c] = V::load(v + j * a.head_dim + c * V::width);
    for (int m = 0; m < M; ++m) {
      const typename V::reg p = V::set1(probs[m * np + j]);
      for (int c = 0; c < C; ++c) acc[m][c] = V::fma(p, b[c], acc[m][c]);
    }
  }
  for (int m = 0; m < M; ++m) {
    const typename V::reg scale = V::set1(inv_sum[m]);
    float* out = a.out + (row0 + m) * a.out_stride + d0;
    for (int c = 0; c < C; ++c) V::store(out + c * V::width, V::mul(acc[m][c], scale));
  }
}

template <int M>
void av_rows(const float* probs, int64_t np, const float* vp, const HeadArgs& a, const float* inv_sum, int64_t row0) {
  const int vectors = a.head_dim / V::width;
  int c = 0;
  for (; c + kAvVectors <= vectors; c += kAvVectors) {
    av_tile<M, kAvVectors>(probs, np, vp, a, static_cast<int64_t>(c) * V::width, inv_sum, row0);
  }
  for (; c < vectors; ++c) av_tile<M, 1>(probs, np, vp, a, static_cast<int64_t>(c) * V::width, inv_sum, row0);
}

// The last, partial micro-tile of a block: `rows` < M rows, by the largest instantiation
// that fits exactly.
template <int M>
void qk_partial(int rows, const float* qb, const float* kt, const HeadArgs& a, int64_t np, float* scores,
                float* row_max) {
  if (rows == M) return qk_rows<M>(qb, kt, a, np, scores, row_max);
  if constexpr (M > 1) qk_partial<M - 1>(rows, qb, kt, a, np, scores, row_max);
}

template <int M>
void av_partial(int rows, const float* probs, int64_t np, const float* vp, const HeadArgs& a, const float* inv_sum,
                int64_t row0) {
  if (rows == M) return av_rows<M>(probs, np, vp, a, inv_sum, row0);
  if constexpr (M > 1) av_partial<M - 1>(rows, probs, np, vp, a, inv_sum, row0);
}

// exp(s - max) in place over the real tokens (padding columns are never read), and
// 1 / the row's sum.
inline float softmax_row(float* s, int tokens, float top) {
  const int full = tokens / V::width * V::width;
  const typename V::reg vtop = V::set1(top);
  typename V::reg vsum = V::zero();
  for (int j = 0; j < full; j += V::width) {
    const typename V::reg e = V::exp(V::sub(V::load(s + j), vtop));
    V::store(s + j, e);
    vsum = V::fma(e, V::set1(1.0f), vsum);
  }
  float lanes[V::width];
  V::store(lanes, vsum);
  float sum = 0.0f;
  for (int l = 0; l < V::width; ++l) sum += lanes[l];
  for (int j = full; j < tokens; ++j) {
    s[j] = V::first(V::exp(V::set1(s[j] - top)));
    sum += s[j];
  }
  return 1.0f / sum;
}

void attend_head(const HeadArgs& a, float* scratch) {
  const int64_t np = padded_tokens(a.tokens);
  const int dim = a.head_dim;
  float* kt = scratch;                                    // [np / kTile][dim][kTile]: rotated K, tiled
  float* vp = kt + dim * np;                              // [tokens][dim]: V, contiguous
  float* qb = vp + static_cast<int64_t>(a.tokens) * dim;  // [kBlockRows][dim]: rotated q rows of a block
  float* scores = qb + kBlockRows * dim;                  // [kBlockRows][np]
  float* row_max = scores + kBlockRows * np;              // [kBlockRows]
  float* inv_sum = row_max + kBlockRows;                  // [kBlockRows]
  float* rows = inv_sum + kBlockRows;                     // [kTile][dim]: rotated K rows of one tile
  pack_keys_values(a, kt, vp, rows);
  for (int64_t row0 = 0; row0 < a.tokens; row0 += kBlockRows) {
    const int block = static_cast<int>(a.tokens - row0 < kBlockRows ? a.tokens - row0 : kBlockRows);
    for (int r = 0; r < block; ++r) {
      const int64_t i = row0 + r;
      if (i + kPrefetchRows < a.tokens) prefetch_row(a.q + (i + kPrefetchRows) * a.row_stride, dim);
      rotate_row(a.q + i * a.row_stride, a.q_bias, a.cos + i * a.table_stride, a.sin + i * a.table_stride, qb + r * dim,
                 dim);
    }
    int r = 0;
    for (; r + kQkRows <= block; r += kQkRows) qk_rows<kQkRows>(qb + r * dim, kt, a, np, scores + r * np, row_max + r);
    if (r < block) qk_partial<kQkRows - 1>(block - r, qb + r * dim, kt, a, np, scores + r * np, row_max + r);
    for (r = 0; r < block; ++r) inv_sum[r] = softmax_row(scores + r * np, a.tokens, row_max[r]);
    for (r = 0; r + kAvRows <= block; r += kAvRows) av_rows<kAvRows>(scores + r * np, np, vp, a, inv_sum + r, row0 + r);
    if (r < block) av_partial<kAvRows - 1>(block - r, scores + r * np, np, vp, a, inv_sum + r, row0 + r);
  }
}
