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

#include "common/log_plain.hpp"

namespace pe::detail {

bool log_info_enabled() { return logger().should_log(spdlog::level::info); }
void log_info(const std::string& message) { logger().info("{}", message); }
void log_warn(const std::string& message) { logger().warn("{}", message); }

}  // namespace pe::detail
