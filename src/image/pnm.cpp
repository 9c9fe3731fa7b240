// PBM, PGM and PPM (P1-P6), read as Pillow 13.0's PpmImagePlugin reads them:
// - the header: the magic (up to whitespace), then width, height and (but for
//   P1/P4) maxval as tokens of at most 10 characters parsed like Python's
//   int(); a '#' comment runs to the end of its line and, as in PIL, does not
//   end the token it interrupts; maxval must be 1..65535;
// - binary samples (P5, P6) of 1 byte below maxval 256, 2 big-endian bytes
//   above; plain samples (P2, P3) are decimal tokens; bits (P1, P4) are
//   1 = black;
// - scaling is PIL's: maxval 255 (and 65535 for P5) as stored, otherwise
//   round(v / maxval * 255) in double precision with ties to even (Python's
//   round), a binary sample over maxval clipped to 255 and a plain one refused,
//   as is a negative plain one (Pillow 9.4 kept its low byte);
//   greyscale over maxval 255 becomes PIL's 32-bit "I" (scaled to 65535) and
//   is then clipped to 255 by convert("RGB");
// - plain data is read in PIL's 1 MiB blocks, with PIL's handling of comments
//   and of tokens split between blocks, so a stray character is refused
//   exactly where PIL refuses it; a token split between blocks is stitched
//   onto the next block once (Pillow 9.4 kept stitching it on, so a plain file
//   cut inside a token was filled up with copies of that token).
// Data that ends before the last sample is an error, as in PIL.

#include <cmath>
#include <string>
#include <vector>

#include "image/codecs.hpp"

namespace pe::image::detail {
namespace {

bool is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

/// Python's int() of an ASCII token: optional sign, digits with single
/// underscores between them. False if it is not a number.
bool python_int(const std::string& token, int64_t* value) {
  size_t i = 0;
  bool negative = false;
  if (i < token.size() && (token[i] == '+' || token[i] == '-')) negative = token[i++] == '-';
  if (i >= token.size()) return false;
  int64_t result = 0;
  bool previous_digit = false;
  for (; i < token.size(); ++i) {
    const char c = token[i];
    if (c >= '0' && c <= '9') {
      result = result * 10 + (c - '0');  // at most 10 digits: no overflow
      previous_digit = true;
    } else if (c == '_' && previous_digit && i + 1 < token.size() && token[i + 1] >= '0' && token[i + 1] <= '9') {
      previous_digit = false;
    } else {
      return false;
    }
  }
  *value = negative ? -result : result;
  return true;
}

enum class Kind { bits, grey, rgb };

struct PnmLayout {
  char magic = 0;  ///< '1'..'6'
  Kind kind = Kind::rgb;
  bool plain = false;
  int64_t width = 0, height = 0;
  int64_t max_value = 0;  ///< 0 for bitmaps
  size_t data_offset = 0;
};

PnmLayout read_layout(const Source& in) {
  const uint8_t* data = in.data;
  const size_t size = in.size;
  size_t at = 0;
  std::string magic;
  for (int i = 0; i < 6 && at < size; ++i) {  // PIL's _read_magic
    const uint8_t c = data[at++];
    if (is_space(c)) break;
    magic += static_cast<char>(c);
  }
  PnmLayout layout;
  if (magic.size() != 2 || magic[0] != 'P' || magic[1] < '1' || magic[1] > '6') {
    if (magic == "P0CMYK" || magic == "PyP" || magic == "PyRGBA" || magic == "PyCMYK") {
      unsupported(in, "the PNM variant '" + magic + "' (a PIL extension for its own tests) is not supported");
    }
    if (magic == "P7") unsupported(in, "PAM (P7) images are not supported (PIL 9.4 does not read them either)");
    corrupt(in, "not a readable image: it starts like a PNM file, but its magic '" + magic + "' is not P1-P6");
  }
  layout.magic = magic[1];
  layout.kind = (layout.magic == '1' || layout.magic == '4') ? Kind::bits
                : (layout.magic == '2' || layout.magic == '5') ? Kind::grey : Kind::rgb;
  layout.plain = layout.magic <= '3';
  auto read_token = [&]() -> int64_t {  // PIL's _read_token
    std::string token;
    while (token.size() <= 10) {
      if (at >= size) break;
      const uint8_t c = data[at++];
      if (is_space(c)) {
        if (token.empty()) continue;
        break;
      }
      if (c == '#') {  // to the end of the line, or of the data
        while (at < size && data[at] != '\r' && data[at] != '\n') ++at;
        if (at < size) ++at;
        continue;
      }
      token += static_cast<char>(c);
    }
    if (token.empty()) truncated(in, "PNM", "inside its header");
    if (token.size() > 10) corrupt(in, "corrupt PNM: a header token longer than 10 characters (PIL refuses it too)");
    int64_t value = 0;
    if (!python_int(token, &value)) corrupt(in, "corrupt PNM: the header token '" + token + "' is not a number");
    return value;
  };
  layout.width = read_token();
  layout.height = read_token();
  if (layout.kind != Kind::bits) {
    layout.max_value = read_token();
    if (layout.max_value <= 0 || layout.max_value >= 65536) {
      corrupt(in, "corrupt PNM: maxval " + std::to_string(layout.max_value) + " (it must be 1 to 65535)");
    }
  }
  layout.data_offset = at;
  return layout;
}

/// Python's round(value / max_value * out_max), in double precision.
int64_t pil_scale(int64_t value, int64_t max_value, int64_t out_max) {
  return static_cast<int64_t>(std::nearbyint(static_cast<double>(value) / static_cast<double>(max_value) *
                                             static_cast<double>(out_max)));
}

/// The plain (P1-P3) samples as PIL's PpmPlainDecoder produces them: one
/// byte a sample, or (greyscale over maxval 255) a 32-bit value.
class PlainReader {
 public:
  PlainReader(const Source& in, const PnmLayout& layout) : in_(in), layout_(layout), at_(layout.data_offset) {}

