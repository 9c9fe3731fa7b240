// TGA, read as Pillow 13.0's TgaImagePlugin and TgaRleDecode.c read it:
// - a file is a TGA when its header passes PIL's checks (colour-map type 0 or
//   1, both sides > 0, depth 1, 8, 16, 24 or 32, image type 1-3 or 9-11);
// - the origin bits are honoured both ways: bottom-up unless bit 5 is set,
//   and right-to-left rows (bit 4) are mirrored back, as PIL does after
//   loading (stb_image ignored bit 4, so such files came out mirrored);
// - the colour map (16-bit 5-5-5, 24- or 32-bit entries, after `first entry`
//   zeroed entries) is the palette, indices past it read black; a map of
//   another depth is an error ("unknown TGA map depth"); a colour-mapped image
//   without a colour map is an error (PIL makes it greyscale, then has no way
//   to unpack palette indices into it); greyscale images with a colour map
//   are looked up in it, an RGB image with one is an error in PIL and here;
//   more than 256 entries is an error (Pillow 9.4 refused 32-bit entries,
//   read the indices of a map-less image as grey levels, and read past the
//   others as pixel data: docs/formats.md);
// - 16-bit colour is 5-5-5 expanded as v * 255 / 31, 16-bit grey is grey +
//   alpha, alpha is dropped;
// - RLE packets: a run may not cross the end of a row (PIL: an overrun
//   error), a literal packet may.
// Pixel data that ends before the last row is an error, as in PIL.

#include <string>
#include <vector>

#include "image/codecs.hpp"

