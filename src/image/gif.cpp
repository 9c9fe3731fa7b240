// GIF, the first frame, read as Pillow 13.0 reads it (GifImagePlugin.py and
// libImaging/GifDecode.c, its own code):
// - the image is the logical screen, grown to the first frame's extent when
//   the frame reaches past it; outside the frame it holds the frame's
//   transparent index if it has one, else index 0, and, looked up in the
//   palette like every pixel, gives that colour (PIL's mode "P");
// - the frame's palette is its local one, else the global one; an absent
//   palette, or one that is exactly the grey ramp, makes the pixels grey
//   levels equal to their indices (PIL's mode "L"); indices past the palette's
//   colours read black (Pillow 9.4: its grey ramp);
// - transparent pixels keep their palette colour (convert("RGB") drops only
//   the alpha PIL would give them), interlaced rows are placed in the four
//   passes;
// - the LZW decoder is PIL's: sub-blocks are decoded only when whole, a
//   zero-length sub-block does not end the data (the bytes after it are read
//   as more sub-blocks, as PIL does), a code past the table is an error, the
//   table stops growing at 4096 entries, decoding stops at the last pixel.
// Data that ends before the last pixel is truncated, an error in PIL too
// ("image file is truncated"); so is an end code before the last pixel, which
// PIL reports the same way for files whose image data is under 64 KiB (for
// larger ones it reads on into what follows).

#include <string>
#include <vector>

#include "image/codecs.hpp"

