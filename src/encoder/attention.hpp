#pragma once
// pe::rope_attention: 2-D-RoPE multi-head self-attention in one fused CPU operator
// (and pe::bias_gelu_, the MLP's bias + GELU pass, and pe::bias_layer_norm_, a pending
// bias add + LayerNorm, on the same kernels and threads), registered with the
// dispatcher (TORCH_LIBRARY(pe), attention_op.cpp) so that Python code reaches it as
// torch.ops.pe.rope_attention once the package's native module is loaded, and called
// directly by pe::Encoder's own forward (forward.cpp).
//
// qkv [B, N, 3 * W] float32 (the fused in-projection's output: q, k, v of head h at
// columns h*D, W + h*D, 2W + h*D), cos_qk and sin_qk [N, 2, 1, D] (pe_core's RoPE
// tables: index 0 for q, carrying the 1/sqrt(D) scale, 1 for k), optionally qkv_bias
// [3 * W] (added to qkv first: the in-projection's bias, so that the GEMM producing
// qkv need not start from a copy of it) -> [B, N, W], the heads merged. Inference
// only: no autograd formula is registered.
//
// The kernel is chosen per call from the CPU (AVX-512, AVX2 + FMA, or plain C++),
// capped by the environment variable PE_ENCODER_SIMD=scalar|avx2|avx512 (read once)
// and by `simd`; a head size that is not a multiple of the vector width falls to the
// next narrower kernel.
//
// Thread safety: safe to call concurrently; each call splits images x heads over
// at::get_num_threads() plain threads (the calling one included).

#include <ATen/core/Tensor.h>

#include <string>

namespace pe::detail {

/// Writes the attention output into `out` ([B, N, W] float32, contiguous); qkv_bias
/// may be undefined. Checks every argument and throws c10::Error naming the one that
/// is wrong.
void rope_attention_out(const at::Tensor& qkv, const at::Tensor& cos_qk, const at::Tensor& sin_qk, int64_t heads,
                        const std::string& simd, at::Tensor& out, const at::Tensor& qkv_bias = at::Tensor());

/// The kernel rope_attention would use for head size `head_dim` ("avx512", "avx2" or "scalar").
std::string rope_attention_kernel(int64_t head_dim, const std::string& simd = "best");

/// pe::bias_gelu_: x = GELU(x + bias) in place (exact-erf GELU, as nn.GELU(); bias over
/// x's last dimension, may be undefined), on the same kernel choice as rope_attention
/// and at::get_num_threads() plain threads; x float32, contiguous. The Encoder's MLP
/// runs it on the fc1 GEMM's output (gelu_kernel_impl.hpp says why).
void bias_gelu_(at::Tensor& x, const at::Tensor& bias, const std::string& simd = "best");

/// pe::bias_layer_norm_: x += bias in place (bias over x's last dimension, may be
/// undefined), then out = layer_norm(x, [x.size(-1)], weight, ln_bias, eps), on the
/// same kernel choice and threads; x float32 and contiguous, out a contiguous float32
/// tensor of x's size (not x). The Encoder's blocks run it where out_proj and fc2 left
/// their bias out of the residual stream (layer_norm_kernel_impl.hpp says why).
void bias_layer_norm_out(at::Tensor& x, const at::Tensor& bias, const at::Tensor& weight, const at::Tensor& ln_bias,
                         double eps, at::Tensor& out, const std::string& simd = "best");

/// Makes sure the operators are registered (the object file with TORCH_LIBRARY is linked).
void register_rope_attention();

}  // namespace pe::detail