namespace pe::image::detail {
namespace {

enum class Raw { palette8, bits1, grey8, grey_alpha, bgr15, bgr, bgra };

struct TgaLayout {
  int64_t width = 0, height = 0;
  int image_type = 0, depth = 0;
  bool top_down = false, mirrored = false, rle = false;
  bool has_palette = false;  ///< a colour map PIL loads
  int64_t palette_entries = 0;
  int map_depth = 0;
  Palette palette;
  bool known_raw = false;
  Raw raw = Raw::bgr;
  enum class Mode { bilevel, grey, grey_alpha, palette, rgb, rgba } mode = Mode::rgb;
  size_t data_offset = 0;
};

int raw_bits(Raw raw) {
  switch (raw) {
    case Raw::bits1: return 1;
    case Raw::palette8: case Raw::grey8: return 8;
    case Raw::grey_alpha: case Raw::bgr15: return 16;
    case Raw::bgr: return 24;
    case Raw::bgra: return 32;
  }
  return 8;
}

TgaLayout read_layout(const Source& in) {
  const uint8_t* data = in.data;
  const size_t size = in.size;
  if (size < 18) truncated(in, "TGA", "inside its header");
  TgaLayout layout;
  const int id_length = data[0];
  const int color_map_type = data[1];
  layout.image_type = data[2];
  layout.depth = data[16];
  const int flags = data[17];
  layout.width = le16(data + 12);
  layout.height = le16(data + 14);
  if (color_map_type > 1 || layout.width <= 0 || layout.height <= 0) corrupt(in, "corrupt TGA header");
  switch (layout.image_type) {
    case 3: case 11:
      layout.mode = layout.depth == 1 ? TgaLayout::Mode::bilevel
                    : layout.depth == 16 ? TgaLayout::Mode::grey_alpha : TgaLayout::Mode::grey;
      break;
    case 1: case 9: layout.mode = TgaLayout::Mode::palette; break;
    case 2: case 10: layout.mode = layout.depth == 32 ? TgaLayout::Mode::rgba : TgaLayout::Mode::rgb; break;
    default: corrupt(in, "corrupt TGA: image type " + std::to_string(layout.image_type));
  }
  const int orientation = flags & 0x30;
  layout.mirrored = orientation == 0x10 || orientation == 0x30;
  layout.top_down = orientation == 0x20 || orientation == 0x30;
  layout.rle = (layout.image_type & 8) != 0;
  size_t at = 18 + static_cast<size_t>(id_length);  // PIL's read(id_len) may come up short
  if (color_map_type == 1) {
    const int64_t first = le16(data + 3), count = le16(data + 5);
    const int map_depth = data[7];
    layout.map_depth = map_depth;
    const int entry_bytes = map_depth == 16 ? 2 : map_depth == 24 ? 3 : map_depth == 32 ? 4 : 0;
    if (entry_bytes == 0) {
      corrupt(in, "corrupt TGA: a colour map of " + std::to_string(map_depth) +
                      "-bit entries (PIL reads 16, 24 and 32; \"unknown TGA map depth\")");
    }
    {
      layout.has_palette = true;
      const size_t wanted = static_cast<size_t>(entry_bytes) * static_cast<size_t>(count);
      const size_t available = at < size ? std::min(wanted, size - at) : 0;
      const uint8_t* entries = data + std::min(at, size);
      layout.palette_entries = first + static_cast<int64_t>(available / entry_bytes);
      for (int64_t i = 0; i < layout.palette_entries && i < 256; ++i) {
        uint8_t* rgb = &layout.palette.rgb[static_cast<size_t>(i) * 3];
        if (i < first) {
          rgb[0] = rgb[1] = rgb[2] = 0;
          continue;
        }
        const uint8_t* entry = entries + (i - first) * entry_bytes;
        if (entry_bytes == 2) {  // "BGR;15"
          const int pixel = entry[0] | (entry[1] << 8);
          rgb[0] = static_cast<uint8_t>(((pixel >> 10) & 31) * 255 / 31);
          rgb[1] = static_cast<uint8_t>(((pixel >> 5) & 31) * 255 / 31);
          rgb[2] = static_cast<uint8_t>((pixel & 31) * 255 / 31);
        } else {  // "BGR", "BGRA"
          rgb[0] = entry[2];
          rgb[1] = entry[1];
          rgb[2] = entry[0];
        }
      }
      at += available;
    }
  }
  layout.data_offset = at;
  const int kind = layout.image_type & 7;
  layout.known_raw = true;
  if (kind == 1 && layout.depth == 8) layout.raw = Raw::palette8;
  else if (kind == 3 && layout.depth == 1) layout.raw = Raw::bits1;
  else if (kind == 3 && layout.depth == 8) layout.raw = Raw::grey8;
  else if (kind == 3 && layout.depth == 16) layout.raw = Raw::grey_alpha;
  else if (kind == 2 && layout.depth == 16) layout.raw = Raw::bgr15;
  else if (kind == 2 && layout.depth == 24) layout.raw = Raw::bgr;
  else if (kind == 2 && layout.depth == 32) layout.raw = Raw::bgra;
  else layout.known_raw = false;
  return layout;
}

TgaLayout checked_layout(const Source& in) {
  const TgaLayout layout = read_layout(in);
  if (!layout.known_raw) {
    unsupported(in, "a TGA of image type " + std::to_string(layout.image_type) + " with " +
                        std::to_string(layout.depth) + " bits a pixel is not supported (PIL cannot load it either)");
  }
  return layout;
}

}  // namespace

bool looks_like_tga(const uint8_t* data, size_t size) {
  if (size < 18) return false;
  const int depth = data[16];
  const int type = data[2];
  return data[1] <= 1 && le16(data + 12) > 0 && le16(data + 14) > 0 &&
         (depth == 1 || depth == 8 || depth == 16 || depth == 24 || depth == 32) &&
         (type == 1 || type == 2 || type == 3 || type == 9 || type == 10 || type == 11);
}

ImageInfo info_tga(const Source& in) {
  const TgaLayout layout = checked_layout(in);
  return ImageInfo{"TGA", layout.width, layout.height};
}

Image decode_tga(const Source& in) {
  const TgaLayout layout = checked_layout(in);
  check_size(in, "TGA", layout.width, layout.height);
  using Mode = TgaLayout::Mode;
  if (layout.has_palette && (layout.mode == Mode::rgb || layout.mode == Mode::rgba || layout.mode == Mode::bilevel)) {
    corrupt(in, "corrupt TGA: a colour map in an image that is not greyscale or palette-based "
                "(PIL cannot load it either)");
  }
  if (layout.mode == Mode::palette && !layout.has_palette) {
    corrupt(in, "corrupt TGA: a colour-mapped image without a colour map (PIL refuses it too)");
  }
  if (layout.palette_entries > 256) {
    corrupt(in, "corrupt TGA: its colour map has " + std::to_string(layout.palette_entries) +
                    " entries, more than 256 (PIL refuses it too)");
  }
  const int64_t width = layout.width, height = layout.height;
  const int64_t row_bytes = (width * raw_bits(layout.raw) + 7) / 8;
  // Rows of raw samples in file order; the RLE decoder refills this one.
  std::vector<uint8_t> row(static_cast<size_t>(row_bytes));
  Image image = new_image(in, width, height);
  const bool looked_up = layout.mode == Mode::palette || layout.has_palette;  // grey + colour map: PIL's "P"
  auto emit = [&](const uint8_t* samples, int64_t file_row) {
    const int64_t y = layout.top_down ? file_row : height - 1 - file_row;
    uint8_t* out = image.pixels.data() + static_cast<size_t>(y * width) * 3;
    for (int64_t x = 0; x < width; ++x) {
      uint8_t* px = out + (layout.mirrored ? width - 1 - x : x) * 3;
      switch (layout.raw) {
        case Raw::bits1:
          px[0] = px[1] = px[2] = ((samples[x >> 3] >> (7 - (x & 7))) & 1) ? 255 : 0;
          break;
        case Raw::palette8: case Raw::grey8: case Raw::grey_alpha: {
          const uint8_t value = layout.raw == Raw::grey_alpha ? samples[2 * x] : samples[x];
          if (looked_up) {
            const uint8_t* rgb = layout.palette[value];
            px[0] = rgb[0];
            px[1] = rgb[1];
            px[2] = rgb[2];
          } else {
            px[0] = px[1] = px[2] = value;
          }
          break;
        }
        case Raw::bgr15: {
          const int pixel = samples[2 * x] | (samples[2 * x + 1] << 8);
          px[0] = static_cast<uint8_t>(((pixel >> 10) & 31) * 255 / 31);
          px[1] = static_cast<uint8_t>(((pixel >> 5) & 31) * 255 / 31);
          px[2] = static_cast<uint8_t>((pixel & 31) * 255 / 31);
          break;
        }
        case Raw::bgr:
          px[0] = samples[3 * x + 2];
          px[1] = samples[3 * x + 1];
          px[2] = samples[3 * x];
          break;
        case Raw::bgra:
          px[0] = samples[4 * x + 2];
          px[1] = samples[4 * x + 1];
          px[2] = samples[4 * x];
          break;
      }
    }
  };
  size_t at = layout.data_offset;
  if (!layout.rle) {
    for (int64_t r = 0; r < height; ++r) {
      if (at > in.size || in.size - at < static_cast<size_t>(row_bytes)) {
        truncated(in, "TGA", "inside its pixel data, after " + std::to_string(r) + " of " + std::to_string(height) +
                                 " rows");
      }
      emit(in.data + at, r);
      at += static_cast<size_t>(row_bytes);
    }
    return image;
  }
  // PIL's ImagingTgaRleDecode: packets of `pixel_bytes`-byte pixels filling
  // rows of row_bytes bytes.
  const size_t pixel_bytes = static_cast<size_t>((layout.depth + 7) / 8);
  const size_t line = static_cast<size_t>(row_bytes);
  size_t x = 0;
  int64_t r = 0;
  auto row_done = [&]() -> bool {  // false when the last row is done
    emit(row.data(), r);
    x = 0;
    return ++r < height;
  };
  for (;;) {
    if (at >= in.size) truncated(in, "TGA", "inside its RLE pixel data, after " + std::to_string(r) + " rows");
    const uint8_t header = in.data[at];
    size_t n = pixel_bytes * ((header & 0x7F) + 1);
    if (header & 0x80) {
      if (in.size - at < 1 + pixel_bytes) truncated(in, "TGA", "inside its RLE pixel data");
      if (x + n > line) {
        corrupt(in, "corrupt TGA: an RLE run crosses the end of a row (PIL refuses it too)");
      }
      for (size_t i = 0; i < n; i += pixel_bytes) std::memcpy(row.data() + x + i, in.data + at + 1, pixel_bytes);
      at += 1 + pixel_bytes;
      x += n;
      if (x >= line && !row_done()) return image;
    } else {
      if (in.size - at < 1 + n) truncated(in, "TGA", "inside its RLE pixel data");
      const uint8_t* literal = in.data + at + 1;
      at += 1 + n;
      // A literal packet may run on into the next rows.
      while (n > 0) {
        const size_t take = std::min(n, line - x);
        std::memcpy(row.data() + x, literal, take);
        literal += take;
        n -= take;
        x += take;
        if (x >= line && !row_done()) return image;
      }
    }
  }
}

}  // namespace pe::image::detail
