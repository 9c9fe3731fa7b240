// The gemm option's grammar (see gemm_route.hpp).

#include "encoder/gemm_route.hpp"

#include <algorithm>
#include <stdexcept>

namespace pe::detail {

namespace {

constexpr std::array<GemmRoute, 4> kAllRoutes = {GemmRoute::openblas, GemmRoute::strassen, GemmRoute::onednn,
                                                 GemmRoute::onednn_packed};

std::optional<GemmRoute> route_named(const std::string& name) {
  for (GemmRoute route : kAllRoutes) {
    if (name == gemm_route_name(route)) return route;
  }
  return std::nullopt;
}

std::optional<LinearRole> role_named(const std::string& name) {
  for (LinearRole role : kAllLinearRoles) {
    if (name == linear_role_name(role)) return role;
  }
  return std::nullopt;
}

// "a, b, c or d" (last_separator " or ") or "a, b, c, d" (", "): the names of `items`,
// so the error messages list what the code accepts.
template <typename Item, size_t Count>
std::string listed(const std::array<Item, Count>& items, const char* (*name)(Item), const char* last_separator) {
  std::string text;
  for (size_t i = 0; i < Count; ++i) {
    text += std::string(i == 0 ? "" : i + 1 == Count ? last_separator : ", ") + name(items[i]);
  }
  return text;
}

}  // namespace

const char* gemm_route_name(GemmRoute route) {
  switch (route) {
    case GemmRoute::strassen: return "strassen";
    case GemmRoute::onednn: return "onednn";
    case GemmRoute::onednn_packed: return "onednn-packed";
    case GemmRoute::openblas: break;
  }
  return "openblas";
}

const char* linear_role_name(LinearRole role) {
  switch (role) {
    case LinearRole::out_proj: return "out_proj";
    case LinearRole::fc1: return "fc1";
    case LinearRole::fc2: return "fc2";
    case LinearRole::qkv: break;
  }
  return "qkv";
}

GemmPins parse_gemm(const std::string& gemm) {
  GemmPins pins{};
  if (gemm == "auto") return pins;
  if (gemm.find('=') == std::string::npos) {
    const std::optional<GemmRoute> route = route_named(gemm);
    if (!route) {
      throw std::invalid_argument("gemm \"" + gemm + "\" is not auto, " + listed(kAllRoutes, gemm_route_name, " or ") +
                                  " (or a list such as \"qkv=strassen,fc2=onednn\")");
    }
    pins.fill(route);
    return pins;
  }
  size_t start = 0;
  while (start <= gemm.size()) {
    const size_t comma = std::min(gemm.find(',', start), gemm.size());
    const std::string entry = gemm.substr(start, comma - start);
    const size_t equals = entry.find('=');
    if (equals == std::string::npos) {
      throw std::invalid_argument("gemm \"" + gemm + "\": \"" + entry + "\" is not layer=route (layers " +
                                  listed(kAllLinearRoles, linear_role_name, ", ") + ")");
    }
    const std::string role_text = entry.substr(0, equals), route_text = entry.substr(equals + 1);
    const std::optional<LinearRole> role = role_named(role_text);
    if (!role) {
      throw std::invalid_argument("gemm \"" + gemm + "\": layer \"" + role_text + "\" is not " +
                                  listed(kAllLinearRoles, linear_role_name, " or "));
    }
    const std::optional<GemmRoute> route = route_named(route_text);
    if (!route) {
      throw std::invalid_argument("gemm \"" + gemm + "\": route \"" + route_text + "\" for " + role_text +
                                  " is not " + listed(kAllRoutes, gemm_route_name, " or "));
    }
    std::optional<GemmRoute>& pin = pins[static_cast<int>(*role)];
    if (pin) throw std::invalid_argument("gemm \"" + gemm + "\": " + role_text + " is named twice");
    pin = route;
    start = comma + 1;
  }
  return pins;
}

std::string describe_gemm(const GemmRoutes& routes) {
  bool uniform = true;
  for (GemmRoute route : routes) uniform = uniform && route == routes[0];
  if (uniform) return gemm_route_name(routes[0]);
  std::string text;
  for (LinearRole role : kAllLinearRoles) {
    text += std::string(text.empty() ? "" : ",") + linear_role_name(role) + "=" +
            gemm_route_name(routes[static_cast<int>(role)]);
  }
  return text;
}

}  // namespace pe::detail
