// The pe::rope_attention, pe::bias_gelu_ and pe::bias_layer_norm_ operators: argument
// checks, kernel choice, threads, and their registration with the dispatcher (see
// attention.hpp and docs/encoder_speed.md).
//
// Why an operator that the exported files never call: TorchScript resolves every
// operator a saved file names when the file is loaded, so a model that called
// torch.ops.pe.rope_attention would fail to load in plain PyTorch (and in any
// LibTorch without this library). The export tool therefore writes the plain
// bmm/softmax model, and pe::Encoder swaps the fused kernel in at load time by
// running its own forward over the file's weights (forward.cpp); Python reaches the
// same kernel as torch.ops.pe.rope_attention for tests, benchmarks and its own use.

#include "encoder/attention.hpp"

#include <ATen/Functions.h>
#include <ATen/Parallel.h>
#include <ATen/core/op_registration/op_registration.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "common/denormals.hpp"
#include "common/parallel.hpp"
#include "encoder/attention_kernels.hpp"

namespace pe::detail {

namespace {

using attention::KernelSet;
using attention::Simd;

constexpr size_t kCacheLineFloats = 64 / sizeof(float);

Simd detect_simd() {
#if PE_X86_KERNELS
  __builtin_cpu_init();
  // libgcc's avx512f bit also checks that the OS saves the zmm state.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return Simd::avx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Simd::avx2;
#endif
  return Simd::scalar;
}

Simd parse_simd(const std::string& text, Simd otherwise) {
  if (text == "scalar") return Simd::scalar;
  if (text == "avx2") return Simd::avx2;
  if (text == "avx512") return Simd::avx512;
  return otherwise;
}

// What this CPU supports, capped by PE_ENCODER_SIMD (to see an older CPU's speed and
// results on a newer one).
Simd supported_simd() {
  static const Simd level = [] {
    Simd detected = detect_simd();
    if (const char* cap = std::getenv("PE_ENCODER_SIMD")) {
      const Simd wanted = parse_simd(cap, detected);
      if (static_cast<int>(wanted) < static_cast<int>(detected)) detected = wanted;
    }
    return detected;
  }();
  return level;
}

const KernelSet& kernels_for(Simd simd) {
#if PE_X86_KERNELS
  if (simd == Simd::avx512) return attention::avx512_kernels();
  if (simd == Simd::avx2) return attention::avx2_kernels();
#endif
  (void)simd;
  return attention::scalar_kernels();
}

// The widest kernel this CPU has, capped by `simd`, whose vector width divides
// `head_dim`; head_dim 0: any width (for kernels that take a partial last vector).
const KernelSet& choose(int64_t head_dim, const std::string& simd, const char* op = "pe::rope_attention") {
  TORCH_CHECK(simd == "best" || simd == "scalar" || simd == "avx2" || simd == "avx512", op,
              ": simd must be best, avx512, avx2 or scalar, got \"", simd, "\"");
  int level = static_cast<int>(supported_simd());
  if (simd != "best") level = std::min(level, static_cast<int>(parse_simd(simd, Simd::scalar)));
  for (; level > 0; --level) {
    const KernelSet& set = kernels_for(static_cast<Simd>(level));
    if (head_dim % set.vector_width == 0) return set;
  }
  return attention::scalar_kernels();
}

// `bias` undefined, or a float32 CPU vector of `size` elements (`what` says which
// dimension of the input it must match).
void check_bias(const at::Tensor& bias, int64_t size, const char* name, const char* what) {
  TORCH_CHECK(!bias.defined() ||
                  (bias.device().is_cpu() && bias.scalar_type() == at::kFloat && bias.dim() == 1 && bias.size(0) == size),
              name, " must be a float32 CPU vector of ", size, " elements (", what, "), got ",
              bias.defined() ? bias.sizes() : at::IntArrayRef{});
}

void check_arguments(const at::Tensor& qkv, const at::Tensor& cos_qk, const at::Tensor& sin_qk, int64_t heads) {
  TORCH_CHECK(qkv.device().is_cpu() && qkv.scalar_type() == at::kFloat && qkv.dim() == 3,
              "pe::rope_attention: qkv must be a float32 CPU tensor [B, N, 3 * width], got ", qkv.scalar_type(), " ",
              qkv.device(), " of shape ", qkv.sizes());
  TORCH_CHECK(heads > 0 && qkv.size(2) % (3 * heads) == 0,
              "pe::rope_attention: the last dimension of qkv (", qkv.size(2), ") must be 3 * heads * head_dim for heads = ",
              heads);
  const int64_t head_dim = qkv.size(2) / (3 * heads);
  TORCH_CHECK(head_dim % 2 == 0, "pe::rope_attention: head_dim ", head_dim, " must be even (RoPE rotates pairs)");
  TORCH_CHECK(qkv.size(1) > 0 && qkv.size(1) < (1 << 24), "pe::rope_attention: ", qkv.size(1),
              " tokens; must be between 1 and 2^24");
  for (const at::Tensor* table : {&cos_qk, &sin_qk}) {
    TORCH_CHECK(table->device().is_cpu() && table->scalar_type() == at::kFloat &&
                    table->numel() == qkv.size(1) * 2 * head_dim && table->size(0) == qkv.size(1),
                "pe::rope_attention: cos_qk and sin_qk must be float32 CPU tables [N, 2, 1, head_dim] = [",
                qkv.size(1), ", 2, 1, ", head_dim, "], got ", table->scalar_type(), " of shape ", table->sizes());
  }
}

at::Tensor rope_attention(const at::Tensor& qkv, const at::Tensor& cos_qk, const at::Tensor& sin_qk, int64_t heads,
                          c10::string_view simd, const c10::optional<at::Tensor>& qkv_bias) {
  check_arguments(qkv, cos_qk, sin_qk, heads);
  at::Tensor out = at::empty({qkv.size(0), qkv.size(1), qkv.size(2) / 3}, qkv.options());
  rope_attention_out(qkv, cos_qk, sin_qk, heads, std::string(simd), out, qkv_bias ? *qkv_bias : at::Tensor());
  return out;
}

at::Tensor& bias_gelu_op(at::Tensor& x, const c10::optional<at::Tensor>& bias, c10::string_view simd) {
  bias_gelu_(x, bias ? *bias : at::Tensor(), std::string(simd));
  return x;
}

at::Tensor bias_layer_norm_op(at::Tensor& x, const c10::optional<at::Tensor>& bias, const at::Tensor& weight,
                              const at::Tensor& ln_bias, double eps, c10::string_view simd) {
  at::Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
  bias_layer_norm_out(x, bias ? *bias : at::Tensor(), weight, ln_bias, eps, out, std::string(simd));
  return out;
}

std::string rope_attention_kernel_op(int64_t head_dim, c10::string_view simd) {
  return rope_attention_kernel(head_dim, std::string(simd));
}

}  // namespace

void rope_attention_out(const at::Tensor& qkv_in, const at::Tensor& cos_in, const at::Tensor& sin_in, int64_t heads,
                        const std::string& simd, at::Tensor& out, const at::Tensor& qkv_bias_in) {
  check_arguments(qkv_in, cos_in, sin_in, heads);
  check_bias(qkv_bias_in, qkv_in.size(2), "pe::rope_attention: qkv_bias", "qkv's last dimension");
  const at::Tensor qkv_bias = qkv_bias_in.defined() ? qkv_bias_in.contiguous() : qkv_bias_in;
  const float* bias = qkv_bias.defined() ? qkv_bias.data_ptr<float>() : nullptr;
  const at::Tensor qkv = qkv_in.contiguous();
  const at::Tensor cos = cos_in.contiguous();
  const at::Tensor sin = sin_in.contiguous();
  const int64_t batch = qkv.size(0), tokens = qkv.size(1), width = qkv.size(2) / 3, head_dim = width / heads;
  TORCH_CHECK(out.is_contiguous() && out.scalar_type() == at::kFloat && out.numel() == batch * tokens * width,
              "pe::rope_attention: out must be a contiguous float32 tensor of ", batch * tokens * width, " elements");
  const KernelSet& kernels = choose(head_dim, simd);
  const float* base = qkv.data_ptr<float>();
  float* target = out.data_ptr<float>();
  const size_t scratch_size = kernels.scratch_floats(static_cast<int>(tokens), static_cast<int>(head_dim));
  // One task per image and head: 48 for a micro-batch of 3 L14 images; each task's K, V
  // and score block stay in the core's L2. On LibTorch's thread count, but on plain
  // threads (common/parallel.hpp), not at::parallel_for: that is a header template whose
  // OpenMP pragma only works in a file compiled with -fopenmp, and without it ran every
  // head on the calling thread (measured: 2 threads as slow as 1). Compiling this file
  // with -fopenmp would tie it to one OpenMP runtime; plain threads work with any.
  detail::parallel_for(batch * heads, at::get_num_threads(), 1, [&](int64_t begin, int64_t end) {
    // Probabilities of scores far below their row's maximum are denormal, and each
    // operation on one costs a microcode assist (common/denormals.hpp): they count as 0.
    const FlushDenormals flush_denormals;
    // Aligned to a cache line: the kernels' packed rows are multiples of 64 bytes, and a
    // vector load that straddles two lines costs two (measured: the AVX-512 kernel 13%
    // faster, the AVX2 one 4%, than on std::vector's 16-byte alignment).
    std::vector<float> storage(scratch_size + kCacheLineFloats);
    float* scratch = storage.data();
    while (reinterpret_cast<uintptr_t>(scratch) % (kCacheLineFloats * sizeof(float)) != 0) ++scratch;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / heads, h = task % heads;
      attention::HeadArgs args;
      args.q = base + b * tokens * 3 * width + h * head_dim;
      args.k = args.q + width;
      args.v = args.q + 2 * width;
      args.row_stride = 3 * width;
      if (bias) {
        args.q_bias = bias + h * head_dim;
        args.k_bias = args.q_bias + width;
        args.v_bias = args.q_bias + 2 * width;
      }
      args.cos = cos.data_ptr<float>();
      args.sin = sin.data_ptr<float>();
      args.table_stride = 2 * head_dim;
      args.tokens = static_cast<int>(tokens);
      args.head_dim = static_cast<int>(head_dim);
      args.out = target + b * tokens * width + h * head_dim;
      args.out_stride = width;
      kernels.attend_head(args, scratch);
    }
  });
}

