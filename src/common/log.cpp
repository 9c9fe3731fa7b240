#include "common/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>
#include <memory>

namespace pe::detail {

spdlog::logger& logger() {
  static const std::shared_ptr<spdlog::logger> instance = [] {
    auto created = spdlog::get("perception_retrieval");
    if (!created) created = spdlog::stderr_color_mt("perception_retrieval");
    const char* level = std::getenv("PE_LOG_LEVEL");
    created->set_level(level ? spdlog::level::from_str(level) : spdlog::level::warn);
    return created;
  }();
  return *instance;
}

}  // namespace pe::detail
