// One level of Strassen-Winograd for x W^T (see strassen.hpp).
//
// Notation: A = x [M, K], B = W^T [K, N], C = out, each split into 2 x 2 blocks of
// m = ceil(M/2) top rows (M - m bottom ones), k = K/2, n = N/2 columns. Winograd's sums
// and products:
//   S1 = A21 + A22, S2 = S1 - A11, S3 = A11 - A21, S4 = A12 - S2
//   T1 = B12 - B11, T2 = B22 - T1, T3 = B22 - B12, T4 = T2 - B21   (strassen_weights)
//   P1 = A11 B11, P2 = A12 B21, P3 = S4 B22, P4 = A22 T4, P5 = S1 T1, P6 = S2 T2, P7 = S3 T3
//   C11 = P1 + P2, C12 = U4 + P3, C21 = U2 + P7 - P4, C22 = U4 + P7,
//   where U2 = P1 + P6 and U4 = U2 + P5.
// The blocks of W^T are views of W (B11 = W11^T, B12 = W21^T, B21 = W12^T, B22 = W22^T
// for W split into rows [0, n), [n, N) and columns [0, k), [k, K)), so no copy of W is
// made; T1..T4 are stored transposed like W.

#include "encoder/strassen.hpp"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <initializer_list>
#include <vector>

#include "common/parallel.hpp"

