#pragma once
// pe::detail::npy — just enough of numpy's .npy format (v1.0 - v3.0) to move
// galleries between pe::Retriever, numpy (np.save / np.load) and FAISS.
// Format: "\x93NUMPY", major, minor, header length (u16 for v1, u32 for v2/3),
// a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (N, D), }
// padded with spaces to a multiple of 64 bytes and ended by '\n', then the data.
//
// Thread safety: pure functions.

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/file_io.hpp"
#include "pe/error.hpp"

namespace pe::detail::npy {

struct Header {
  std::string descr;            ///< e.g. "<f4", "<i8"
  bool fortran_order = false;
  std::vector<int64_t> shape;
  size_t data_offset = 0;       ///< bytes before the data
};

inline Header parse_header(const uint8_t* data, size_t size, const std::string& path) {
  static const char kMagic[] = "\x93NUMPY";
  if (size < 10 || std::memcmp(data, kMagic, 6) != 0) {
    throw CorruptDataError(path + " is not a .npy file (it does not start with \\x93NUMPY); write it with np.save");
  }
  const int major = data[6];
  size_t header_length = 0;
  size_t prefix = 0;
  if (major == 1) {
    header_length = static_cast<size_t>(data[8]) | (static_cast<size_t>(data[9]) << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) throw CorruptDataError(path + ": .npy header is truncated");
    header_length = static_cast<size_t>(data[8]) | (static_cast<size_t>(data[9]) << 8) |
                    (static_cast<size_t>(data[10]) << 16) | (static_cast<size_t>(data[11]) << 24);
    prefix = 12;
  } else {
    throw VersionMismatchError(path + ": .npy format version " + std::to_string(major) +
                               " is not supported (1, 2 and 3 are); save it with np.save from numpy 1.x or 2.x");
  }
  if (header_length > size - prefix) throw CorruptDataError(path + ": .npy header is truncated");
  const std::string dict(reinterpret_cast<const char*>(data + prefix), header_length);

  Header header;
  header.data_offset = prefix + header_length;
  auto value_after = [&](const char* key) {
    const auto at = dict.find(key);
    if (at == std::string::npos) {
      throw CorruptDataError(path + ": .npy header has no " + std::string(key) + " entry: " + dict);
    }
    auto position = dict.find(':', at + std::strlen(key));
    if (position == std::string::npos) throw CorruptDataError(path + ": malformed .npy header: " + dict);
    ++position;
    while (position < dict.size() && dict[position] == ' ') ++position;
    return position;
  };
  {
    const auto position = value_after("'descr'");
    const char quote = dict[position];
    const auto end = dict.find(quote, position + 1);
    if ((quote != '\'' && quote != '"') || end == std::string::npos) {
      throw CorruptDataError(path + ": malformed descr in .npy header: " + dict);
    }
    header.descr = dict.substr(position + 1, end - position - 1);
  }
  {
    const auto position = value_after("'fortran_order'");
    header.fortran_order = dict.compare(position, 4, "True") == 0;
  }
  {
    const auto position = value_after("'shape'");
    const auto end = dict.find(')', position);
    if (dict[position] != '(' || end == std::string::npos) {
      throw CorruptDataError(path + ": malformed shape in .npy header: " + dict);
    }
    const std::string inside = dict.substr(position + 1, end - position - 1);
    size_t cursor = 0;
    while (cursor < inside.size()) {
      while (cursor < inside.size() && (inside[cursor] == ' ' || inside[cursor] == ',')) ++cursor;
      if (cursor >= inside.size()) break;
      size_t used = 0;
      long long extent = -1;
      try {
        extent = std::stoll(inside.substr(cursor), &used);
      } catch (const std::logic_error&) {  // not a number, or past int64 (std::out_of_range)
        extent = -1;
      }
      if (extent < 0 || used == 0) throw CorruptDataError(path + ": malformed shape in .npy header: " + dict);
      header.shape.push_back(extent);
      cursor += used;
      while (cursor < inside.size() && inside[cursor] == 'L') ++cursor;  // Python 2 longs
    }
  }
  return header;
}

inline std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

/// Writes a v1.0 header; the data (C order, little-endian) follows.
inline void write_header(ByteSink& sink, const std::string& descr, const std::vector<int64_t>& shape) {
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape_text(shape) + ", }";
  const size_t unpadded = 10 + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict.push_back('\n');
  if (dict.size() > 65535) throw InvalidArgumentError(".npy header too long for shape " + shape_text(shape));
  const unsigned char prefix[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<unsigned char>(dict.size() & 0xff),
                                    static_cast<unsigned char>(dict.size() >> 8)};
  sink.write(prefix, sizeof(prefix));
  sink.write(dict.data(), dict.size());
}

}  // namespace pe::detail::npy