  /// Bits: '0' -> 255 (white), '1' -> 0; samples: scaled to PIL's mode, then
  /// to 8 bits as convert("RGB") does (PIL's "I" clipped). `total` samples.
  std::vector<uint8_t> read(size_t total) {
    std::vector<uint8_t> values;
    values.reserve(std::min<size_t>(total, size_t{1} << 24));
    if (layout_.kind == Kind::bits) {
      while (values.size() != total) {
        std::string block = next_block();
        if (block.empty()) break;
        block = strip_comments(block);
        std::string tokens;
        for (char c : block) {
          if (!is_space(static_cast<uint8_t>(c))) tokens += c;
        }
        for (char c : tokens) {
          if (c != '0' && c != '1') {
            corrupt(in_, std::string("corrupt PBM: the character '") + printable(c) +
                             "' in its pixel data (PIL refuses it too: \"Invalid token\")");
          }
        }
        for (char c : tokens) {
          if (values.size() == total) break;
          values.push_back(c == '0' ? 255 : 0);
        }
      }
      return values;
    }
    const bool wide = layout_.kind == Kind::grey && layout_.max_value > 255;  // PIL's "I"
    const int64_t out_max = wide ? 65535 : 255;
    std::string half;
    bool have_half = false;
    while (values.size() != total) {
      std::string block = next_block();
      if (block.empty()) {
        if (!have_half) break;
        block = " ";  // flush the token split at the end of the last block
      }
      block = strip_comments(block);
      if (have_half) {  // the token split at the end of the previous block
        block = half + block;
        have_half = false;
      }
      std::vector<std::string> tokens = split(block);
      if (!block.empty() && !is_space(static_cast<uint8_t>(block.back()))) {
        half = tokens.back();
        tokens.pop_back();
        have_half = true;
        if (half.size() > 10) too_long(half);
      }
      for (const std::string& token : tokens) {
        if (token.size() > 10) too_long(token);
        int64_t value = 0;
        if (!python_int(token, &value)) {
          corrupt(in_, "corrupt PNM: the sample '" + token.substr(0, 11) + "' is not a number (PIL refuses it too)");
        }
        if (value < 0) {
          corrupt(in_, "corrupt PNM: the negative sample " + std::to_string(value) + " (PIL refuses it too)");
        }
        if (value > layout_.max_value) {
          corrupt(in_, "corrupt PNM: the sample " + std::to_string(value) + " is over maxval " +
                           std::to_string(layout_.max_value) + " (PIL refuses it too)");
        }
        const int64_t scaled = pil_scale(value, layout_.max_value, out_max);
        values.push_back(static_cast<uint8_t>(std::min<int64_t>(scaled, 255)));
        if (values.size() == total) break;
      }
    }
    return values;
  }

 private:
  static constexpr size_t kBlock = 1024 * 1024;  // PIL's ImageFile.SAFEBLOCK

  std::string next_block() {
    if (at_ >= in_.size) return {};
    const size_t length = std::min(kBlock, in_.size - at_);
    std::string block(reinterpret_cast<const char*>(in_.data + at_), length);
    at_ += length;
    return block;
  }

  /// PIL's _ignore_comments: a comment is '#' to the first CR or LF, which
  /// goes with it; one that runs past the block continues into the next.
  std::string strip_comments(std::string block) {
    if (comment_spans_) {
      while (!block.empty()) {
        const long end = comment_end(block, 0);
        if (end != -1) {
          block.erase(0, static_cast<size_t>(end) + 1);
          break;
        }
        block = next_block();
      }
    }
    comment_spans_ = false;
    for (;;) {
      const size_t start = block.find('#');
      if (start == std::string::npos) break;
      const long end = comment_end(block, start);
      if (end != -1) {
        block.erase(start, static_cast<size_t>(end) - start + 1);
      } else {
        block.erase(start);
        comment_spans_ = true;
        break;
      }
    }
    return block;
  }

