// libFuzzer harness fuzz_index: arbitrary bytes loaded as a pe::Retriever index
// (from memory, from a file, from a mapped file; as given and with the
// checksum recomputed so mutations reach the checks behind it), then searched,
// mutated and re-serialised. The body is pe::fuzz::index_target in targets.hpp,
// shared with the regression replay in tests/cpp/test_hardening_fuzz_regressions.cpp.

#include <cstddef>
#include <cstdint>

#include "targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pe::fuzz::index_target(data, size);
  return 0;
}
