// libFuzzer harness fuzz_image: arbitrary bytes through pe::image's format
// sniffing, header reader and decode_memory (libjpeg-turbo, libpng, libwebp
// and libtiff with PIL's rules around them; the library's own BMP, GIF, TGA,
// PNM and PSD readers; the bomb checks before all of them), then
// resize_bilinear and preprocess to small sizes derived from the bytes. The body is pe::fuzz::image_target in targets.hpp, shared with the
// regression replay in tests/cpp/test_hardening_fuzz_regressions.cpp.

#include <cstddef>
#include <cstdint>

#include "targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pe::fuzz::image_target(data, size);
  return 0;
}
