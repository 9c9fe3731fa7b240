#pragma once
// pe::Encoder's own CPU forward of a PE-Core TorchScript file (float32): the file's
// weights, run by C++ with the fused pe::rope_attention kernel and a GEMM route
// chosen by measurement at load. Internal to src/encoder (includes torch).
//
// Why the Encoder runs its own forward rather than the file's TorchScript: the file
// must load and run in plain PyTorch, so it cannot name the fused operator (see
// attention_op.cpp); taking the weights and running the same arithmetic here swaps
// the operator in at load without changing the file. Files it does not recognise
// (quantized layers, other layouts, a positional embedding of another grid) keep
// the TorchScript forward (from_module says why).
//
// Thread safety: forward() is const and safe to call concurrently (per-call buffers
// come from a locked pool); construction and choose_gemm are not.

#include <torch/script.h>

#include "encoder/gemm_route.hpp"
#include "encoder/strassen.hpp"

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace pe::detail {

class NativeForward {
 public:
  /// The forward of `exported` (a module from perception_retrieval.export) for images
  /// of `image_size` pixels, or nullptr with the reason in `why_not`.
  static std::unique_ptr<NativeForward> from_module(const torch::jit::Module& exported, int image_size,
                                                    std::string* why_not);
  ~NativeForward();

  /// Each Linear role's route: the pinned one, else (nullopt) the fastest of the routes
  /// this LibTorch has, timed at load on that role's layer of the first block (strassen
  /// only by a margin). A pinned oneDNN route without oneDNN is measured instead.
  void choose_gemm(const GemmPins& pins);
  GemmRoute route(LinearRole role) const { return routes_[static_cast<int>(role)]; }
  const GemmRoutes& routes() const { return routes_; }
  /// Whether any layer runs through oneDNN.
  bool uses_onednn() const;
  /// What the measurement saw, e.g. "qkv: openblas 209.1, strassen 224.0, ... GFLOP/s; fc2: ...".
  const std::string& route_report() const { return route_report_; }
  /// The attention kernel in use ("avx512", "avx2" or "scalar").
  const std::string& attention_kernel() const { return attention_kernel_; }

  /// images [B, 3, S, S] float32 -> [B, D], L2-normalised when the file normalises.
  at::Tensor forward(const at::Tensor& images) const;

 private:
  struct Linear {
    at::Tensor weight, bias, packed;  // packed: weight as a oneDNN tensor (onednn-packed)
    StrassenWeights strassen;         // the weight-side sums (strassen route)
  };
  struct Block {
    at::Tensor ln1_w, ln1_b, ln2_w, ln2_b;
    Linear qkv, out_proj, fc1, fc2;
  };
  struct Workspace;

  NativeForward() = default;
  /// x W^T on `route`: on openblas and strassen the products, written into *out (the
  /// caller adds the bias in its next pass; strassen uses `scratch`, from the workspace);
  /// on the oneDNN routes a fresh output, bias added.
  at::Tensor linear(const Linear& layer, const at::Tensor& x, at::Tensor* out, GemmRoute route,
                    float* scratch = nullptr) const;
  static bool bias_left_out(GemmRoute route) { return route == GemmRoute::openblas || route == GemmRoute::strassen; }
  /// residual += x W^T + bias on `route`, except that openblas and strassen leave the bias
  /// out (accumulating straight into residual; the caller's next pass adds it).
  void add_linear(at::Tensor& residual, const Linear& layer, const at::Tensor& x, GemmRoute route,
                  float* scratch = nullptr) const;
  /// Floats of strassen scratch for `rows` rows of the largest layer on that route (0: none).
  int64_t strassen_scratch_floats_for(int64_t rows) const;
  /// The best of two timed calls of `role`'s first-block layer on `route`, called as the
  /// forward calls it, on a full micro-batch.
  double time_layer(LinearRole role, GemmRoute route) const;
  static const Linear& layer_of(const Block& block, LinearRole role);
  static Linear& layer_of(Block& block, LinearRole role);
  std::unique_ptr<Workspace> acquire(int64_t rows) const;
  void release(std::unique_ptr<Workspace> workspace) const;

  int64_t width_ = 0, heads_ = 0, pool_heads_ = 0, patch_ = 0, tokens_ = 0, mlp_ = 0, micro_batch_ = 1;
  double eps_ = 1e-5;
  bool cls_ = true, normalize_ = true;
  std::string pool_type_ = "attn";
  at::Tensor conv_w_, cls_emb_, pos_, proj_, ln_pre_w_, ln_pre_b_, ln_post_w_, ln_post_b_;
  at::Tensor cos_qk_, sin_qk_;
  std::vector<Block> blocks_;
  // Attention pooling (pool_type "attn"): the probe's query folded into the key weights
  // (pool_key_ [width, heads], pool_key_bias_ [heads]) and the value weights per head
  // (pool_value_w_ [heads, width, head_dim], pool_value_b_ [width]); see from_module.
  at::Tensor pool_key_, pool_key_bias_, pool_value_w_, pool_value_b_, pool_ln_w_, pool_ln_b_;
  Linear pool_out_, pool_fc1_, pool_fc2_;
  GemmRoutes routes_{};  // indexed by LinearRole
  std::string route_report_, attention_kernel_;
  mutable std::mutex pool_mutex_;
  mutable std::vector<std::unique_ptr<Workspace>> free_workspaces_;
};

}  // namespace pe::detail
