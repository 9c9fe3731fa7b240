// BMP, read as Pillow 13.0's BmpImagePlugin reads it (its own code, not a
// library's): the same header fields, the same tables of supported depths and
// bit-field layouts, PIL's unpackers (5- and 6-bit channels expanded as
// v * 255 / 31 and v * 255 / 63, rounded down) and its RLE decoder, so the
// pixels are PIL's:
// - header sizes 12 (OS/2 v1: 16-bit sides), 40, 52, 56, 64, 108 and 124
//   (52: the r, g, b masks in the header, 56 and up: the alpha mask too); a
//   height whose top byte is 0xFF means top-down rows; `planes` is not looked
//   at;
// - a palette whose entries are exactly the grey ramp (or black and white for
//   2 colours, black for 1) makes the image greyscale, and PIL then reads
//   every pixel as one byte ("L") or, for 1 or 2 colours, one bit ("1")
//   whatever the file's depth, as here;
// - palette indices past the palette read black (Pillow 9.4 read its grey
//   ramp (i, i, i) there); more than 256 palette entries is an error when PIL
//   loads the palette;
// - when the pixel-data offset points right after the header, the palette is
//   assumed to sit in between (its entries' size: 3 bytes for OS/2 v1, else 4);
// - RLE4/RLE8 follow PIL's BmpRleDecoder step by step: delta moves and
//   absolute runs stop at the last pixel, an odd-length absolute run in RLE4
//   reads its last byte's high nibble only (Pillow 9.4 read one byte too few
//   there, so that ordinary RLE4 files decoded wrongly), encoded runs stop at
//   the row end, word alignment is on the file offset; the indices of a
//   black-and-white RLE image are grey levels, any non-zero one white; RLE
//   data that ends (or stops with end-of-bitmap) before the last pixel is an
//   error, as in PIL ("not enough image data").
// Truncated uncompressed pixel data is an error, as in PIL ("image file is
// truncated"); only the padding after the last row may be missing. A DIB (the
// same without the 14-byte file header, as the clipboard holds it) is read as
// PIL's DIB plugin reads it: the pixels follow the palette.

#include <string>
#include <vector>

#include "image/codecs.hpp"

