#pragma once
// The fused attention kernel as a template over a vector type, included (inside an
// anonymous namespace, so every instantiation has internal linkage) by each
// attention_kernels_<isa>.cpp. See attention_kernels.hpp. Only the including file's
// intrinsics and plain C++ appear here: no standard-library templates, whose
// instantiations would be shared with baseline code by the linker.
//
// Per head: rotated K is packed transposed (head_dim x padded tokens) once; then
// blocks of kBlockRows query rows are rotated, their scores computed by a
// register-blocked kMr x (2 vectors) micro-kernel, softmaxed in place and
// multiplied into V by a kMr x (kAvVectors vectors) micro-kernel, and the rows are
// scaled by 1 / sum at the end (no second pass over the probabilities).

// Requires, from the includer: a struct V with
//   using reg; static constexpr int width;
//   reg zero(); reg load(const float*); void store(float*, reg); reg set1(float);
//   reg fma(reg a, reg b, reg c) (a * b + c); reg mul(reg, reg); reg sub(reg, reg);
//   reg max(reg, reg); reg exp(reg); float first(reg)
// and the constant kAvVectors (vectors of output columns per AV tile).

constexpr int kMr = 6;          // query rows per micro-tile
constexpr int kBlockRows = 48;  // query rows per block (a multiple of kMr)

inline int64_t padded_tokens(int tokens) {
  const int64_t step = 2 * V::width;
  return (tokens + step - 1) / step * step;
}

size_t scratch_floats(int tokens, int head_dim) {
  const int64_t np = padded_tokens(tokens);
  return static_cast<size_t>(head_dim * np + static_cast<int64_t>(tokens) * head_dim + kBlockRows * head_dim +
                             kBlockRows * np + kBlockRows);
}

// rotated[d] = t[d] * cos[d] + t[d ^ 1] * sin[d] (sin signed: -sin on even d).
inline float rotate(const float* t, const float* cos, const float* sin, int d) {
  return t[d] * cos[d] + t[d ^ 1] * sin[d];
}

template <int M>
void qk_tile(const float* qb, int head_dim, const float* kt, int64_t np, int64_t j0, float* scores) {
  typename V::reg acc[M][2];
  for (int m = 0; m < M; ++m) acc[m][0] = acc[m][1] = V::zero();
  for (int d = 0; d < head_dim; ++d) {
    const typename V::reg b0 = V::load(kt + d * np + j0);
    const typename V::reg b1 = V::load(kt + d * np + j0 + V::width);
    for (int m = 0; m < M; ++m) {
      const typename V::reg a = V::set1(qb[m * head_dim + d]);
      acc[m][0] = V::fma(a, b0, acc[m][0]);
      acc[m][1] = V::fma(a, b1, acc[m][1]);
    }
  }
  for (int m = 0; m < M; ++m) {
    V::store(scores + m * np + j0, acc[m][0]);
    V::store(scores + m * np + j0 + V::width, acc[m][1]);
  }
}

// vp: V packed contiguously, [tokens, head_dim].
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

template <int M>
void row_group(const float* qb, const float* kt, const float* vp, int64_t np, float* scores, float* inv_sum,
               const HeadArgs& a, int64_t row0) {
  for (int64_t j0 = 0; j0 < np; j0 += 2 * V::width) qk_tile<M>(qb, a.head_dim, kt, np, j0, scores);
  // Softmax of each row in place over the real tokens; the padding columns are never read.
  const int full = a.tokens / V::width * V::width;
  for (int m = 0; m < M; ++m) {
    float* s = scores + m * np;
    typename V::reg vmax = V::set1(s[0]);
    for (int j = 0; j < full; j += V::width) vmax = V::max(vmax, V::load(s + j));
    float lanes[V::width];
    V::store(lanes, vmax);
    float top = lanes[0];
    for (int l = 1; l < V::width; ++l) top = lanes[l] > top ? lanes[l] : top;
    for (int j = full; j < a.tokens; ++j) top = s[j] > top ? s[j] : top;
    const typename V::reg vtop = V::set1(top);
    typename V::reg vsum = V::zero();
    for (int j = 0; j < full; j += V::width) {
      const typename V::reg e = V::exp(V::sub(V::load(s + j), vtop));
      V::store(s + j, e);
      vsum = V::fma(e, V::set1(1.0f), vsum);
    }
    V::store(lanes, vsum);
    float sum = 0.0f;
    for (int l = 0; l < V::width; ++l) sum += lanes[l];
    for (int j = full; j < a.tokens; ++j) {
      s[j] = V::first(V::exp(V::set1(s[j] - top)));
      sum += s[j];
    }
    inv_sum[m] = 1.0f / sum;
  }
  av_rows<M>(scores, np, vp, a, inv_sum, row0);
}

void attend_head(const HeadArgs& a, float* scratch) {
  const int64_t np = padded_tokens(a.tokens);
  const int dim = a.head_dim;
  float* kt = scratch;                        // [dim, np]: rotated K, transposed, zero-padded
  float* vp = kt + dim * np;                  // [tokens, dim]: V, contiguous (its rows are 3 * width apart)
  float* qb = vp + static_cast<int64_t>(a.tokens) * dim;  // [kBlockRows, dim]: rotated q rows of a block
  float* scores = qb + kBlockRows * dim;      // [kBlockRows, np]
  float* inv_sum = scores + kBlockRows * np;  // [kBlockRows]
  for (int j = 0; j < a.tokens; ++j) {
    const float* k = a.k + j * a.row_stride;
    const float* cos = a.cos + j * a.table_stride + dim;
    const float* sin = a.sin + j * a.table_stride + dim;
    for (int d = 0; d < dim; ++d) kt[d * np + j] = rotate(k, cos, sin, d);
  }
  for (int d = 0; d < dim; ++d)
    for (int64_t j = a.tokens; j < np; ++j) kt[d * np + j] = 0.0f;
  for (int j = 0; j < a.tokens; ++j) {
    const float* v = a.v + j * a.row_stride;
    for (int d = 0; d < dim; ++d) vp[j * dim + d] = v[d];
  }
  for (int64_t row0 = 0; row0 < a.tokens; row0 += kBlockRows) {
    const int rows = static_cast<int>(a.tokens - row0 < kBlockRows ? a.tokens - row0 : kBlockRows);
    for (int r = 0; r < rows; ++r) {
      const float* q = a.q + (row0 + r) * a.row_stride;
      const float* cos = a.cos + (row0 + r) * a.table_stride;
      const float* sin = a.sin + (row0 + r) * a.table_stride;
      for (int d = 0; d < dim; ++d) qb[r * dim + d] = rotate(q, cos, sin, d);
    }
    for (int r = 0; r < rows; r += kMr) {
      const float* q = qb + r * dim;
      float* s = scores + r * np;
      float* inv = inv_sum + r;
      switch (rows - r < kMr ? rows - r : kMr) {
        case 1: row_group<1>(q, kt, vp, np, s, inv, a, row0 + r); break;
        case 2: row_group<2>(q, kt, vp, np, s, inv, a, row0 + r); break;
        case 3: row_group<3>(q, kt, vp, np, s, inv, a, row0 + r); break;
        case 4: row_group<4>(q, kt, vp, np, s, inv, a, row0 + r); break;
        case 5: row_group<5>(q, kt, vp, np, s, inv, a, row0 + r); break;
        default: row_group<kMr>(q, kt, vp, np, s, inv, a, row0 + r); break;
      }
    }
  }
}
