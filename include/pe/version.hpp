#pragma once
// The library version, from pyproject.toml via CMake (PE_VERSION_STRING is set
// on the perception_retrieval::pe target). Thread safety: constants only.

#ifndef PE_VERSION_STRING
#error "PE_VERSION_STRING is not defined: link the perception_retrieval::pe CMake target"
#endif

namespace pe {
inline constexpr const char* version = PE_VERSION_STRING;
}  // namespace pe