namespace pe::detail {

namespace {

// Rows per thread below which a memory pass runs on the calling thread alone.
constexpr int64_t kMinRowsPerThread = 16;

// A plain row-major view of m x cols floats at p, with row stride ld.
at::Tensor view(float* p, int64_t m, int64_t cols, int64_t ld) {
  return at::from_blob(p, {m, cols}, {ld, 1}, at::TensorOptions().dtype(at::kFloat));
}

void plain_product(const at::Tensor& x, const at::Tensor& weight, at::Tensor& out, bool accumulate) {
  if (accumulate) {
    out.addmm_(x, weight.t());
  } else {
    at::mm_out(out, x, weight.t());
  }
}

}  // namespace

bool strassen_applies(const at::Tensor& weight) {
  return weight.dim() == 2 && weight.size(0) >= 2 && weight.size(1) >= 2 && weight.size(0) % 2 == 0 &&
         weight.size(1) % 2 == 0;
}

StrassenWeights strassen_weights(const at::Tensor& weight) {
  TORCH_CHECK(strassen_applies(weight) && weight.scalar_type() == at::kFloat,
              "strassen_weights: need a float32 [N, K] weight with N and K even, got ", weight.sizes());
  at::NoGradGuard no_grad;
  const int64_t n = weight.size(0) / 2, k = weight.size(1) / 2;
  const at::Tensor w11 = weight.narrow(0, 0, n).narrow(1, 0, k), w12 = weight.narrow(0, 0, n).narrow(1, k, k);
  const at::Tensor w21 = weight.narrow(0, n, n).narrow(1, 0, k), w22 = weight.narrow(0, n, n).narrow(1, k, k);
  StrassenWeights sums;
  sums.t1 = (w21 - w11).contiguous();       // B12 - B11
  sums.t2 = (w22 - sums.t1).contiguous();   // B22 - T1
  sums.t3 = (w22 - w21).contiguous();       // B22 - B12
  sums.t4 = (sums.t2 - w12).contiguous();   // T2 - B21
  return sums;
}

int64_t strassen_scratch_floats(int64_t rows, int64_t out_features, int64_t in_features) {
  const int64_t m = (rows + 1) / 2;
  return 2 * m * (out_features / 2) + 4 * m * (in_features / 2);
}

void strassen_linear(const at::Tensor& x, const at::Tensor& weight, const StrassenWeights& sums, at::Tensor& out,
                     bool accumulate, float* scratch) {
  // m top rows and `bottom` = rows - m bottom ones: an odd count's bottom half has a
  // virtual zero row, which only the sums see (its products are never stored), so that
  // no row needs a product of its own (one row alone would read the whole of W).
  const int64_t rows = x.size(0), n = weight.size(0) / 2, k = weight.size(1) / 2, m = (rows + 1) / 2;
  const int64_t bottom = rows - m;
  TORCH_INTERNAL_ASSERT(x.stride(1) == 1 && out.stride(1) == 1 && x.size(1) == 2 * k && out.size(1) == 2 * n &&
                        out.size(0) == rows && sums.defined());
  if (bottom == 0) {
    plain_product(x, weight, out, accumulate);
    return;
  }
  const int threads = at::get_num_threads();
  const float* a = x.data_ptr<float>();
  float* c = out.data_ptr<float>();
  const int64_t lda = x.stride(0), ldc = out.stride(0);
  float* tx = scratch;     // the running sum U2, then U4 [m, n]
  float* ty = tx + m * n;  // P7 [m, n]
  float* s = ty + m * n;   // S1..S4 [m, k] each
  float* s1 = s;
  float* s2 = s + m * k;
  float* s3 = s + 2 * m * k;
  float* s4 = s + 3 * m * k;

  // The activation sums, one pass over x.
  parallel_for(m, threads, kMinRowsPerThread, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float* top = a + i * lda;
      const float* low = i < bottom ? a + (m + i) * lda : nullptr;  // null: the virtual zero row
      float* r1 = s1 + i * k;
      float* r2 = s2 + i * k;
      float* r3 = s3 + i * k;
      float* r4 = s4 + i * k;
      for (int64_t j = 0; j < k; ++j) {
        const float a11 = top[j], a12 = top[k + j], a21 = low ? low[j] : 0.0f, a22 = low ? low[k + j] : 0.0f;
        const float sum1 = a21 + a22, sum2 = sum1 - a11;
        r1[j] = sum1;
        r2[j] = sum2;
        r3[j] = a11 - a21;
        r4[j] = a12 - sum2;
      }
    }
  });
  // One pass over src [m, n] into output blocks at (first row, first column), copying
  // (or adding when `add`): the blocks are read right after the GEMM that wrote src. A
  // bottom block has `bottom` rows: src's last row is the virtual row's when rows is odd.
  struct Block {
    int64_t row, column;
  };
  auto combine = [&](const float* src, std::initializer_list<Block> blocks, bool add) {
    parallel_for(m, threads, kMinRowsPerThread, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const float* from = src + i * n;
        for (const Block& block : blocks) {
          if (block.row + i >= rows) continue;
          float* to = c + (block.row + i) * ldc + block.column;
          if (add) {
            for (int64_t j = 0; j < n; ++j) to[j] += from[j];
          } else {
            for (int64_t j = 0; j < n; ++j) to[j] = from[j];
          }
        }
      }
    });
  };

  const at::Tensor a11 = x.narrow(0, 0, m).narrow(1, 0, k), a12 = x.narrow(0, 0, m).narrow(1, k, k);
  const at::Tensor a22 = x.narrow(0, m, bottom).narrow(1, k, k);
  const at::Tensor w11 = weight.narrow(0, 0, n).narrow(1, 0, k), w12 = weight.narrow(0, 0, n).narrow(1, k, k);
  const at::Tensor w22 = weight.narrow(0, n, n).narrow(1, k, k);
  at::Tensor c11 = out.narrow(0, 0, m).narrow(1, 0, n), c12 = out.narrow(0, 0, m).narrow(1, n, n);
  at::Tensor c21 = out.narrow(0, m, bottom).narrow(1, 0, n);
  at::Tensor u = view(tx, m, n, n), p7 = view(ty, m, n, n);
  const at::Tensor sum1 = view(s1, m, k, k), sum2 = view(s2, m, k, k), sum3 = view(s3, m, k, k);
  const at::Tensor sum4 = view(s4, m, k, k);

  at::mm_out(u, a11, w11.t());                 // u = P1
  combine(tx, {{0, 0}}, accumulate);           // C11 = P1
  c11.addmm_(a12, w12.t());                    // C11 = P1 + P2
  u.addmm_(sum2, sums.t2.t());                 // u = U2 = P1 + P6
  combine(tx, {{m, 0}}, accumulate);           // C21 = U2
  u.addmm_(sum1, sums.t1.t());                 // u = U4 = U2 + P5
  combine(tx, {{0, n}, {m, n}}, accumulate);   // C12 = C22 = U4
  at::mm_out(p7, sum3, sums.t3.t());           // P7
  combine(ty, {{m, 0}, {m, n}}, /*add=*/true); // C21 = U2 + P7, C22 = U4 + P7
  c12.addmm_(sum4, w22.t());                   // C12 = U4 + P3
  c21.addmm_(a22, sums.t4.t(), 1, -1);         // C21 = U2 + P7 - P4
}