namespace pe::image::detail {
namespace {

constexpr int kGifTable = 4096;  // GIFTABLE and GIFBUFFER in PIL's Gif.h
constexpr int kGifBits = 12;

/// What PIL knows about the first frame when it starts decoding it.
struct GifFrame {
  int64_t screen_width = 0, screen_height = 0;  ///< grown to the frame's extent
  int64_t x0 = 0, y0 = 0, width = 0, height = 0;
  bool interlaced = false;
  int transparency = -1;
  bool grey = true;  ///< PIL's mode "L": no palette, or the grey ramp
  Palette palette;
  int code_bits = 0;
  size_t data_offset = 0;  ///< after the LZW minimum code size byte
};

/// PIL's _is_palette_needed: false when entry i is (i, i, i) for all i.
bool is_grey_ramp(const uint8_t* entries, size_t bytes) {
  for (size_t i = 0; i + 2 < bytes; i += 3) {
    if (!(i / 3 == entries[i] && entries[i] == entries[i + 1] && entries[i + 1] == entries[i + 2])) return false;
  }
  return true;
}

void load_palette(Palette& palette, const uint8_t* entries, size_t bytes) {
  const size_t count = std::min<size_t>(bytes / 3, 256);
  std::memcpy(palette.rgb.data(), entries, count * 3);
}

GifFrame read_frame_header(const Source& in) {
  const uint8_t* data = in.data;
  const size_t size = in.size;
  if (size < 13) truncated(in, "GIF", "inside its screen descriptor");
  GifFrame frame;
  frame.screen_width = le16(data + 6);
  frame.screen_height = le16(data + 8);
  const uint8_t flags = data[10];
  size_t at = 13;
  const uint8_t* global = nullptr;
  size_t global_bytes = 0;
  if (flags & 0x80) {
    global_bytes = size_t{3} << ((flags & 7) + 1);
    if (size - at < global_bytes) truncated(in, "GIF", "inside its global palette");
    global = data + at;
    at += global_bytes;
  }
  // Sub-blocks of an extension: skipped as PIL's data() reads them.
  auto skip_sub_blocks = [&]() {
    for (;;) {
      if (at >= size) return;
      const size_t length = data[at];
      if (length == 0) {
        ++at;
        return;
      }
      at += 1 + length;
      if (at > size) at = size;
    }
  };
  for (;;) {
    if (at >= size) truncated(in, "GIF", "before its first image");
    const uint8_t tag = data[at++];
    if (tag == ';') corrupt(in, "corrupt GIF: it has no image (PIL cannot open it either)");
    if (tag == '!') {
      if (at >= size) truncated(in, "GIF", "inside an extension block");
      const uint8_t label = data[at++];
      // The first sub-block, as PIL's data() returns it.
      const size_t length = at < size ? data[at] : 0;
      if (label == 0xF9) {  // graphic control extension: PIL reads flags, duration and the index
        const size_t available = at + 1 < size ? std::min(length, size - at - 1) : 0;
        const uint8_t* block = data + at + 1;
        if (available < 3 || ((block[0] & 1) && available < 4)) {
          corrupt(in, "corrupt GIF: a graphic control extension of " + std::to_string(available) +
                          " bytes (PIL cannot open it either)");
        }
        if (block[0] & 1) frame.transparency = block[3];
      }
      skip_sub_blocks();
      continue;
    }
    if (tag != ',') continue;  // PIL skips any other byte between blocks
    if (size - at < 9) truncated(in, "GIF", "inside its image descriptor");
    frame.x0 = le16(data + at);
    frame.y0 = le16(data + at + 2);
    frame.width = le16(data + at + 4);
    frame.height = le16(data + at + 6);
    const uint8_t frame_flags = data[at + 8];
    at += 9;
    frame.interlaced = (frame_flags & 0x40) != 0;
    bool local_grey = false, have_local = false;
    const uint8_t* local = nullptr;
    size_t local_bytes = 0;
    if (frame_flags & 0x80) {
      local_bytes = size_t{3} << ((frame_flags & 7) + 1);
      if (size - at < local_bytes) truncated(in, "GIF", "inside its local palette");
      local = data + at;
      at += local_bytes;
      have_local = true;
      local_grey = is_grey_ramp(local, local_bytes);
    }
    if (at >= size) truncated(in, "GIF", "before its image data");
    frame.code_bits = data[at++];
    frame.data_offset = at;
    // The frame's palette: a local one that is not the ramp, else (no local
    // one) the global one unless it is the ramp; a local ramp means grey.
    if (have_local) {
      frame.grey = local_grey;
      if (!local_grey) load_palette(frame.palette, local, local_bytes);
    } else if (global != nullptr && !is_grey_ramp(global, global_bytes)) {
      frame.grey = false;
      load_palette(frame.palette, global, global_bytes);
    }
    frame.screen_width = std::max(frame.screen_width, frame.x0 + frame.width);
    frame.screen_height = std::max(frame.screen_height, frame.y0 + frame.height);
    return frame;
  }
}

GifFrame checked_frame(const Source& in) {
  const GifFrame frame = read_frame_header(in);
  if (frame.screen_width <= 0 || frame.screen_height <= 0) {
    corrupt(in, "corrupt GIF: a " + std::to_string(frame.screen_width) + " x " + std::to_string(frame.screen_height) +
                    " screen (PIL cannot open it either)");
  }
  return frame;
}

enum class LzwEnd { complete, data_ended, end_code, broken };

/// PIL's ImagingGifDecode for one frame: writes palette indices into
/// `indices` (frame.width x frame.height), row by row in interlace order.
LzwEnd decode_lzw(const Source& in, const GifFrame& frame, std::vector<uint8_t>& indices) {
  const int64_t width = frame.width, height = frame.height;
  if (frame.code_bits < 0 || frame.code_bits > kGifBits) return LzwEnd::broken;
  const int clear = 1 << frame.code_bits;
  const int end = clear + 1;
  int step = frame.interlaced ? 8 : 1;
  int interlace = frame.interlaced ? 1 : 0;
  int64_t x = 0, y = 0;
  // Advances to the next row (PIL's NEWLINE); false when the frame is complete.
  auto new_line = [&]() -> bool {
    x = 0;
    y += step;
    while (y >= height) {
      switch (interlace) {
        case 1: y = 4; interlace = 2; break;
        case 2: step = 4; y = 2; interlace = 3; break;
        case 3: step = 2; y = 1; interlace = 0; break;
        default: return false;
      }
    }
    return true;
  };
  uint16_t link[kGifTable];
  uint8_t suffix[kGifTable];
  uint8_t buffer[kGifTable];
  int next = 0, code_size = 0, code_mask = 0, last_code = 0;
  uint8_t last_data = 0;
  int state = 1;  // 1: after a clear code (reset), 2: first code due, 3: decoding
  int64_t bit_buffer = 0;
  int bit_count = 0;
  size_t block_left = 0;
  size_t at = frame.data_offset;
  const uint8_t* data = in.data;
  const size_t size = in.size;
  uint8_t* row = indices.data();
  auto put = [&](const uint8_t* run, int64_t count) -> bool {  // false when the frame is complete
    while (count > 0) {
      const int64_t n = std::min(count, width - x);
      std::memcpy(row + x, run, static_cast<size_t>(n));
      run += n;
      count -= n;
      x += n;
      if (x >= width) {
        if (!new_line()) return false;
        row = indices.data() + static_cast<size_t>(y * width);
      }
    }
    return true;
  };
  for (;;) {
    if (state == 1) {
      next = clear + 2;
      code_size = frame.code_bits + 1;
      code_mask = (1 << code_size) - 1;
      state = 2;
    }
    while (bit_count < code_size) {
      if (block_left > 0) {
        bit_buffer |= int64_t{data[at++]} << bit_count;
        bit_count += 8;
        --block_left;
      } else {
        // A sub-block is decoded only when all of it is there.
        if (at >= size) return LzwEnd::data_ended;
        const size_t length = data[at];
        if (size - at < length + 1) return LzwEnd::data_ended;
        block_left = length;
        ++at;
      }
    }
    int c = static_cast<int>(bit_buffer & code_mask);
    bit_buffer >>= code_size;
    bit_count -= code_size;
    if (c == clear) {
      if (state != 2) state = 1;
      continue;
    }
    if (c == end) return LzwEnd::end_code;
    int buffer_index = kGifTable;
    if (state == 2) {
      if (c > clear) return LzwEnd::broken;
      last_data = static_cast<uint8_t>(c);
      last_code = c;
      state = 3;
    } else {
      const int this_code = c;
      if (c > next) return LzwEnd::broken;
      if (c == next) {  // the code being defined: previous string + its first byte
        buffer[--buffer_index] = last_data;
        c = last_code;
      }
      while (c >= clear) {
        if (buffer_index <= 0 || c >= kGifTable) return LzwEnd::broken;
        buffer[--buffer_index] = suffix[c];
        c = link[c];
      }
      last_data = static_cast<uint8_t>(c);
      if (next < kGifTable) {
        suffix[next] = static_cast<uint8_t>(c);
        link[next] = static_cast<uint16_t>(last_code);
        if (next == code_mask && code_size < kGifBits) {
          ++code_size;
          code_mask = (1 << code_size) - 1;
        }
        ++next;
      }
      last_code = this_code;
    }
    // The string's first byte, then the rest (PIL returns them in two steps).
    if (!put(&last_data, 1)) return LzwEnd::complete;
    if (buffer_index < kGifTable && !put(buffer + buffer_index, kGifTable - buffer_index)) return LzwEnd::complete;
  }
}

}  // namespace

ImageInfo info_gif(const Source& in) {
  const GifFrame frame = checked_frame(in);
  return ImageInfo{"GIF", frame.screen_width, frame.screen_height};
}

Image decode_gif(const Source& in) {
  const GifFrame frame = checked_frame(in);
  check_size(in, "GIF", frame.screen_width, frame.screen_height);
  if (frame.width <= 0 || frame.height <= 0) {
    corrupt(in, "corrupt GIF: its first frame is " + std::to_string(frame.width) + " x " +
                    std::to_string(frame.height) + " pixels (PIL cannot decode it either)");
  }
  if (frame.code_bits > kGifBits) {
    corrupt(in, "corrupt GIF: an LZW code size of " + std::to_string(frame.code_bits) + " bits (at most 12)");
  }
  // The canvas starts as the transparent index, else 0 (PIL's load_prepare).
  const int64_t width = frame.screen_width, height = frame.screen_height;
  std::vector<uint8_t> canvas;
  try {
    canvas.assign(static_cast<size_t>(width * height), static_cast<uint8_t>(frame.transparency < 0 ? 0 : frame.transparency));
  } catch (const std::bad_alloc&) {
    corrupt(in, "not enough memory for the decoded " + std::to_string(width) + " x " + std::to_string(height) + " image");
  }
  std::vector<uint8_t> indices(static_cast<size_t>(frame.width * frame.height));
  switch (decode_lzw(in, frame, indices)) {
    case LzwEnd::complete:
      break;
    case LzwEnd::data_ended:
      truncated(in, "GIF", "inside the first frame's image data");
    case LzwEnd::end_code:
      corrupt(in, "corrupt or truncated GIF: the first frame's image data ends (LZW end code) before its last "
                  "pixel (PIL reports it as truncated)");
    case LzwEnd::broken:
      corrupt(in, "corrupt GIF: invalid LZW data in the first frame (PIL: \"broken\")");
  }
  for (int64_t row = 0; row < frame.height; ++row) {
    std::memcpy(&canvas[static_cast<size_t>((frame.y0 + row) * width + frame.x0)], &indices[static_cast<size_t>(row * frame.width)],
                static_cast<size_t>(frame.width));
  }
  Image image = new_image(in, width, height);
  uint8_t* out = image.pixels.data();
  for (uint8_t index : canvas) {
    if (frame.grey) {
      out[0] = out[1] = out[2] = index;
    } else {
      const uint8_t* rgb = frame.palette[index];
      out[0] = rgb[0];
      out[1] = rgb[1];
      out[2] = rgb[2];
    }
    out += 3;
  }
  return image;
}

}  // namespace pe::image::detail
