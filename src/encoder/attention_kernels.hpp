#pragma once
// The encoder's vector kernels, one copy per instruction set: the fused RoPE attention
// behind the pe::rope_attention operator, the MLP's bias + GELU pass behind
// pe::bias_gelu_ and the bias add + LayerNorm behind pe::bias_layer_norm_ (all
// registered in attention_op.cpp). Torch-free: the kernel files
// are compiled with their ISA's flags (attention_kernels_avx2.cpp, _avx512.cpp),
// and nothing compiled with those flags may be an inline function or template
// the linker could pick for code that runs on an older CPU; so the kernels see
// raw pointers only, and only this plain header is shared.
//
// One call attends one head of one image: with q, k, v rows of `tokens` tokens,
//   out[i] = sum_j softmax_j(rope_q(q_i) . rope_k(k_j)) v_j
// where rope_* rotates adjacent pairs with the cos / signed-sin tables (the q table
// carries the 1/sqrt(head_dim) scale, as pe_core._rope_tables builds it). The
// scores of a block of query rows live in the caller's scratch (rows x tokens,
// tens of KiB: in L2), never as a tokens x tokens tensor.
//
// Thread safety: the kernels are pure functions of their arguments; concurrent
// calls need separate scratch and output rows.

#include <cstddef>
#include <cstdint>

namespace pe::detail::attention {

struct HeadArgs {
  const float* q = nullptr;  ///< token i's q at q + i * row_stride (head_dim floats)
  const float* k = nullptr;  ///< likewise
  const float* v = nullptr;  ///< likewise
  int64_t row_stride = 0;    ///< floats between tokens in q, k, v (3 * width for a fused qkv)
  /// Added to every token's q, k, v before anything else (head_dim floats each), or
  /// null: the in-projection's bias, which the Encoder leaves out of its qkv GEMM.
  const float* q_bias = nullptr;
  const float* k_bias = nullptr;
  const float* v_bias = nullptr;
  /// cos / signed-sin tables: token i's q entries at cos + i * table_stride, its k
  /// entries head_dim floats later (pe_core's [tokens, 2, 1, head_dim] layout).
  const float* cos = nullptr;
  const float* sin = nullptr;
  int64_t table_stride = 0;
  int tokens = 0;
  int head_dim = 0;      ///< even; a multiple of the kernel's vector width (see vector_width)
  float* out = nullptr;  ///< token i's output at out + i * out_stride
  int64_t out_stride = 0;
};

enum class Simd : int { scalar = 0, avx2 = 1, avx512 = 2 };

struct KernelSet {
  Simd simd;
  const char* name;
  int vector_width;  ///< floats per register: head_dim must be a multiple of it
  /// Floats of scratch one call needs for `tokens` and `head_dim`.
  size_t (*scratch_floats)(int tokens, int head_dim);
  void (*attend_head)(const HeadArgs& args, float* scratch);
  /// data[r][c] = GELU(data[r][c] + bias[c]) in place, rows x cols row-major floats, any
  /// cols; bias may be null (gelu_kernel_impl.hpp says how GELU is computed).
  void (*bias_gelu)(float* data, int64_t rows, int64_t cols, const float* bias);
  /// x[r] += bias (written back; bias may be null), then out[r] = LayerNorm(x[r]) with
  /// gamma, beta and eps, rows x cols row-major floats, any cols
  /// (layer_norm_kernel_impl.hpp says why one pass).
  void (*bias_layer_norm)(float* x, int64_t rows, int64_t cols, const float* bias, const float* gamma,
                          const float* beta, float eps, float* out);
};

const KernelSet& scalar_kernels();
#if PE_X86_KERNELS
const KernelSet& avx2_kernels();
const KernelSet& avx512_kernels();
#endif

}  // namespace pe::detail::attention