namespace {

// The operators (below) check what the Encoder's own callers guarantee.
std::vector<at::Tensor> strassen_weights_op(const at::Tensor& weight) {
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == at::kFloat,
              "pe::strassen_weights: weight must be a float32 [N, K] tensor, got ", weight.scalar_type(), " ",
              weight.sizes());
  TORCH_CHECK(strassen_applies(weight), "pe::strassen_weights: N and K must be even (and >= 2), got ",
              weight.sizes());
  const StrassenWeights sums = strassen_weights(weight.contiguous());
  return {sums.t1, sums.t2, sums.t3, sums.t4};
}

at::Tensor& strassen_linear_op(const at::Tensor& x, const at::Tensor& weight, at::TensorList sums_list, at::Tensor& out,
                               bool accumulate, const c10::optional<at::Tensor>& scratch) {
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == at::kFloat && strassen_applies(weight),
              "pe::strassen_linear_out: weight must be float32 [N, K] with N and K even, got ", weight.sizes());
  const int64_t n = weight.size(0), k = weight.size(1);
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.size(1) == k && x.stride(1) == 1,
              "pe::strassen_linear_out: x must be float32 [M, ", k, "] with unit column stride, got ", x.sizes());
  TORCH_CHECK(out.dim() == 2 && out.scalar_type() == at::kFloat && out.size(0) == x.size(0) && out.size(1) == n &&
                  out.stride(1) == 1,
              "pe::strassen_linear_out: out must be float32 [", x.size(0), ", ", n,
              "] with unit column stride, got ", out.sizes());
  TORCH_CHECK(sums_list.size() == 4, "pe::strassen_linear_out: sums must be pe::strassen_weights(weight)'s 4 tensors");
  for (const at::Tensor& sum : sums_list) {
    TORCH_CHECK(sum.scalar_type() == at::kFloat && sum.is_contiguous() && sum.dim() == 2 && sum.size(0) == n / 2 &&
                    sum.size(1) == k / 2,
                "pe::strassen_linear_out: each of sums must be a contiguous float32 [", n / 2, ", ", k / 2,
                "] (pe::strassen_weights(weight)), got ", sum.sizes());
  }
  const StrassenWeights sums{sums_list[0], sums_list[1], sums_list[2], sums_list[3]};
  const int64_t needed = strassen_scratch_floats(x.size(0), n, k);
  at::Tensor buffer;
  if (scratch && scratch->defined()) {
    TORCH_CHECK(scratch->scalar_type() == at::kFloat && scratch->is_contiguous() && scratch->numel() >= needed,
                "pe::strassen_linear_out: scratch must be a contiguous float32 tensor of at least ", needed,
                " elements, got ", scratch->numel());
    buffer = *scratch;
  } else {
    buffer = at::empty({needed});
  }
  at::NoGradGuard no_grad;
  strassen_linear(x, weight.contiguous(), sums, out, accumulate, buffer.data_ptr<float>());
  return out;
}

int64_t strassen_scratch_floats_op(int64_t rows, int64_t n, int64_t k) { return strassen_scratch_floats(rows, n, k); }

}  // namespace

}  // namespace pe::detail

// For benchmarks/forward_breakdown.py and the tests; the Encoder calls the functions.
TORCH_LIBRARY_FRAGMENT(pe, m) {
  m.def("strassen_weights(Tensor weight) -> Tensor[]");
  m.def("strassen_scratch_floats(int rows, int n, int k) -> int", &pe::detail::strassen_scratch_floats_op);
  m.def("strassen_linear_out(Tensor x, Tensor weight, Tensor[] sums, Tensor(a!) out, bool accumulate=False, "
        "Tensor? scratch=None) -> Tensor(a!)");
}

TORCH_LIBRARY_IMPL(pe, CPU, m) {
  m.impl("strassen_weights", &pe::detail::strassen_weights_op);
  m.impl("strassen_linear_out", &pe::detail::strassen_linear_op);
}
