#pragma once
// Building image files byte by byte in the C++ tests: little- and big-endian
// integers, text, and PNG chunks with their CRC. Shared by test_image_formats.cpp
// (hand-computed cases) and test_hardening_image.cpp (hostile headers).
// Thread safety: plain functions on the caller's buffer.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pe::test {

using Bytes = std::vector<uint8_t>;

inline void put16le(Bytes& out, uint32_t v) { out.insert(out.end(), {uint8_t(v), uint8_t(v >> 8)}); }
inline void put32le(Bytes& out, uint32_t v) {
  out.insert(out.end(), {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)});
}
inline void put16be(Bytes& out, uint32_t v) { out.insert(out.end(), {uint8_t(v >> 8), uint8_t(v)}); }
inline void put32be(Bytes& out, uint32_t v) {
  out.insert(out.end(), {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)});
}
// A loop, not out.insert(range): inlined into a caller that starts from an empty
// vector, the range insert draws a false -Wstringop-overflow from GCC 12 (-Werror).
inline void put_text(Bytes& out, const std::string& text) {
  for (const char c : text) out.push_back(static_cast<uint8_t>(c));
}

/// CRC-32 (IEEE, as PNG and zlib use it), bit by bit: an independent reference.
inline uint32_t crc32(const uint8_t* data, size_t size) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) {
    crc ^= data[i];
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

/// A PNG chunk: length, type, payload, CRC; `claimed_length` >= 0 replaces the real
/// length in the header (for hostile files).
inline void png_chunk(Bytes& out, const char* type, const Bytes& payload, int64_t claimed_length = -1) {
  put32be(out, claimed_length >= 0 ? static_cast<uint32_t>(claimed_length) : static_cast<uint32_t>(payload.size()));
  Bytes typed(type, type + 4);
  typed.insert(typed.end(), payload.begin(), payload.end());
  out.insert(out.end(), typed.begin(), typed.end());
  put32be(out, crc32(typed.data(), typed.size()));
}

}  // namespace pe::test