namespace pe::image::detail {
namespace {

enum class Raw {
  bits1,      // "1": 1 bit a pixel, 1 = white
  grey8,      // "L"
  index1,     // "P;1"
  index4,     // "P;4"
  index8,     // "P"
  bgr15,      // "BGR;15"
  bgr16,      // "BGR;16"
  bgr,        // "BGR"
  bgrx,       // "BGRX", "BGRA"
  xbgr,       // "XBGR", "ABGR"
  bgxr,       // "BGXR", "BGAR"
  rgba,       // "RGBA"
};

int raw_bits(Raw raw) {
  switch (raw) {
    case Raw::bits1: case Raw::index1: return 1;
    case Raw::index4: return 4;
    case Raw::grey8: case Raw::index8: return 8;
    case Raw::bgr15: case Raw::bgr16: return 16;
    case Raw::bgr: return 24;
    default: return 32;
  }
}

enum class Mode { bilevel, grey, palette, rgb };

struct BmpLayout {
  int64_t width = 0, height = 0;
  int bits = 0;
  uint32_t compression = 0;
  bool top_down = false;
  Mode mode = Mode::rgb;
  Raw raw = Raw::bgr;
  size_t data_offset = 0;
  int64_t stride = 0;
  Palette palette;
  int64_t palette_entries = 0;  ///< how many entries PIL's putpalette would load (P mode)
};

constexpr uint32_t kRaw = 0, kRle8 = 1, kRle4 = 2, kBitfields = 3;

/// PIL's BmpImageFile._bitmap; `dib`: the info header is at the start of the
/// data, with no file header (PIL's DibImageFile), so no pixel-data offset.
BmpLayout read_layout(const Source& in, bool dib) {
  const size_t base = dib ? 0 : 14;
  const uint8_t* data = in.data;
  const size_t size = in.size;
  if (size < base + 4) truncated(in, "BMP", "inside its file header");
  BmpLayout layout;
  size_t offset = dib ? 0 : le32(data + 10);
  const uint32_t header_size = le32(data + base);
  if (header_size != 12 && header_size != 40 && header_size != 52 && header_size != 56 && header_size != 64 &&
      header_size != 108 && header_size != 124) {
    // PIL reads the header before judging its size: a short file fails there.
    if (header_size > 4 && size - base - 4 < header_size - 4) truncated(in, "BMP", "inside its info header");
    unsupported(in, "a BMP with a " + std::to_string(header_size) +
                        "-byte info header is not supported (PIL reads the 12, 40, 52, 56, 64, 108 and 124-byte "
                        "headers only); convert it to a standard BMP or PNG");
  }
  if (size - base - 4 < header_size - 4) truncated(in, "BMP", "inside its info header");
  const uint8_t* header = data + base + 4;  // the header after its size field
  size_t at = base + header_size;           // where PIL's file position is now
  uint32_t colors = 0;
  uint32_t masks[4] = {0, 0, 0, 0};
  if (header_size == 12) {
    layout.width = le16(header);
    layout.height = le16(header + 2);
    layout.bits = le16(header + 6);
    layout.compression = kRaw;
  } else {
    layout.top_down = header[7] == 0xFF;
    layout.width = le32(header);
    layout.height = layout.top_down ? (int64_t{1} << 32) - le32(header + 4) : int64_t{le32(header + 4)};
    layout.bits = le16(header + 10);
    layout.compression = le32(header + 12);
    colors = le32(header + 28);
    if (layout.compression == kBitfields) {
      if (header_size - 4 >= 48) {  // the masks are in the header; the alpha one from 56 bytes up
        for (int i = 0; i < (header_size - 4 >= 52 ? 4 : 3); ++i) masks[i] = le32(header + 36 + 4 * i);
      } else {
        // A 40-byte header: the three masks follow it, no alpha mask.
        if (size - at < 12) truncated(in, "BMP", "inside its bit-field masks");
        for (int i = 0; i < 3; ++i) masks[i] = le32(data + at + 4 * i);
        at += 12;
      }
    }
  }
  // PIL computes the colour count before it checks the depth (1 << bits).
  const uint64_t color_count = colors != 0 ? colors : layout.bits < 64 ? uint64_t{1} << layout.bits : ~uint64_t{0};
  if (!dib && offset == 14 + header_size && layout.bits <= 8) offset += (header_size == 12 ? 3 : 4) * color_count;

  switch (layout.bits) {
    case 1: layout.mode = Mode::palette; layout.raw = Raw::index1; break;
    case 4: layout.mode = Mode::palette; layout.raw = Raw::index4; break;
    case 8: layout.mode = Mode::palette; layout.raw = Raw::index8; break;
    case 16: layout.mode = Mode::rgb; layout.raw = Raw::bgr15; break;
    case 24: layout.mode = Mode::rgb; layout.raw = Raw::bgr; break;
    case 32: layout.mode = Mode::rgb; layout.raw = Raw::bgrx; break;
    default:
      unsupported(in, "a " + std::to_string(layout.bits) +
                          "-bit BMP is not supported (PIL reads 1, 4, 8, 16, 24 and 32 bits a pixel)");
  }
  if (layout.compression == kBitfields) {
    const uint32_t r = masks[0], g = masks[1], b = masks[2], a = masks[3];
    auto is = [&](uint32_t rr, uint32_t gg, uint32_t bb, uint32_t aa) { return r == rr && g == gg && b == bb && a == aa; };
    auto is3 = [&](uint32_t rr, uint32_t gg, uint32_t bb) { return r == rr && g == gg && b == bb; };
    bool known = true;
    if (layout.bits == 32) {
      if (is(0xFF0000, 0xFF00, 0xFF, 0)) layout.raw = Raw::bgrx;
      else if (is(0xFF000000, 0xFF0000, 0xFF00, 0)) layout.raw = Raw::xbgr;
      else if (is(0xFF000000, 0xFF00, 0xFF, 0)) layout.raw = Raw::bgxr;
      else if (is(0xFF000000, 0xFF0000, 0xFF00, 0xFF)) layout.raw = Raw::xbgr;  // "ABGR"
      else if (is(0xFF, 0xFF00, 0xFF0000, 0xFF000000)) layout.raw = Raw::rgba;
      else if (is(0xFF0000, 0xFF00, 0xFF, 0xFF000000)) layout.raw = Raw::bgrx;  // "BGRA"
      else if (is(0xFF000000, 0xFF00, 0xFF, 0xFF0000)) layout.raw = Raw::bgxr;  // "BGAR"
      else if (is(0, 0, 0, 0)) layout.raw = Raw::bgrx;                          // "BGRA"
      else known = false;
    } else if (layout.bits == 24) {
      known = is3(0xFF0000, 0xFF00, 0xFF);
    } else if (layout.bits == 16) {
      if (is3(0xF800, 0x7E0, 0x1F)) layout.raw = Raw::bgr16;
      else if (is3(0x7C00, 0x3E0, 0x1F)) layout.raw = Raw::bgr15;
      else known = false;
    } else {
      known = false;
    }
    if (!known) {
      unsupported(in, "this BMP's bit-field layout (masks " + std::to_string(r) + ", " + std::to_string(g) + ", " +
                          std::to_string(b) + ", " + std::to_string(a) +
                          ") is not supported (PIL reads 5-5-5, 5-6-5 and 8-bit channels only); convert it to a "
                          "24-bit BMP or PNG");
    }
  } else if (layout.compression != kRaw && layout.compression != kRle8 && layout.compression != kRle4) {
    unsupported(in, "BMP compression " + std::to_string(layout.compression) +
                        (layout.compression == 4 ? " (embedded JPEG)" : layout.compression == 5 ? " (embedded PNG)" : "") +
                        " is not supported (PIL reads uncompressed, RLE4, RLE8 and bit-field BMPs); convert it to PNG");
  }
  if (layout.mode == Mode::palette) {
    if (color_count == 0 || color_count > 65536) {
      corrupt(in, "corrupt BMP: a palette of " + std::to_string(color_count) + " colours (PIL reads 1 to 65536)");
    }
    const size_t entry_bytes = header_size == 12 ? 3 : 4;
    const size_t wanted = entry_bytes * color_count;
    const size_t available = at <= size ? std::min(wanted, size - at) : 0;  // PIL's read() may come up short
    const uint8_t* entries = data + std::min(at, size);
    bool greyscale = true;
    for (uint64_t index = 0; index < color_count && greyscale; ++index) {
      const uint64_t value = color_count == 2 ? (index == 0 ? 0 : 255) : (index & 255);
      const size_t first = index * entry_bytes;
      if (first + 3 > available) {
        greyscale = false;
        break;
      }
      for (int c = 0; c < 3; ++c) greyscale = greyscale && entries[first + c] == value;
    }
    at += available;
    if (greyscale) {
      layout.mode = color_count <= 2 ? Mode::bilevel : Mode::grey;
      layout.raw = color_count <= 2 ? Raw::bits1 : Raw::grey8;
    } else {
      layout.palette_entries = static_cast<int64_t>(available / entry_bytes);
      for (int64_t i = 0; i < layout.palette_entries && i < 256; ++i) {
        uint8_t* rgb = &layout.palette.rgb[static_cast<size_t>(i) * 3];
        const uint8_t* bgr = entries + i * entry_bytes;
        rgb[0] = bgr[2];
        rgb[1] = bgr[1];
        rgb[2] = bgr[0];
      }
    }
  }
  layout.data_offset = offset != 0 ? offset : at;
  layout.stride = ((layout.width * layout.bits + 31) >> 3) & ~int64_t{3};
  return layout;
}

/// One row of PIL's unpacker output as RGB.
void unpack_row(const BmpLayout& layout, const uint8_t* in, int64_t width, uint8_t* out) {
  for (int64_t x = 0; x < width; ++x, out += 3) {
    switch (layout.raw) {
      case Raw::bits1:
        out[0] = out[1] = out[2] = ((in[x >> 3] >> (7 - (x & 7))) & 1) ? 255 : 0;
        break;
      case Raw::grey8:
        out[0] = out[1] = out[2] = in[x];
        break;
      case Raw::index1: case Raw::index4: case Raw::index8: {
        const int index = layout.raw == Raw::index8 ? in[x]
                          : layout.raw == Raw::index4 ? (in[x >> 1] >> (4 - 4 * (x & 1))) & 15
                                                      : (in[x >> 3] >> (7 - (x & 7))) & 1;
        const uint8_t* rgb = layout.palette[index];
        out[0] = rgb[0];
        out[1] = rgb[1];
        out[2] = rgb[2];
        break;
      }
      case Raw::bgr15: case Raw::bgr16: {
        const int pixel = in[2 * x] | (in[2 * x + 1] << 8);
        out[2] = static_cast<uint8_t>((pixel & 31) * 255 / 31);
        if (layout.raw == Raw::bgr15) {
          out[1] = static_cast<uint8_t>(((pixel >> 5) & 31) * 255 / 31);
          out[0] = static_cast<uint8_t>(((pixel >> 10) & 31) * 255 / 31);
        } else {
          out[1] = static_cast<uint8_t>(((pixel >> 5) & 63) * 255 / 63);
          out[0] = static_cast<uint8_t>(((pixel >> 11) & 31) * 255 / 31);
        }
        break;
      }
      case Raw::bgr:
        out[0] = in[3 * x + 2];
        out[1] = in[3 * x + 1];
        out[2] = in[3 * x];
        break;
      case Raw::bgrx:
        out[0] = in[4 * x + 2];
        out[1] = in[4 * x + 1];
        out[2] = in[4 * x];
        break;
      case Raw::xbgr:
        out[0] = in[4 * x + 3];
        out[1] = in[4 * x + 2];
        out[2] = in[4 * x + 1];
        break;
      case Raw::bgxr:
        out[0] = in[4 * x + 3];
        out[1] = in[4 * x + 1];
        out[2] = in[4 * x];
        break;
      case Raw::rgba:
        out[0] = in[4 * x];
        out[1] = in[4 * x + 1];
        out[2] = in[4 * x + 2];
        break;
    }
  }
}

/// PIL's BmpRleDecoder: the palette indices, one byte a pixel, top row of the
/// file first (the raw decoder then flips them as the header says).
std::vector<uint8_t> rle_indices(const Source& in, const BmpLayout& layout) {
  const bool rle4 = layout.compression == kRle4;
  const uint64_t width = static_cast<uint64_t>(layout.width);
  const uint64_t total = width * static_cast<uint64_t>(layout.height);
  std::vector<uint8_t> indices;
  indices.reserve(static_cast<size_t>(std::min<uint64_t>(total, uint64_t{1} << 26)));
  size_t at = layout.data_offset;
  auto read = [&](size_t count) -> size_t {  // Python's fd.read: as much as there is
    const size_t start = at;
    at = at < in.size ? std::min(in.size, at + count) : at + count;
    return start < in.size ? std::min(count, in.size - start) : 0;
  };
  uint64_t x = 0;
  while (indices.size() < total) {
    if (at + 2 > in.size) break;
    const uint8_t count = in.data[at];
    const uint8_t byte = in.data[at + 1];
    at += 2;
    if (count != 0) {  // encoded: `count` pixels of one byte (two alternating nibbles in RLE4)
      uint64_t pixels = count;
      if (x + pixels > width) pixels = x < width ? width - x : 0;
      for (uint64_t i = 0; i < pixels; ++i) {
        indices.push_back(rle4 ? static_cast<uint8_t>(i % 2 == 0 ? byte >> 4 : byte & 15) : byte);
      }
      x += pixels;
    } else if (byte == 0) {  // end of line
      while (indices.size() % width != 0) indices.push_back(0);
      x = 0;
    } else if (byte == 1) {  // end of bitmap
      break;
    } else if (byte == 2) {  // delta: move right and up by the next two bytes, stopping at the last pixel
      if (at + 2 > in.size) break;
      const uint64_t right = in.data[at], up = in.data[at + 1];
      at += 2;
      const uint64_t skip = std::min<uint64_t>(right + up * width, total - indices.size());
      indices.insert(indices.end(), static_cast<size_t>(skip), 0);
      x = indices.size() % width;
    } else {  // absolute: `byte` pixels follow (two a byte in RLE4, the last byte's high nibble alone when odd)
      const uint64_t pixels = std::min<uint64_t>(byte, total - indices.size());  // up to the last pixel
      const size_t wanted = static_cast<size_t>(rle4 ? (pixels + 1) / 2 : pixels);
      const size_t start = at;
      const size_t got = read(wanted);
      for (size_t i = 0; i < got; ++i) {
        const uint8_t value = in.data[start + i];
        if (rle4) {
          indices.push_back(value >> 4);
          if (2 * i + 1 < pixels) indices.push_back(value & 15);
        } else {
          indices.push_back(value);
        }
      }
      if (got < wanted || indices.size() == total) break;
      x += byte;
      if (at % 2 != 0) at += 1;  // word alignment, on the file offset as PIL's fd.tell()
    }
  }
  return indices;
}

}  // namespace

ImageInfo info_bmp(const Source& in) {
  const BmpLayout layout = read_layout(in, false);
  return ImageInfo{"BMP", layout.width, layout.height};
}

ImageInfo info_dib(const Source& in) {
  const BmpLayout layout = read_layout(in, true);
  return ImageInfo{"DIB", layout.width, layout.height};
}

namespace {

Image decode_layout(const Source& in, const BmpLayout& layout) {  check_size(in, "BMP", layout.width, layout.height);
  if (layout.mode == Mode::palette && layout.palette_entries > 256) {
    corrupt(in, "corrupt BMP: its palette has " + std::to_string(layout.palette_entries) +
                    " entries, more than 256 (PIL refuses it too: \"invalid palette size\")");
  }
  const int64_t width = layout.width, height = layout.height;
  Image image = new_image(in, width, height);
  const size_t out_stride = static_cast<size_t>(width) * 3;
  auto output_row = [&](int64_t file_row) {  // file rows run bottom-up unless top_down
    const int64_t y = layout.top_down ? file_row : height - 1 - file_row;
    return image.pixels.data() + static_cast<size_t>(y) * out_stride;
  };
  if (layout.compression == kRle8 || layout.compression == kRle4) {
    if (layout.mode == Mode::rgb) {
      unsupported(in, "an RLE-compressed BMP whose pixels are not palette indices is not supported "
                      "(PIL cannot unpack it either)");
    }
    const std::vector<uint8_t> indices = rle_indices(in, layout);
    if (indices.size() < static_cast<uint64_t>(width) * static_cast<uint64_t>(height)) {
      // PIL: "not enough image data", whether the data ran out or an end-of-bitmap came early.
      corrupt(in, "corrupt or truncated BMP: its RLE data ends after " + std::to_string(indices.size()) + " of " +
                      std::to_string(width * height) + " pixels (PIL refuses it too: \"not enough image data\")");
    }
    BmpLayout grey_or_index = layout;
    grey_or_index.raw = layout.mode == Mode::palette ? Raw::index8 : Raw::grey8;
    for (int64_t row = 0; row < height; ++row) {
      uint8_t* out = output_row(row);
      unpack_row(grey_or_index, indices.data() + static_cast<size_t>(row * width), width, out);
      if (layout.mode == Mode::bilevel) {  // PIL's "1" image holds the grey levels: any non-zero one is white
        for (size_t i = 0; i < out_stride; ++i) out[i] = out[i] != 0 ? 255 : 0;
      }
    }
    return image;
  }
  const int64_t row_bytes = (width * raw_bits(layout.raw) + 7) / 8;
  if (layout.stride < row_bytes) {
    corrupt(in, "corrupt BMP: its rows are too short for its pixels (PIL refuses it too)");
  }
  for (int64_t row = 0; row < height; ++row) {
    const uint64_t start = layout.data_offset + static_cast<uint64_t>(row) * static_cast<uint64_t>(layout.stride);
    if (start > in.size || in.size - start < static_cast<uint64_t>(row_bytes)) {
      truncated(in, "BMP", "inside its pixel data, after " + std::to_string(row) + " of " + std::to_string(height) +
                               " rows");
    }
    unpack_row(layout, in.data + start, width, output_row(row));
  }
  return image;
}

}  // namespace

Image decode_bmp(const Source& in) { return decode_layout(in, read_layout(in, false)); }
Image decode_dib(const Source& in) { return decode_layout(in, read_layout(in, true)); }

}  // namespace pe::image::detail
