// PSD, the merged (composite) image, read as Pillow 13.0's PsdImagePlugin reads it:
// - modes: bitmap (PIL's "1": a set bit is white), greyscale, duotone and
//   multichannel (the first channel), indexed (a 768-byte colour table, else
//   black: Pillow 9.4 read its grey ramp), RGB (RGBA with exactly 4 channels; further channels are
//   ignored) and CMYK (inverted samples, then PIL's CMYK -> RGB formula);
//   8 bits a sample only (PIL refuses 16- and 32-bit PSDs and Lab, as here);
// - raw or PackBits composite data (PIL refuses ZIP-compressed data too);
//   PackBits rows are read as one stream per channel from where PIL computes
//   it starts: after the row counts of the channels PIL reads (so a file with
//   more channels than the mode uses is misread by PIL, and identically here);
// - the layer and mask section is skipped (its size and the layer records'
//   size are read, not the records): Pillow 13 parses the layer records only
//   when a layer is asked for, so layers with masks or grey + alpha channels
//   do not stop the merged image from being read (Pillow 9.4 parsed them on
//   opening and refused such files).
// Pixel data that ends before the last row is an error, as in PIL.

#include <string>
#include <vector>

#include "image/codecs.hpp"

namespace pe::image::detail {
namespace {

/// a + b and a * b clamped to int64 (Python's integers do not overflow; past
/// 2^62 an offset is past any file anyway).
int64_t clamp128(__int128 v) {
  constexpr int64_t kMax = int64_t{1} << 62;
  return v > kMax ? kMax : v < -kMax ? -kMax : static_cast<int64_t>(v);
}
int64_t add(int64_t a, int64_t b) { return clamp128(static_cast<__int128>(a) + b); }
int64_t multiply(int64_t a, int64_t b) { return clamp128(static_cast<__int128>(a) * b); }

/// A Python file object over bytes: read() may come up short, seek() may go
/// past the end; reading an integer from a short read is an error.
class Stream {
 public:
  Stream(const Source& in, const uint8_t* data, size_t size, const char* where)
      : in_(in), data_(data), size_(size), where_(where) {}

  int64_t tell() const { return pos_; }
  void seek(int64_t position) {
    if (position < 0) fail("a negative offset");
    pos_ = position;
  }
  /// Python's read(n): n < 0 reads everything left.
  std::pair<const uint8_t*, size_t> read(int64_t n) {
    const int64_t left = pos_ < static_cast<int64_t>(size_) ? static_cast<int64_t>(size_) - pos_ : 0;
    const int64_t take = n < 0 ? left : std::min(n, left);
    const uint8_t* start = data_ + std::min<int64_t>(pos_, static_cast<int64_t>(size_));
    pos_ = add(pos_, n < 0 ? take : n);
    return {start, static_cast<size_t>(take)};
  }
  /// ImageFile._safe_read: exactly n bytes or an error.
  const uint8_t* safe_read(int64_t n) {
    if (n <= 0) return data_;
    auto [start, got] = read(n);
    if (static_cast<int64_t>(got) < n) truncate();
    return start;
  }
  uint32_t u32() {
    auto [p, got] = read(4);
    if (got < 4) truncate();
    return be32(p);
  }
  uint16_t u16() {
    auto [p, got] = read(2);
    if (got < 2) truncate();
    return be16(p);
  }
  uint8_t u8() {
    auto [p, got] = read(1);
    if (got < 1) truncate();
    return p[0];
  }
  [[noreturn]] void truncate() { truncated(in_, "PSD", std::string("inside its ") + where_); }
  [[noreturn]] void fail(const std::string& what) {
    corrupt(in_, std::string("corrupt PSD: ") + what + " in its " + where_ + " (PIL cannot open it either)");
  }

