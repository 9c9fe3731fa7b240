#pragma once
// The GEMM routes of pe::Encoder's own forward, the four Linear layers of a block that
// each take one, and the `gemm` option (EncoderOptions::gemm) that pins or measures
// them. No torch here: the option is checked before a model loads.
//
// Why per layer: the routes rank differently by shape. Measured on a 2-core Zen 4
// (L14, 1731 rows): OpenBLAS's AVX-512 sgemm ran qkv at 209 GFLOP/s and fc2 (K = 4096)
// at 176, where oneDNN ran fc2 at 194 and strassen qkv at 224. One route for all four
// gives up the better of each.
//
// Thread safety: pure functions.

#include <array>
#include <optional>
#include <string>

namespace pe::detail {

enum class GemmRoute { openblas, strassen, onednn, onednn_packed };
const char* gemm_route_name(GemmRoute route);

/// A transformer block's Linear layers, in the order the forward calls them.
enum class LinearRole { qkv, out_proj, fc1, fc2 };
constexpr int kLinearRoles = 4;
constexpr std::array<LinearRole, kLinearRoles> kAllLinearRoles = {LinearRole::qkv, LinearRole::out_proj,
                                                                  LinearRole::fc1, LinearRole::fc2};
const char* linear_role_name(LinearRole role);

/// One route per role.
using GemmRoutes = std::array<GemmRoute, kLinearRoles>;
/// Per role, the route the option pins, or nullopt where it is measured at load.
using GemmPins = std::array<std::optional<GemmRoute>, kLinearRoles>;

/// Parses the gemm option: "auto" (every layer measured), a route name (every layer
/// pinned to it), or comma-separated role=route pairs, e.g. "qkv=strassen,fc2=onednn"
/// (the layers not named are measured). Throws std::invalid_argument with a message
/// that names the wrong part.
GemmPins parse_gemm(const std::string& gemm);

/// The option that pins `routes`: the route name when all four agree, else
/// "qkv=...,out_proj=...,fc1=...,fc2=..." (parse_gemm reads both back).
std::string describe_gemm(const GemmRoutes& routes);

}  // namespace pe::detail