  /// PIL's _find_comment_end, its arithmetic included ("lowest nonnegative
  /// index" of LF and CR, except when one of them is at 0).
  static long comment_end(const std::string& block, size_t start) {
    const size_t lf = block.find('\n', start), cr = block.find('\r', start);
    const long a = lf == std::string::npos ? -1 : static_cast<long>(lf);
    const long b = cr == std::string::npos ? -1 : static_cast<long>(cr);
    return a * b > 0 ? std::min(a, b) : std::max(a, b);
  }

  static std::vector<std::string> split(const std::string& block) {
    std::vector<std::string> tokens;
    size_t i = 0;
    while (i < block.size()) {
      while (i < block.size() && is_space(static_cast<uint8_t>(block[i]))) ++i;
      const size_t start = i;
      while (i < block.size() && !is_space(static_cast<uint8_t>(block[i]))) ++i;
      if (i > start) tokens.push_back(block.substr(start, i - start));
    }
    return tokens;
  }

  [[noreturn]] void too_long(const std::string& token) {
    corrupt(in_, "corrupt PNM: the sample token '" + token.substr(0, 11) +
                     "...' is longer than 10 characters (PIL refuses it too)");
  }

  static std::string printable(char c) {
    if (c >= 32 && c < 127) return std::string(1, c);
    return "\\x" + std::to_string(static_cast<unsigned char>(c));
  }

  const Source& in_;
  const PnmLayout& layout_;
  size_t at_;
  bool comment_spans_ = false;
};

}  // namespace

ImageInfo info_pnm(const Source& in) {
  const PnmLayout layout = read_layout(in);
  return ImageInfo{"PNM", layout.width, layout.height};
}

Image decode_pnm(const Source& in) {
  const PnmLayout layout = read_layout(in);
  check_size(in, "PNM", layout.width, layout.height);
  const int64_t width = layout.width, height = layout.height;
  Image image = new_image(in, width, height);
  uint8_t* out = image.pixels.data();
  const int bands = layout.kind == Kind::rgb ? 3 : 1;
  const uint64_t samples = static_cast<uint64_t>(width) * static_cast<uint64_t>(height) * bands;
  auto store = [&](uint64_t index, int64_t value) {  // value: PIL's mode sample (I over 255 clipped)
    const uint8_t v = static_cast<uint8_t>(value > 255 ? 255 : value < 0 ? 0 : value);
    if (bands == 3) {
      out[index] = v;
    } else {
      out[index * 3] = out[index * 3 + 1] = out[index * 3 + 2] = v;
    }
  };
  if (layout.plain) {
    PlainReader reader(in, layout);
    const std::vector<uint8_t> values = reader.read(static_cast<size_t>(samples));
    if (values.size() < samples) {
      truncated(in, "PNM", "after " + std::to_string(values.size()) + " of its " + std::to_string(samples) +
                               " samples (PIL: \"not enough image data\")");
    }
    for (uint64_t i = 0; i < samples; ++i) store(i, values[i]);
    return image;
  }
  const uint8_t* data = in.data + layout.data_offset;
  const size_t available = in.size - layout.data_offset;
  if (layout.kind == Kind::bits) {  // P4: rows of ceil(width / 8) bytes, 1 = black ("1;I")
    const size_t row_bytes = static_cast<size_t>((width + 7) / 8);
    if (available / row_bytes < static_cast<size_t>(height)) {
      truncated(in, "PBM", "inside its pixel data, after " + std::to_string(available / row_bytes) + " of " +
                               std::to_string(height) + " rows");
    }
    for (int64_t y = 0; y < height; ++y) {
      const uint8_t* row = data + static_cast<size_t>(y) * row_bytes;
      for (int64_t x = 0; x < width; ++x) store(static_cast<uint64_t>(y * width + x), ((row[x >> 3] >> (7 - (x & 7))) & 1) ? 0 : 255);
    }
    return image;
  }
  const int sample_bytes = layout.max_value < 256 ? 1 : 2;
  const uint64_t needed = samples * sample_bytes;
  if (available < needed) {
    truncated(in, "PNM", "inside its pixel data, after " + std::to_string(available / sample_bytes / bands / width) +
                             " of " + std::to_string(height) + " rows");
  }
  const bool wide = layout.kind == Kind::grey && layout.max_value > 255;
  const int64_t out_max = wide ? 65535 : 255;
  const bool as_stored = layout.max_value == 255 || (layout.kind == Kind::grey && layout.max_value == 65535);
  // Samples take few values: scale each distinct one once.
  std::vector<int64_t> scaled;
  if (!as_stored) {
    scaled.resize(sample_bytes == 1 ? 256 : 65536);
    for (size_t v = 0; v < scaled.size(); ++v) {
      scaled[v] = std::min<int64_t>(out_max, pil_scale(static_cast<int64_t>(v), layout.max_value, out_max));
    }
  }
  if (as_stored && sample_bytes == 1 && bands == 3) {
    std::memcpy(out, data, static_cast<size_t>(samples));
    return image;
  }
  for (uint64_t i = 0; i < samples; ++i) {
    const int value = sample_bytes == 1 ? data[i] : be16(data + 2 * i);
    store(i, as_stored ? value : scaled[static_cast<size_t>(value)]);
  }
  return image;
}

}  // namespace pe::image::detail