std::string rope_attention_kernel(int64_t head_dim, const std::string& simd) {
  TORCH_CHECK(head_dim > 0 && head_dim % 2 == 0, "pe::rope_attention_kernel: head_dim must be even and positive, got ",
              head_dim);
  return choose(head_dim, simd).name;
}

void bias_gelu_(at::Tensor& x, const at::Tensor& bias, const std::string& simd) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && x.is_contiguous() && x.dim() >= 1,
              "pe::bias_gelu_: x must be a contiguous float32 CPU tensor of at least 1 dimension, got ",
              x.scalar_type(), " ", x.device(), x.is_contiguous() ? "" : " (not contiguous)", " of shape ", x.sizes());
  const int64_t cols = x.size(-1);
  check_bias(bias, cols, "pe::bias_gelu_: bias", "x's last dimension");
  const KernelSet& kernels = choose(/*any width*/ 0, simd, "pe::bias_gelu_");
  if (x.numel() == 0) return;
  const at::Tensor bias_contiguous = bias.defined() ? bias.contiguous() : bias;
  float* data = x.data_ptr<float>();
  const float* bias_data = bias_contiguous.defined() ? bias_contiguous.data_ptr<float>() : nullptr;
  const int64_t rows = x.numel() / cols;
  // Rows in chunks of at least 16 (256 KiB for L14's 4096 columns): below that a thread
  // costs more than it saves.
  detail::parallel_for(rows, at::get_num_threads(), 16, [&](int64_t begin, int64_t end) {
    kernels.bias_gelu(data + begin * cols, end - begin, cols, bias_data);
  });
}