 private:
  const Source& in_;
  const uint8_t* data_;
  size_t size_;
  const char* where_;
  int64_t pos_ = 0;
};

enum class Mode { bilevel, grey, palette, rgb, rgba, cmyk };

struct Channel {
  bool packbits = false;
  int64_t offset = 0;
};

struct PsdLayout {
  int64_t width = 0, height = 0;
  Mode mode = Mode::rgb;
  int channels = 0;
  Palette palette;
  bool compressed_other = false;  ///< composite compression PIL has no decoder for
  int compression = 0;
  std::vector<Channel> tiles;
};

/// _maketile's reads, for a layer channel or the composite: where the data of
/// each channel starts; moves `stream` past the data as PIL does.
std::vector<Channel> make_tiles(Stream& stream, int64_t xsize, int64_t ysize, int channels, int* compression_out) {
  const int compression = stream.u16();
  if (compression_out != nullptr) *compression_out = compression;
  int64_t offset = stream.tell();
  std::vector<Channel> tiles;
  if (compression == 0) {
    for (int c = 0; c < channels; ++c) {
      tiles.push_back(Channel{false, offset});
      offset = add(offset, multiply(xsize, ysize));
    }
  } else if (compression == 1) {
    auto [counts, got] = stream.read(multiply(int64_t{channels} * 2, ysize));
    offset = stream.tell();
    size_t i = 0;
    for (int c = 0; c < channels; ++c) {
      tiles.push_back(Channel{true, offset});
      for (int64_t y = 0; y < ysize; ++y) {
        if (i + 2 > got) stream.truncate();
        offset += be16(counts + i);
        i += 2;
      }
    }
  }
  stream.seek(offset);
  if (offset & 1) stream.read(1);
  return tiles;
}

PsdLayout read_layout(const Source& in, bool decoding) {
  Stream file(in, in.data, in.size, "header");
  const uint8_t* header = file.safe_read(26);
  if (be16(header + 4) != 1) corrupt(in, "not a readable image: a PSD of version " + std::to_string(be16(header + 4)));
  const int bits = be16(header + 22);
  const int psd_channels = be16(header + 12);
  const int psd_mode = be16(header + 24);
  PsdLayout layout;
  int channels = 1;
  if (bits == 1 && psd_mode == 0) {
    layout.mode = Mode::bilevel;
  } else if (bits == 8 && (psd_mode == 0 || psd_mode == 1 || psd_mode == 7 || psd_mode == 8)) {
    layout.mode = Mode::grey;
  } else if (bits == 8 && psd_mode == 2) {
    layout.mode = Mode::palette;
  } else if (bits == 8 && psd_mode == 3) {
    layout.mode = Mode::rgb;
    channels = 3;
  } else if (bits == 8 && psd_mode == 4) {
    layout.mode = Mode::cmyk;
    channels = 4;
  } else if (bits == 8 && psd_mode == 9) {
    unsupported(in, "Lab PSD images are not supported (PIL converts Lab to RGB with LittleCMS colour management, "
                    "which this library does not reproduce); convert it to RGB first");
  } else {
    unsupported(in, "a PSD of colour mode " + std::to_string(psd_mode) + " with " + std::to_string(bits) +
                        " bits a sample is not supported (PIL reads 8-bit bitmap, greyscale, indexed, RGB, CMYK, "
                        "duotone and multichannel); flatten it to 8 bits and save it as PNG");
  }
  if (channels > psd_channels) {
    corrupt(in, "corrupt PSD: " + std::to_string(psd_channels) + " channels, fewer than its mode needs");
  }
  if (layout.mode == Mode::rgb && psd_channels == 4) {
    layout.mode = Mode::rgba;
    channels = 4;
  }
  layout.channels = channels;
  layout.width = be32(header + 18);
  layout.height = be32(header + 14);
  if (decoding) check_size(in, "PSD", layout.width, layout.height);  // before the sections are walked
  Stream sections(in, in.data, in.size, "colour, resource and layer sections");
  sections.seek(26);
  // Colour mode data.
  const int64_t color_bytes = sections.u32();
  if (color_bytes != 0) {
    auto [table, got] = sections.read(color_bytes);
    if (layout.mode == Mode::palette && color_bytes == 768) {  // "RGB;L": 256 reds, 256 greens, 256 blues
      for (size_t i = 0; i < 256; ++i) {
        for (size_t c = 0; c < 3; ++c) {
          const size_t at = c * 256 + i;
          layout.palette.rgb[i * 3 + c] = at < got ? table[at] : 0;
        }
      }
      if (got < 768) sections.truncate();
    }
  }
  // Image resources: PIL reads each one.
  const int64_t resource_bytes = sections.u32();
  if (resource_bytes != 0) {
    const int64_t end = add(sections.tell(), resource_bytes);
    while (sections.tell() < end) {
      sections.read(4);  // signature
      sections.u16();    // id
      const int name_length = sections.u8();
      auto [name, name_got] = sections.read(name_length);
      (void)name;
      if (!(name_got & 1)) sections.read(1);
      auto [body, body_got] = sections.read(sections.u32());
      (void)body;
      if (body_got & 1) sections.read(1);
    }
  }
  // Layer and mask information.
  const int64_t layer_section = sections.u32();
  if (layer_section != 0) {
    const int64_t end = add(sections.tell(), layer_section);
    sections.u32();  // the layer records' size: Pillow 13 parses them only when a layer is asked for
    sections.seek(end);
  }
  layout.tiles = make_tiles(sections, layout.width, layout.height, channels, &layout.compression);
  return layout;
}

PsdLayout checked_layout(const Source& in, bool decoding) {
  PsdLayout layout = read_layout(in, decoding);
  if (layout.compression != 0 && layout.compression != 1) {
    unsupported(in, "PSD image data compressed with method " + std::to_string(layout.compression) +
                        (layout.compression == 2 || layout.compression == 3 ? " (ZIP)" : "") +
                        " is not supported (PIL reads raw and PackBits data only)");
  }
  return layout;
}

/// One channel's samples, rows of row_bytes bytes, as PIL's raw or PackBits decoder reads them.
void read_channel(const Source& in, const Channel& channel, int64_t row_bytes, int64_t height, uint8_t* out) {
  if (!channel.packbits) {
    const uint64_t needed = static_cast<uint64_t>(row_bytes) * static_cast<uint64_t>(height);
    if (static_cast<uint64_t>(channel.offset) > in.size || in.size - channel.offset < needed) {
      truncated(in, "PSD", "inside its image data");
    }
    std::memcpy(out, in.data + channel.offset, static_cast<size_t>(needed));
    return;
  }
  // PIL's ImagingPackbitsDecode: one stream of packets for the whole channel;
  // a packet reaching past the end of a row loses its excess.
  size_t at = static_cast<size_t>(std::min<int64_t>(channel.offset, static_cast<int64_t>(in.size)));
  int64_t x = 0, y = 0;
  uint8_t* row = out;
  for (;;) {
    if (at >= in.size) truncated(in, "PSD", "inside its PackBits image data");
    const uint8_t n = in.data[at];
    if (n & 0x80) {
      if (n == 0x80) {  // no-op
        ++at;
        continue;
      }
      if (in.size - at < 2) truncated(in, "PSD", "inside its PackBits image data");
      for (int count = 257 - n; count > 0 && x < row_bytes; --count) row[x++] = in.data[at + 1];
      at += 2;
    } else {
      const size_t length = size_t{n} + 2;
      if (in.size - at < length) truncated(in, "PSD", "inside its PackBits image data");
      for (size_t i = 1; i < length && x < row_bytes; ++i) row[x++] = in.data[at + i];
      at += length;
    }
    if (x >= row_bytes) {
      x = 0;
      if (++y >= height) return;
      row += row_bytes;
    }
  }
}

}  // namespace

ImageInfo info_psd(const Source& in) {
  const PsdLayout layout = checked_layout(in, false);
  return ImageInfo{"PSD", layout.width, layout.height};
}

Image decode_psd(const Source& in) {
  const PsdLayout layout = checked_layout(in, true);
  const int64_t width = layout.width, height = layout.height;
  const int64_t row_bytes = layout.mode == Mode::bilevel ? (width + 7) / 8 : width;
  Image image = new_image(in, width, height);
  const size_t plane = static_cast<size_t>(row_bytes * height);
  std::vector<uint8_t> planes;
  try {
    planes.resize(plane * std::min<size_t>(layout.tiles.size(), 4));
  } catch (const std::bad_alloc&) {
    corrupt(in, "not enough memory to decode this PSD");
  }
  // PIL decodes the channels in file order (sorted by offset); each writes its own band.
  for (size_t c = 0; c < layout.tiles.size() && c < 4; ++c) {
    read_channel(in, layout.tiles[c], row_bytes, height, planes.data() + c * plane);
  }
  uint8_t* out = image.pixels.data();
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x, out += 3) {
      const size_t i = static_cast<size_t>(y * row_bytes + x);
      switch (layout.mode) {
        case Mode::bilevel: {
          const uint8_t byte = planes[static_cast<size_t>(y * row_bytes + (x >> 3))];
          out[0] = out[1] = out[2] = ((byte >> (7 - (x & 7))) & 1) ? 255 : 0;
          break;
        }
        case Mode::grey:
          out[0] = out[1] = out[2] = planes[i];
          break;
        case Mode::palette: {
          const uint8_t* rgb = layout.palette[planes[i]];
          out[0] = rgb[0];
          out[1] = rgb[1];
          out[2] = rgb[2];
          break;
        }
        case Mode::rgb: case Mode::rgba:
          out[0] = planes[i];
          out[1] = planes[plane + i];
          out[2] = planes[2 * plane + i];
          break;
        case Mode::cmyk:  // "C;I" etc.: the samples are inverted ink
          cmyk_to_rgb(255 - planes[i], 255 - planes[plane + i], 255 - planes[2 * plane + i],
                      255 - planes[3 * plane + i], out);
          break;
      }
    }
  }
  return image;
}

}  // namespace pe::image::detail
