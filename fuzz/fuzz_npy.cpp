// libFuzzer harness fuzz_npy: arbitrary bytes as a vectors .npy file optionally
// followed by an ids .npy file, through npy::parse_header, Retriever::from_npy,
// add_npy and export_npy; an accepted import must hold the file's exact values.
// The body is pe::fuzz::npy_target in targets.hpp, shared with the regression
// replay in tests/cpp/test_hardening_fuzz_regressions.cpp.

#include <cstddef>
#include <cstdint>

#include "targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pe::fuzz::npy_target(data, size);
  return 0;
}