void bias_layer_norm_out(at::Tensor& x, const at::Tensor& bias, const at::Tensor& weight, const at::Tensor& ln_bias,
                         double eps, at::Tensor& out, const std::string& simd) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && x.is_contiguous() && x.dim() >= 1 &&
                  x.size(-1) > 0,
              "pe::bias_layer_norm_: x must be a contiguous float32 CPU tensor with a last dimension, got ",
              x.scalar_type(), " ", x.device(), x.is_contiguous() ? "" : " (not contiguous)", " of shape ", x.sizes());
  const int64_t cols = x.size(-1);
  check_bias(bias, cols, "pe::bias_layer_norm_: bias", "x's last dimension");
  TORCH_CHECK(weight.defined() && ln_bias.defined(), "pe::bias_layer_norm_: the LayerNorm weight and bias are required");
  check_bias(weight, cols, "pe::bias_layer_norm_: weight", "x's last dimension");
  check_bias(ln_bias, cols, "pe::bias_layer_norm_: ln_bias", "x's last dimension");
  TORCH_CHECK(eps > 0, "pe::bias_layer_norm_: eps must be positive, got ", eps);
  TORCH_CHECK(out.is_contiguous() && out.scalar_type() == at::kFloat && out.numel() == x.numel() &&
                  !out.is_same(x),
              "pe::bias_layer_norm_: out must be a contiguous float32 tensor of ", x.numel(),
              " elements, not x itself");
  const KernelSet& kernels = choose(/*any width*/ 0, simd, "pe::bias_layer_norm_");
  if (x.numel() == 0) return;
  const at::Tensor bias_contiguous = bias.defined() ? bias.contiguous() : bias;
  const at::Tensor gamma = weight.contiguous(), beta = ln_bias.contiguous();
  float* data = x.data_ptr<float>();
  float* target = out.data_ptr<float>();
  const float* bias_data = bias_contiguous.defined() ? bias_contiguous.data_ptr<float>() : nullptr;
  const int64_t rows = x.numel() / cols;
  // Chunks of at least 64 rows (256 KiB for L14's 1024 columns), as for bias_gelu_.
  detail::parallel_for(rows, at::get_num_threads(), 64, [&](int64_t begin, int64_t end) {
    kernels.bias_layer_norm(data + begin * cols, end - begin, cols, bias_data, gamma.data_ptr<float>(),
                            beta.data_ptr<float>(), static_cast<float>(eps), target + begin * cols);
  });
}

void register_rope_attention() {}  // referenced by the Encoder so that the linker keeps this file

}  // namespace pe::detail

TORCH_LIBRARY(pe, m) {
  m.def("rope_attention(Tensor qkv, Tensor cos_qk, Tensor sin_qk, int heads, str simd=\"best\", "
        "Tensor? qkv_bias=None) -> Tensor");
  // No tensor arguments, so no dispatch key: the kernel is given with the schema.
  m.def("rope_attention_kernel(int head_dim, str simd=\"best\") -> str", &pe::detail::rope_attention_kernel_op);
  m.def("bias_gelu_(Tensor(a!) x, Tensor? bias=None, str simd=\"best\") -> Tensor(a!)");
  m.def("bias_layer_norm_(Tensor(a!) x, Tensor? bias, Tensor weight, Tensor ln_bias, float eps=1e-5, "
        "str simd=\"best\") -> Tensor");
}

TORCH_LIBRARY_IMPL(pe, CPU, m) {
  m.impl("rope_attention", &pe::detail::rope_attention);
  m.impl("bias_gelu_", &pe::detail::bias_gelu_op);
  m.impl("bias_layer_norm_", &pe::detail::bias_layer_norm_op);
}
