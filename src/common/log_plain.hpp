#pragma once
// The library's logger (common/log.hpp) behind plain functions, for translation
// units that must not include spdlog: src/encoder/ sees LibTorch's headers, and
// torch 2.x ships its own fmt there, which Debian's spdlog (built against
// Debian's fmt) cannot be compiled with. Same logger, level and thread safety.

#include <string>

namespace pe::detail {
bool log_info_enabled();
void log_info(const std::string& message);
void log_warn(const std::string& message);
}  // namespace pe::detail
