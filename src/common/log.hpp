#pragma once
// The library's logger (internal; not installed): "perception_retrieval" on
// stderr, shared by the core and the encoder. Its level comes from
// PE_LOG_LEVEL (trace, debug, info, warn, error, off; default warn), so a batch
// run reports skipped images and oversized photos without chatter about every
// model load. Thread safety: spdlog's _mt logger; safe from any thread.

#include <spdlog/spdlog.h>

namespace pe::detail {
spdlog::logger& logger();
}  // namespace pe::detail
