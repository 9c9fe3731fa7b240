// pe::Encoder's own CPU forward of a PE-Core TorchScript file (see forward.hpp).
// The arithmetic is pe_core.PECoreVision's inference path, op for op, except that
// attention runs through the fused kernel and the Linear layers through the chosen
// GEMM route: the same float32 math up to summation order (and, on the strassen route,
// up to Strassen-Winograd's rounding; strassen.hpp).

#include "encoder/forward.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <utility>

#include "encoder/attention.hpp"

namespace pe::detail {

namespace {

// Largest Linear output per micro-batch (floats), pe_core's DEFAULT_WORK_ELEMENTS: the
// oneDNN routes return fresh outputs, and glibc maps blocks above 32 MiB from the OS and
// unmaps them on free, so each call would page-fault them in again (about 3 ms per MiB
// on the 2-core VMs; measured: a batch of 8 L14 images in one micro-batch ran its fc1 at
// 80 GFLOP/s instead of 110). For L14 this gives micro-batches of 3 images, 1731 rows,
// enough for the GEMMs' full speed.
constexpr int64_t kMaxOutputFloats = 30 * 1024 * 1024 / 4;

c10::optional<c10::IValue> constant(const torch::jit::Module& module, const std::string& name) {
  return module.type()->findConstant(name);
}

}  // namespace

// Buffers of one forward call for micro-batches of `rows` tokens (openblas route; the
// oneDNN routes return fresh outputs). Reused across calls so that large buffers are
// not mapped and page-faulted again each call.
struct NativeForward::Workspace {
  int64_t rows = 0;
  at::Tensor qkv, merged, hidden, normed;
  at::Tensor strassen_scratch;  // strassen route only
  float* scratch() const { return strassen_scratch.defined() ? strassen_scratch.data_ptr<float>() : nullptr; }
};

NativeForward::~NativeForward() = default;

std::unique_ptr<NativeForward> NativeForward::from_module(const torch::jit::Module& exported, int image_size,
                                                          std::string* why_not) {
  auto fail = [&](const std::string& reason) {
    if (why_not) *why_not = reason;
    return std::unique_ptr<NativeForward>();
  };
  if (!exported.hasattr("model")) return fail("no 'model' submodule (not an export tool file)");
  const torch::jit::Module tower = exported.attr("model").toModule();
  std::map<std::string, at::Tensor> params;
  for (const auto& item : tower.named_parameters(/*recurse=*/true)) params[item.name] = item.value.detach();
  auto param = [&](const std::string& name) -> at::Tensor {
    auto found = params.find(name);
    if (found == params.end() || found->second.scalar_type() != at::kFloat) return at::Tensor();
    return found->second.contiguous();
  };
  std::unique_ptr<NativeForward> f(new NativeForward());
  const auto patch = constant(tower, "patch_size");
  const auto cls = constant(tower, "use_cls_token");
  const auto pool_type = constant(tower, "pool_type");
  const auto theta = constant(tower, "rope_theta");
  const auto normalize = constant(exported, "normalize");
  if (!patch || !cls || !pool_type || !theta || !normalize) return fail("the tower's constants are missing");
  f->patch_ = patch->toInt();
  f->cls_ = cls->toBool();
  f->pool_type_ = pool_type->toStringRef();
  f->normalize_ = normalize->toBool();
  f->conv_w_ = param("conv1.weight");
  f->pos_ = param("positional_embedding");
  f->proj_ = param("proj");
  f->ln_pre_w_ = param("ln_pre.weight");
  f->ln_pre_b_ = param("ln_pre.bias");
  f->ln_post_w_ = param("ln_post.weight");
  f->ln_post_b_ = param("ln_post.bias");
  if (f->cls_) f->cls_emb_ = param("class_embedding");
  if (!f->conv_w_.defined() || !f->pos_.defined() || !f->proj_.defined() || !f->ln_pre_w_.defined() ||
      !f->ln_post_w_.defined() || (f->cls_ && !f->cls_emb_.defined())) {
    return fail("the tower's float32 parameters are missing");
  }
  f->width_ = f->conv_w_.size(0);
  const int64_t grid = image_size / f->patch_;
  f->tokens_ = grid * grid + (f->cls_ ? 1 : 0);
  if (f->pos_.size(0) != f->tokens_) {
    return fail("the positional embedding is for another grid than " + std::to_string(image_size) + " px");
  }
  auto linear_of = [&](const std::string& prefix, const std::string& weight, const std::string& bias) {
    return Linear{param(prefix + weight), param(prefix + bias), at::Tensor(), StrassenWeights()};
  };
  for (int64_t i = 0;; ++i) {
    const std::string prefix = "transformer.resblocks." + std::to_string(i) + ".";
    if (!params.count(prefix + "ln_1.weight")) break;
    Block block;
    block.ln1_w = param(prefix + "ln_1.weight");
    block.ln1_b = param(prefix + "ln_1.bias");
    block.ln2_w = param(prefix + "ln_2.weight");
    block.ln2_b = param(prefix + "ln_2.bias");
    block.qkv = linear_of(prefix + "attn.", "in_proj_weight", "in_proj_bias");
    block.out_proj = linear_of(prefix + "attn.out_proj.", "weight", "bias");
    block.fc1 = linear_of(prefix + "mlp.c_fc.", "weight", "bias");
    block.fc2 = linear_of(prefix + "mlp.c_proj.", "weight", "bias");
    for (const Linear* layer : {&block.qkv, &block.out_proj, &block.fc1, &block.fc2}) {
      if (!layer->weight.defined() || !layer->bias.defined()) {
        return fail("block " + std::to_string(i) + " has no float32 Linear weights (a quantized model?)");
      }
    }
    f->blocks_.push_back(std::move(block));
  }
  if (f->blocks_.empty()) return fail("no transformer blocks");
  const torch::jit::Module attn =
      tower.attr("transformer").toModule().attr("resblocks").toModule().attr("0").toModule().attr("attn").toModule();
  const auto heads = constant(attn, "heads");
  const auto eps = constant(tower.attr("ln_pre").toModule(), "eps");
  if (!heads || !eps) return fail("the attention's head count or LayerNorm eps is missing");
  f->heads_ = heads->toInt();
  f->eps_ = eps->toDouble();
  f->mlp_ = f->blocks_[0].fc1.weight.size(0);
  const int64_t head_dim = f->width_ / f->heads_;
  if (f->pool_type_ == "attn") {
    const at::Tensor probe = param("attn_pool.probe");
    const at::Tensor in_w = param("attn_pool.attn.in_proj_weight");
    const at::Tensor in_b = param("attn_pool.attn.in_proj_bias");
    f->pool_out_ = linear_of("attn_pool.attn.out_proj.", "weight", "bias");
    f->pool_ln_w_ = param("attn_pool.layernorm.weight");
    f->pool_ln_b_ = param("attn_pool.layernorm.bias");
    f->pool_fc1_ = linear_of("attn_pool.mlp.c_fc.", "weight", "bias");
    f->pool_fc2_ = linear_of("attn_pool.mlp.c_proj.", "weight", "bias");
    const auto pool_heads = constant(tower.attr("attn_pool").toModule().attr("attn").toModule(), "heads");
    if (!probe.defined() || !in_w.defined() || !in_b.defined() || !f->pool_out_.weight.defined() ||
        !f->pool_fc1_.weight.defined() || !f->pool_fc2_.weight.defined() || !pool_heads) {
      return fail("the attention pooling's float32 parameters are missing");
    }
    f->pool_heads_ = pool_heads->toInt();
    // The probe is the pooling's only query and a constant, so per head h
    //   score[t, h] = (x_t Wk_h^T + bk_h) . q_h = x_t . (Wk_h^T q_h) + bk_h . q_h,
    // and as each head's probabilities sum to 1,
    //   sum_t p[t, h] (x_t Wv_h^T + bv_h) = (sum_t p[t, h] x_t) Wv_h^T + bv_h.
    // So the forward projects no token to K or V (PoolAttention.forward does: 2.4 GFLOP
    // per L14 image); it takes one [width, heads] product for the scores and projects one
    // probability-weighted mean row per head. Folded in float64, stored in float32.
    const int64_t width = f->width_, pool_count = f->pool_heads_, pool_dim = width / pool_count;
    const at::Tensor w64 = in_w.to(at::kDouble), b64 = in_b.to(at::kDouble);
    const at::Tensor q = (at::linear(probe.view({-1}).to(at::kDouble), w64.narrow(0, 0, width), b64.narrow(0, 0, width)) *
                          std::pow(static_cast<double>(pool_dim), -0.5))
                             .view({pool_count, pool_dim, 1});
    f->pool_key_ = (w64.narrow(0, width, width).view({pool_count, pool_dim, width}) * q)
                       .sum(1).t().contiguous().to(at::kFloat);
    f->pool_key_bias_ = (b64.narrow(0, width, width).view({pool_count, pool_dim, 1}) * q).sum({1, 2}).to(at::kFloat);
    f->pool_value_w_ = in_w.narrow(0, 2 * width, width).view({pool_count, pool_dim, width}).transpose(1, 2).contiguous();
    f->pool_value_b_ = in_b.narrow(0, 2 * width, width).contiguous();
  }
  // RoPE tables exactly as pe_core._rope_tables builds them (q scaled by 1/sqrt(head_dim)).
  {
    const auto opts = at::TensorOptions().dtype(at::kFloat);
    const int64_t axis = head_dim / 2;
    auto freqs = 1.0 / at::pow(theta->toDouble(), at::arange(0, axis, 2, opts) / static_cast<double>(axis));
    freqs = freqs.repeat_interleave(2);
    const double offset = f->cls_ ? 1.0 : 0.0;
    auto pos = at::arange(grid, opts) + offset;
    auto x_angles = (pos.unsqueeze(1) * freqs.unsqueeze(0)).unsqueeze(0).expand({grid, grid, freqs.numel()});
    auto y_angles = (pos.unsqueeze(1) * freqs.unsqueeze(0)).unsqueeze(1).expand({grid, grid, freqs.numel()});
    auto angles = at::cat({x_angles, y_angles}, -1).reshape({grid * grid, 2 * freqs.numel()});
    if (f->cls_) angles = at::cat({at::zeros({1, angles.size(1)}, opts), angles}, 0);
    auto sign = at::tensor({-1.0f, 1.0f}).repeat({head_dim / 2});
    auto cos = angles.cos();
    auto sin = angles.sin() * sign;
    auto scale = at::tensor({static_cast<float>(std::pow(static_cast<double>(head_dim), -0.5)), 1.0f}).view({1, 2, 1, 1});
    f->cos_qk_ = (cos.view({-1, 1, 1, head_dim}) * scale).contiguous();
    f->sin_qk_ = (sin.view({-1, 1, 1, head_dim}) * scale).contiguous();
  }
  f->micro_batch_ = std::max<int64_t>(1, kMaxOutputFloats / (f->tokens_ * std::max(3 * f->width_, f->mlp_)));
  f->attention_kernel_ = rope_attention_kernel(head_dim);
  return f;
}

at::Tensor NativeForward::linear(const Linear& layer, const at::Tensor& x, at::Tensor* out, GemmRoute route,
                                 float* scratch) const {
  if (route == GemmRoute::strassen && layer.strassen.defined()) {
    TORCH_INTERNAL_ASSERT(out && scratch, "the strassen route writes into the caller's buffer");
    strassen_linear(x, layer.weight, layer.strassen, *out, /*accumulate=*/false, scratch);
    return *out;
  }
  if (route == GemmRoute::openblas || route == GemmRoute::strassen) {
    // Plain products: addmm would first copy the bias into every output row (measured
    // 1.25 ms of a 58 ms L14 block); the caller's next pass adds it (bias_left_out).
    TORCH_INTERNAL_ASSERT(out, "the openblas route writes into the caller's buffer");
    return at::mm_out(*out, x, layer.weight.t());
  }
  const at::Tensor& weight = route == GemmRoute::onednn_packed && layer.packed.defined() ? layer.packed : layer.weight;
  return at::mkldnn_linear(x.to_mkldnn(), weight, layer.bias).to_dense();
}

void NativeForward::add_linear(at::Tensor& residual, const Linear& layer, const at::Tensor& x, GemmRoute route,
                               float* scratch) const {
  if (route == GemmRoute::strassen && layer.strassen.defined()) {
    TORCH_INTERNAL_ASSERT(scratch, "the strassen route needs the workspace's scratch");
    strassen_linear(x, layer.weight, layer.strassen, residual, /*accumulate=*/true, scratch);
  } else if (route == GemmRoute::openblas || route == GemmRoute::strassen) {
    residual.addmm_(x, layer.weight.t());  // the bias is left to the next LayerNorm pass
  } else {
    residual.add_(linear(layer, x, nullptr, route));
  }
}

const NativeForward::Linear& NativeForward::layer_of(const Block& block, LinearRole role) {
  switch (role) {
    case LinearRole::out_proj: return block.out_proj;
    case LinearRole::fc1: return block.fc1;
    case LinearRole::fc2: return block.fc2;
    case LinearRole::qkv: break;
  }
  return block.qkv;
}

NativeForward::Linear& NativeForward::layer_of(Block& block, LinearRole role) {
  return const_cast<Linear&>(layer_of(static_cast<const Block&>(block), role));
}

bool NativeForward::uses_onednn() const {
  return std::any_of(routes_.begin(), routes_.end(),
                     [](GemmRoute route) { return route == GemmRoute::onednn || route == GemmRoute::onednn_packed; });
}

double NativeForward::time_layer(LinearRole role, GemmRoute route) const {
  // The layer's shape on a full micro-batch (one image's 577 rows ranked the routes
  // differently), called as the forward calls it: a product into a reused buffer, or
  // accumulated into the residual stream (out_proj, fc2), on openblas and strassen;
  // fresh outputs on oneDNN. Inputs from a generator of its own: the host's RNG is not
  // the library's to move.
  const Linear& layer = layer_of(blocks_[0], role);
  const int64_t rows = micro_batch_ * tokens_;
  auto generator = at::detail::createCPUGenerator(/*seed_in=*/0);
  const at::Tensor x = at::randn({rows, layer.weight.size(1)}, generator, at::TensorOptions().dtype(at::kFloat));
  at::Tensor out = at::zeros({rows, layer.weight.size(0)});
  const bool accumulate = role == LinearRole::out_proj || role == LinearRole::fc2;
  const at::Tensor scratch_buffer =
      route == GemmRoute::strassen
          ? at::empty({strassen_scratch_floats(rows, layer.weight.size(0), layer.weight.size(1))})
          : at::Tensor();
  float* scratch = scratch_buffer.defined() ? scratch_buffer.data_ptr<float>() : nullptr;
  double best = 1e30;
  for (int repeat = 0; repeat < 3; ++repeat) {  // the first is a warm-up
    const auto start = std::chrono::steady_clock::now();
    if (accumulate) {
      add_linear(out, layer, x, route, scratch);
    } else {
      linear(layer, x, bias_left_out(route) ? &out : nullptr, route, scratch);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (repeat > 0) best = std::min(best, seconds);
  }
  return best;
}

void NativeForward::choose_gemm(const GemmPins& pins) {
  const std::vector<GemmRoute> available =
      at::hasMKLDNN() ? std::vector<GemmRoute>{GemmRoute::openblas, GemmRoute::strassen, GemmRoute::onednn,
                                                GemmRoute::onednn_packed}
                      : std::vector<GemmRoute>{GemmRoute::openblas, GemmRoute::strassen};
  std::array<std::vector<GemmRoute>, kLinearRoles> candidates;
  for (LinearRole role : kAllLinearRoles) {
    const std::optional<GemmRoute>& pin = pins[static_cast<int>(role)];
    const bool usable = pin && std::find(available.begin(), available.end(), *pin) != available.end();
    std::vector<GemmRoute>& mine = candidates[static_cast<int>(role)];
    mine = usable ? std::vector<GemmRoute>{*pin} : available;
    // strassen splits both dimensions in two.
    if (!strassen_applies(layer_of(blocks_[0], role).weight)) {
      mine.erase(std::remove(mine.begin(), mine.end(), GemmRoute::strassen), mine.end());
      if (mine.empty()) mine = {GemmRoute::openblas};
    }
  }
  // The first block's packed copies and strassen sums only, until the routes are chosen:
  // each is as large as the weights themselves.
  auto prepare = [](Linear& layer, GemmRoute route) {
    if (route == GemmRoute::onednn_packed && !layer.packed.defined()) layer.packed = layer.weight.to_mkldnn();
    if (route == GemmRoute::strassen && !layer.strassen.defined()) layer.strassen = strassen_weights(layer.weight);
  };
  for (LinearRole role : kAllLinearRoles) {
    for (GemmRoute route : candidates[static_cast<int>(role)]) prepare(layer_of(blocks_[0], role), route);
  }
  route_report_.clear();
  {
    at::NoGradGuard no_grad;
    // Two rounds, each route's best kept: the first call of a library starts its threads
    // and maps its buffers, and a shared machine's noise then hits every route alike.
    std::array<std::vector<double>, kLinearRoles> times;
    for (LinearRole role : kAllLinearRoles) {
      const int r = static_cast<int>(role);
      times[r].assign(candidates[r].size(), 1e30);
    }
    for (int round = 0; round < 2; ++round) {
      for (LinearRole role : kAllLinearRoles) {
        const int r = static_cast<int>(role);
        if (candidates[r].size() < 2) continue;
        for (size_t i = 0; i < candidates[r].size(); ++i) {
          times[r][i] = std::min(times[r][i], time_layer(role, candidates[r][i]));
        }
      }
    }
    // strassen keeps sums as large as the weights (+1.2 GB for L14 on every layer) and
    // makes load slower, so it must beat the best other route by a margin, not by noise
    // (here, 2-core VMs, a route's time moves by 1-3% from one load to the next).
    constexpr double kStrassenMargin = 0.97;
    const double rows = static_cast<double>(micro_batch_ * tokens_);
    for (LinearRole role : kAllLinearRoles) {
      const int r = static_cast<int>(role);
      routes_[r] = candidates[r].front();
      if (candidates[r].size() < 2) continue;
      const at::Tensor& weight = layer_of(blocks_[0], role).weight;
      const double flops = 2.0 * rows * static_cast<double>(weight.size(0)) * static_cast<double>(weight.size(1));
      route_report_ += std::string(route_report_.empty() ? "" : "; ") + linear_role_name(role) + ":";
      double best = 1e30, strassen_seconds = 1e30;
      for (size_t i = 0; i < candidates[r].size(); ++i) {
        const GemmRoute route = candidates[r][i];
        char rate[64];
        std::snprintf(rate, sizeof rate, "%s %s %.1f", i == 0 ? "" : ",", gemm_route_name(route),
                      flops / times[r][i] / 1e9);
        route_report_ += rate;
        if (route == GemmRoute::strassen) {
          strassen_seconds = times[r][i];
        } else if (times[r][i] < best) {
          best = times[r][i], routes_[r] = route;
        }
      }
      if (strassen_seconds < kStrassenMargin * best) routes_[r] = GemmRoute::strassen;
    }
    if (!route_report_.empty()) route_report_ += " GFLOP/s";
  }
  for (Block& block : blocks_) {
    for (LinearRole role : kAllLinearRoles) {
      Linear& layer = layer_of(block, role);
      const GemmRoute route = routes_[static_cast<int>(role)];
      if (route != GemmRoute::onednn_packed) layer.packed = at::Tensor();
      if (route != GemmRoute::strassen) layer.strassen = StrassenWeights();
      prepare(layer, route);
    }
  }
}

std::unique_ptr<NativeForward::Workspace> NativeForward::acquire(int64_t rows) const {
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    for (auto it = free_workspaces_.begin(); it != free_workspaces_.end(); ++it) {
      if ((*it)->rows == rows) {
        auto workspace = std::move(*it);
        free_workspaces_.erase(it);
        return workspace;
      }
    }
  }
  auto workspace = std::make_unique<Workspace>();
  workspace->rows = rows;
  workspace->qkv = at::empty({rows, 3 * width_});
  workspace->merged = at::empty({rows, width_});
  workspace->hidden = at::empty({rows, mlp_});
  workspace->normed = at::empty({rows, width_});
  const int64_t scratch = strassen_scratch_floats_for(rows);
  if (scratch > 0) workspace->strassen_scratch = at::empty({scratch});
  return workspace;
}

int64_t NativeForward::strassen_scratch_floats_for(int64_t rows) const {
  int64_t floats = 0;
  for (LinearRole role : kAllLinearRoles) {
    if (route(role) != GemmRoute::strassen) continue;
    const at::Tensor& weight = layer_of(blocks_[0], role).weight;
    floats = std::max(floats, strassen_scratch_floats(rows, weight.size(0), weight.size(1)));
  }
  return floats;
}

void NativeForward::release(std::unique_ptr<Workspace> workspace) const {
  std::lock_guard<std::mutex> lock(pool_mutex_);
  // A few shapes at most (the batch size and a last, partial batch); more are dropped.
  if (free_workspaces_.size() < 4) free_workspaces_.push_back(std::move(workspace));
}

at::Tensor NativeForward::forward(const at::Tensor& images) const {
  at::NoGradGuard no_grad;
  const int64_t batch = images.size(0);
  // The fewest, most even micro-batches (pe_core._balanced_chunk): 8 -> 3, 3, 2.
  const int64_t chunks = (batch + micro_batch_ - 1) / micro_batch_;
  const int64_t micro = (batch + chunks - 1) / chunks;
  std::vector<at::Tensor> outputs;
  for (int64_t first = 0; first < batch; first += micro) {
    const int64_t count = std::min(micro, batch - first);
    const int64_t rows = count * tokens_;
    auto workspace = acquire(rows);
    // Patch embedding, CLS, positional embedding, ln_pre (PECoreVision._tokens).
    at::Tensor x = at::conv2d(images.narrow(0, first, count), conv_w_, {}, {patch_, patch_});
    x = x.flatten(2).transpose(1, 2);
    if (cls_) x = at::cat({cls_emb_.view({1, 1, -1}).expand({count, 1, width_}), x}, 1);
    x = at::layer_norm(x + pos_, {width_}, ln_pre_w_, ln_pre_b_, eps_).contiguous();
    at::Tensor x2d = x.view({rows, width_});
    at::Tensor merged3d = workspace->merged.view({count, tokens_, width_});
    // Where linear() and add_linear() leave the bias out, the kernel after them adds it:
    // the attention kernel qkv's, the GELU pass fc1's, the LayerNorm pass after them
    // out_proj's and fc2's (into the residual stream x2d). Each layer has its own route,
    // so each hand-off asks the route of the layer before it.
    const GemmRoute qkv_route = route(LinearRole::qkv), out_route = route(LinearRole::out_proj);
    const GemmRoute fc1_route = route(LinearRole::fc1), fc2_route = route(LinearRole::fc2);
    const at::Tensor none;
    const at::Tensor* pending = &none;  // the bias the residual stream still lacks
    at::Tensor& h = workspace->normed;
    float* scratch = workspace->scratch();  // strassen route only, else null
    for (const Block& block : blocks_) {
      bias_layer_norm_out(x2d, *pending, block.ln1_w, block.ln1_b, eps_, h);
      at::Tensor qkv = linear(block.qkv, h, &workspace->qkv, qkv_route, scratch);
      rope_attention_out(qkv.view({count, tokens_, 3 * width_}), cos_qk_, sin_qk_, heads_, "best", merged3d,
                         bias_left_out(qkv_route) ? block.qkv.bias : none);
      add_linear(x2d, block.out_proj, workspace->merged, out_route, scratch);
      bias_layer_norm_out(x2d, bias_left_out(out_route) ? block.out_proj.bias : none, block.ln2_w, block.ln2_b, eps_,
                          h);
      at::Tensor hidden = linear(block.fc1, h, &workspace->hidden, fc1_route, scratch);
      bias_gelu_(hidden, bias_left_out(fc1_route) ? block.fc1.bias : none);
      add_linear(x2d, block.fc2, hidden, fc2_route, scratch);
      pending = bias_left_out(fc2_route) ? &block.fc2.bias : &none;
    }
    release(std::move(workspace));
    at::Tensor normed = at::empty_like(x);
    bias_layer_norm_out(x2d, *pending, ln_post_w_, ln_post_b_, eps_, normed);
    x = normed;
    if (pool_type_ == "attn") {
      // PoolAttention.forward with the probe folded in (from_module), then x + mlp(layernorm(x)).
      const at::Tensor probs = at::addmm(pool_key_bias_, x.view({rows, width_}), pool_key_)
                                   .view({count, tokens_, pool_heads_}).softmax(1);
      const at::Tensor means = at::bmm(probs.transpose(1, 2), x);  // [count, heads, width]
      at::Tensor pooled = at::bmm(means.transpose(0, 1), pool_value_w_).transpose(0, 1).reshape({count, width_});
      pooled.add_(pool_value_b_);
      pooled = at::linear(pooled, pool_out_.weight, pool_out_.bias);
      at::Tensor hidden = at::gelu(at::linear(at::layer_norm(pooled, {width_}, pool_ln_w_, pool_ln_b_, eps_),
                                              pool_fc1_.weight, pool_fc1_.bias));
      x = pooled + at::linear(hidden, pool_fc2_.weight, pool_fc2_.bias);
    } else if (pool_type_ == "tok") {
      x = x.select(1, 0);
    } else {
      x = x.mean(1);
    }
    outputs.push_back(at::matmul(x, proj_));
  }
  at::Tensor out = outputs.size() == 1 ? outputs[0] : at::cat(outputs, 0);
  if (normalize_) out = out / out.norm(2, 1, true).clamp_min(1e-12);
  return out;
}

}  // namespace pe::detail
