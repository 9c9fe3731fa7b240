// PNG through libpng, with PIL's rules around it (PngImagePlugin.py, Pillow 13.0).
//
// Pixels: libpng hands over the rows as stored (no transforms), and they are
// converted as PIL converts its PNG modes to RGB: 1-bit grey ("1") to 0/255,
// 2- and 4-bit grey scaled by 85 and 17 ("L;2", "L;4"), 16-bit grey (mode "I")
// clipped to 255 (so 300 becomes 255; with or without a tRNS chunk), 16-bit
// colour and grey+alpha keep their high byte, palettes are looked up with
// black for indices past the PLTE's colours (Pillow 9.4: its grey ramp), alpha and tRNS are
// dropped, never composited. Interlaced rows arrive pass by pass and are
// placed where Adam7 puts them.
//
// Where libpng would refuse what PIL reads (a palette image without PLTE, a
// PLTE of partial entries, two PLTEs, an IHDR compression method other than
// 0), the chunks before the image data are set right before libpng sees them,
// as PIL reads them (png_head).
//
// What is refused, as PIL refuses it:
// - before the image data, every chunk must be whole with a matching CRC
//   (PIL checks each one), and the chunks PIL parses must be well formed:
//   IHDR, sRGB, pHYs, gAMA, cHRM, tRNS, acTL, fcTL lengths, iCCP/zTXt compression
//   methods, and compressed iCCP/zTXt/iTXt text of at most 1 MiB (PIL's
//   MAX_TEXT_CHUNK, a bomb guard);
// - image data that ends before the last row (cut short, or zlib data that
//   stops early).
// What is not checked, as PIL does not check it: the CRCs of the image data
// and of everything after it, the zlib stream's end and checksum once the
// last row is complete, and the IEND chunk (a PNG without one is read, with a
// clear name for what is missing never needed). After the image data PIL
// reads the remaining chunks, so one whose header is whole but whose data is
// cut short is an error there and here.
//
// The progressive reader is used so that decoding stops once the last row is
// complete (PIL's zip decoder stops there too): a stream that inflates far
// past the image costs nothing, and truncation after that point is harmless,
// as in PIL.

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <png.h>
#include <zlib.h>

#include "image/codecs.hpp"

namespace pe::image::detail {
namespace {

constexpr size_t kSignatureBytes = 8;
constexpr size_t kMaxTextChunk = 1024 * 1024;  // PIL's MAX_TEXT_CHUNK (ImageFile.SAFEBLOCK)

bool is_chunk_name(const uint8_t* p) {  // PIL's is_cid: four [A-Za-z0-9_]
  for (int i = 0; i < 4; ++i) {
    const uint8_t c = p[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

bool named(const uint8_t* p, const char* name) { return std::memcmp(p, name, 4) == 0; }

std::string chunk_label(const uint8_t* p) {
  std::string label(reinterpret_cast<const char*>(p), 4);
  for (char& c : label) {
    if (c < 32 || c > 126) c = '?';
  }
  return label;
}

/// What the chunks before the image data say.
struct PngLayout {
  uint32_t width = 0, height = 0;
  int bit_depth = 0, color_type = 0;
  bool interlaced = false;
  size_t first_image_chunk = 0;  ///< offset of the first IDAT chunk
  bool animated = false;         ///< acTL with more than one frame
  /// The last PLTE after IHDR of a palette image (PIL keeps that one), as
  /// offset and length of its data; length SIZE_MAX when there is none.
  size_t palette_at = 0, palette_length = SIZE_MAX;
  /// The chunks before the image data other than IHDR and PLTE: (offset, whole length).
  std::vector<std::pair<size_t, size_t>> others;
};

/// PIL's _safe_zlib_decompress limit: inflating `data` must stop within 1 MiB.
bool inflates_past_text_limit(const uint8_t* data, size_t size) {
  z_stream stream{};
  if (inflateInit(&stream) != Z_OK) return false;
  std::vector<uint8_t> out(kMaxTextChunk);
  stream.next_in = const_cast<Bytef*>(data);
  stream.avail_in = static_cast<uInt>(std::min<size_t>(size, 0xFFFFFFFFu));
  stream.next_out = out.data();
  stream.avail_out = static_cast<uInt>(out.size());
  const int status = inflate(&stream, Z_SYNC_FLUSH);
  // Python's decompressobj(max_length) leaves an unconsumed tail only when the
  // output limit stopped it; a zlib error is ignored by PIL (the text is dropped).
  const bool too_large = status == Z_OK && stream.avail_out == 0 && stream.avail_in > 0;
  inflateEnd(&stream);
  return too_large;
}

/// The checks PIL's chunk handlers make (PngStream.chunk_*), which raise for
/// malformed chunks before the image data (from _open) and after it (from
/// load_end) alike.
struct ChunkChecker {
  const Source& in;
  PngLayout layout;
  bool have_header = false;
  int64_t fctl_sequence = -1;

  void check(const uint8_t* name, const uint8_t* body, size_t length, bool after_image) {
    auto too_short = [&](size_t needed) {
      if (length < needed) {
        corrupt(in, "corrupt PNG: its " + chunk_label(name) + " chunk has " + std::to_string(length) +
                        " bytes, fewer than the " + std::to_string(needed) + " it needs (PIL refuses it too)");
      }
    };
    if (named(name, "IHDR")) {
      too_short(13);
      if (body[11] != 0) corrupt(in, "corrupt PNG: unknown filter method " + std::to_string(body[11]));
      if (after_image) return;
      layout.width = be32(body);
      layout.height = be32(body + 4);
      layout.bit_depth = body[8];
      layout.color_type = body[9];
      layout.interlaced = body[12] != 0;
      have_header = true;
    } else if (named(name, "PLTE")) {
      if (!after_image && have_header && layout.color_type == 3) {  // PIL ignores it otherwise
        layout.palette_at = static_cast<size_t>(body - in.data);
        layout.palette_length = length;
      }
    } else if (named(name, "sRGB")) {
      too_short(1);
    } else if (named(name, "pHYs")) {
      too_short(9);
    } else if (named(name, "gAMA")) {
      too_short(4);
    } else if (named(name, "cHRM")) {
      too_short(32);  // Pillow 13: "Truncated cHRM chunk" (9.4 refused lengths that are not a multiple of 4)
    } else if (named(name, "tRNS") && have_header) {
      if (layout.color_type == 0) too_short(2);
      if (layout.color_type == 2) too_short(6);
    } else if (named(name, "acTL")) {
      too_short(8);
      const uint32_t frames = be32(body);
      if (!after_image) layout.animated = frames > 1 && frames <= 0x80000000u;
    } else if (named(name, "fcTL")) {
      too_short(26);
      const int64_t sequence = be32(body);
      if ((fctl_sequence < 0 && sequence != 0) || (fctl_sequence >= 0 && sequence != fctl_sequence + 1)) {
        corrupt(in, "corrupt PNG: its animation frames are out of sequence (PIL refuses it too)");
      }
      fctl_sequence = sequence;
      if (uint64_t{be32(body + 12)} + be32(body + 4) > layout.width ||
          uint64_t{be32(body + 16)} + be32(body + 8) > layout.height) {
        corrupt(in, "corrupt PNG: an animation frame extends past the image (PIL refuses it too)");
      }
    } else if (named(name, "iCCP") || named(name, "zTXt")) {
      const uint8_t* nul = static_cast<const uint8_t*>(std::memchr(body, 0, length));
      if (named(name, "iCCP")) {
        // Pillow 13 reads the byte after the NUL, or the first byte without one (9.4 read the NUL itself).
        if (length == 0) corrupt(in, "corrupt PNG: an empty iCCP chunk");
        const uint8_t* method = nul != nullptr ? nul + 1 : body;
        if (method >= body + length) corrupt(in, "corrupt PNG: an iCCP chunk without its compression method");
        if (*method != 0) {
          corrupt(in, "corrupt PNG: unknown compression method " + std::to_string(*method) + " in its iCCP chunk");
        }
      } else if (nul != nullptr && nul + 1 < body + length && nul[1] != 0) {
        corrupt(in, "corrupt PNG: unknown compression method " + std::to_string(nul[1]) + " in a zTXt chunk");
      }
      // The compressed data: after the method byte (for an iCCP without a NUL, Pillow 13 inflates all but the
      // first byte).
      const uint8_t* compressed = nul != nullptr ? nul + 2 : named(name, "iCCP") ? body + 1 : nullptr;
      if (compressed != nullptr && compressed <= body + length &&
          inflates_past_text_limit(compressed, static_cast<size_t>(body + length - compressed))) {
        corrupt(in, "its " + chunk_label(name) + " chunk inflates past 1 MiB, PIL's limit for text and ICC "
                    "chunks (a decompression-bomb guard; PIL refuses it too)");
      }
    } else if (named(name, "iTXt")) {
      // keyword \0 flag method language \0 translated \0 text; PIL inflates flagged text of method 0
      const uint8_t* nul = static_cast<const uint8_t*>(std::memchr(body, 0, length));
      if (nul != nullptr && body + length - nul >= 3 && nul[1] != 0 && nul[2] == 0) {
        const uint8_t* rest = nul + 3;
        const uint8_t* language_end = static_cast<const uint8_t*>(std::memchr(rest, 0, body + length - rest));
        const uint8_t* translated_end =
            language_end
                ? static_cast<const uint8_t*>(std::memchr(language_end + 1, 0, body + length - language_end - 1))
                : nullptr;
        if (translated_end != nullptr &&
            inflates_past_text_limit(translated_end + 1, static_cast<size_t>(body + length - translated_end - 1))) {
          corrupt(in, "its iTXt chunk inflates past 1 MiB, PIL's limit for text chunks (a decompression-bomb "
                      "guard; PIL refuses it too)");
        }
      }
    }
  }
};

/// Walks the chunks up to the first IDAT as PIL's PngImageFile._open does:
/// each must be whole, with a matching CRC, and pass PIL's handler checks.
/// When decoding, the pixel limit applies as soon as the header chunk is read.
ChunkChecker read_layout(const Source& in, bool decoding) {
  const uint8_t* data = in.data;
  const size_t size = in.size;
  ChunkChecker checker{in, {}};
  size_t at = kSignatureBytes;
  for (;;) {
    if (size - at < 8) truncated(in, "PNG", "before its image data (inside a chunk header)");
    const uint8_t* name = data + at + 4;
    if (!is_chunk_name(name)) {
      corrupt(in, "corrupt PNG: a chunk named '" + chunk_label(name) + "' at byte " + std::to_string(at) +
                      " (not four letters); the file is damaged");
    }
    const size_t length = be32(data + at);
    if (named(name, "IDAT")) {
      if (!checker.have_header) corrupt(in, "corrupt PNG: image data (IDAT) before the header chunk (IHDR)");
      checker.layout.first_image_chunk = at;
      return checker;
    }
    if (named(name, "IEND")) corrupt(in, "corrupt PNG: it ends (IEND) before any image data (IDAT)");
    if (length > size - at - 8) {
      truncated(in, "PNG", "inside its " + chunk_label(name) + " chunk, before the image data");
    }
    const uint8_t* body = data + at + 8;
    // A bomb is named as one even when the file is cut right after its header.
    if (decoding && named(name, "IHDR") && length >= 13) check_size(in, "PNG", be32(body), be32(body + 4));
    if (size - at - 8 - length < 4) {
      truncated(in, "PNG", "inside the checksum of its " + chunk_label(name) + " chunk, before the image data");
    }
    const uint32_t stored_crc = be32(body + length);
    const uint32_t crc = static_cast<uint32_t>(crc32(crc32(0, name, 4), body, static_cast<uInt>(length)));
    if (crc != stored_crc) {
      corrupt(in, "corrupt PNG: the checksum of its " + chunk_label(name) +
                      " chunk does not match (PIL: \"broken PNG file\"); the file is damaged");
    }
    checker.check(name, body, length, false);
    if (!named(name, "IHDR") && !named(name, "PLTE")) checker.layout.others.emplace_back(at, 12 + length);
    at += 12 + length;
  }
}

/// PIL's modes for (bit depth, colour type); others PIL cannot identify.
bool known_mode(int bit_depth, int color_type) {
  switch (color_type) {
    case 0: return bit_depth == 1 || bit_depth == 2 || bit_depth == 4 || bit_depth == 8 || bit_depth == 16;
    case 2: case 4: case 6: return bit_depth == 8 || bit_depth == 16;
    case 3: return bit_depth == 1 || bit_depth == 2 || bit_depth == 4 || bit_depth == 8;
    default: return false;
  }
}

ChunkChecker checked_layout(const Source& in, bool decoding) {
  if (in.size < kSignatureBytes) truncated(in, "PNG", "inside its signature");
  ChunkChecker checker = read_layout(in, decoding);
  const PngLayout& layout = checker.layout;
  if (!known_mode(layout.bit_depth, layout.color_type)) {
    corrupt(in, "corrupt PNG: bit depth " + std::to_string(layout.bit_depth) + " with colour type " +
                    std::to_string(layout.color_type) + " is not a PNG pixel format");
  }
  return checker;
}

// ---- libpng --------------------------------------------------------------------
// libpng reports errors by longjmp: png_decode_rows and the callbacks hold only
// trivially destructible objects; the C++ side lives in decode_png.

struct PngContext {
  std::jmp_buf jump;
  char message[200];
  // image
  uint32_t width = 0, height = 0;
  int bit_depth = 0, color_type = 0;
  bool interlaced = false;
  uint8_t* out = nullptr;  ///< width * height * 3
  const Palette* palette = nullptr;
  Palette* palette_target = nullptr;
  // progress
  uint64_t rows_expected = 0;
  uint64_t rows_done = 0;
};

[[noreturn]] void png_on_error(png_structp png, png_const_charp message) {
  auto* context = static_cast<PngContext*>(png_get_error_ptr(png));
  std::snprintf(context->message, sizeof context->message, "%s", message ? message : "error");
  std::longjmp(context->jump, 1);
}

void png_on_warning(png_structp, png_const_charp) {}  // benign: PIL has no such checks

int png_skip_unknown_chunk(png_structp, png_unknown_chunkp) { return 1; }  // PIL skips unknown chunks

// Adam7: the first column and row of each pass, and their steps.
constexpr int kPassStartColumn[7] = {0, 4, 0, 2, 0, 1, 0};
constexpr int kPassColumnStep[7] = {8, 8, 4, 4, 2, 2, 1};
constexpr int kPassStartRow[7] = {0, 0, 4, 0, 2, 0, 1};
constexpr int kPassRowStep[7] = {8, 8, 8, 4, 4, 2, 2};

uint64_t pass_extent(uint32_t size, int start, int step) {
  return size > static_cast<uint32_t>(start) ? (uint64_t{size} - start + step - 1) / step : 0;
}

void png_on_info(png_structp png, png_infop info) {
  auto* context = static_cast<PngContext*>(png_get_progressive_ptr(png));
  png_colorp colors = nullptr;
  int count = 0;
  if (png_get_PLTE(png, info, &colors, &count) != 0 && colors != nullptr) {
    for (int i = 0; i < count && i < 256; ++i) {
      uint8_t* entry = &context->palette_target->rgb[static_cast<size_t>(i) * 3];
      entry[0] = colors[i].red;
      entry[1] = colors[i].green;
      entry[2] = colors[i].blue;
    }
  }
  // PIL checks no CRC from the image data on.
  png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
  png_start_read_image(png);
}

/// PIL's sample value of pixel `x` of a row of `bits`-bit samples (channel
/// count `channels`), as its unpacker for the PNG mode gives it.
inline int sample(const uint8_t* row, int64_t index, int bits) {
  switch (bits) {
    case 1: return (row[index >> 3] >> (7 - (index & 7))) & 1;
    case 2: return (row[index >> 2] >> (6 - 2 * (index & 3))) & 3;
    case 4: return (row[index >> 1] >> (4 - 4 * (index & 1))) & 15;
    case 8: return row[index];
    default: return (row[index * 2] << 8) | row[index * 2 + 1];
  }
}

void png_on_row(png_structp png, png_bytep row, png_uint_32 row_number, int pass) {
  auto* context = static_cast<PngContext*>(png_get_progressive_ptr(png));
  if (row == nullptr) return;
  uint64_t y = row_number;
  int start = 0, step = 1;
  if (context->interlaced) {
    if (pass < 0 || pass > 6) return;
    y = kPassStartRow[pass] + uint64_t{row_number} * kPassRowStep[pass];
    start = kPassStartColumn[pass];
    step = kPassColumnStep[pass];
  }
  if (y >= context->height) return;
  const uint64_t columns = context->interlaced ? pass_extent(context->width, start, step) : context->width;
  const int depth = context->bit_depth;
  const int type = context->color_type;
  const int channels = type == 0 ? 1 : type == 2 ? 3 : type == 3 ? 1 : type == 4 ? 2 : 4;
  uint8_t* out_row = context->out + y * context->width * 3;
  for (uint64_t i = 0; i < columns; ++i) {
    uint8_t* px = out_row + (start + i * step) * 3;
    const int64_t first = static_cast<int64_t>(i) * channels;
    switch (type) {
      case 0: {  // grey: "1", "L;2", "L;4", "L", "I" (clipped by convert)
        int v = sample(row, first, depth);
        if (depth == 1) v = v ? 255 : 0;
        else if (depth == 2) v *= 85;
        else if (depth == 4) v *= 17;
        else if (depth == 16) v = v > 255 ? 255 : v;
        px[0] = px[1] = px[2] = static_cast<uint8_t>(v);
        break;
      }
      case 3: {  // palette
        const uint8_t* rgb = (*context->palette)[sample(row, first, depth)];
        px[0] = rgb[0];
        px[1] = rgb[1];
        px[2] = rgb[2];
        break;
      }
      case 4:  // grey + alpha: "LA", "LA;16B" (high byte)
        px[0] = px[1] = px[2] = static_cast<uint8_t>(depth == 16 ? row[first * 2] : row[first]);
        break;
      default:  // RGB, RGBA: "RGB", "RGB;16B", "RGBA", "RGBA;16B" (high bytes)
        for (int c = 0; c < 3; ++c) {
          px[c] = static_cast<uint8_t>(depth == 16 ? row[(first + c) * 2] : row[first + c]);
        }
        break;
    }
  }
  ++context->rows_done;
}

enum class PngStatus { ok, error };

/// The chunks before the image data as libpng is given them: what PIL ignores
/// and libpng would refuse is set right first, so that libpng reads what PIL
/// reads. IHDR's compression method (PIL never reads it) becomes 0; PLTE is the
/// last one PIL kept, cut to whole entries (PIL drops a partial one), or, for a
/// palette image without one, all black, as Pillow 13 reads it (libpng requires a PLTE); the
/// other chunks follow unchanged (their CRCs were checked).
std::vector<uint8_t> png_head(const Source& in, const PngLayout& layout) {
  std::vector<uint8_t> head(in.data, in.data + kSignatureBytes);
  auto append_chunk = [&](const char* name, const uint8_t* body, size_t length) {
    uint8_t header[8];
    header[0] = static_cast<uint8_t>(length >> 24);
    header[1] = static_cast<uint8_t>(length >> 16);
    header[2] = static_cast<uint8_t>(length >> 8);
    header[3] = static_cast<uint8_t>(length);
    std::memcpy(header + 4, name, 4);
    head.insert(head.end(), header, header + 8);
    head.insert(head.end(), body, body + length);
    uLong crc = crc32(0, reinterpret_cast<const Bytef*>(name), 4);
    crc = crc32(crc, body, static_cast<uInt>(length));
    for (int shift = 24; shift >= 0; shift -= 8) head.push_back(static_cast<uint8_t>(crc >> shift));
  };
  uint8_t header[13];
  for (int i = 0; i < 4; ++i) {
    header[i] = static_cast<uint8_t>(layout.width >> (24 - 8 * i));
    header[4 + i] = static_cast<uint8_t>(layout.height >> (24 - 8 * i));
  }
  header[8] = static_cast<uint8_t>(layout.bit_depth);
  header[9] = static_cast<uint8_t>(layout.color_type);
  header[10] = 0;  // compression method
  header[11] = 0;  // filter method (checked)
  header[12] = layout.interlaced ? 1 : 0;
  append_chunk("IHDR", header, sizeof header);
  if (layout.color_type == 3) {
    if (layout.palette_length != SIZE_MAX) {
      append_chunk("PLTE", in.data + layout.palette_at, layout.palette_length / 3 * 3);
    } else {
      const std::vector<uint8_t> black(size_t{3} << layout.bit_depth, 0);
      append_chunk("PLTE", black.data(), black.size());
    }
  }
  for (const auto& [at, length] : layout.others) head.insert(head.end(), in.data + at, in.data + at + length);
  return head;
}

/// Feeds `data` to libpng's progressive reader, chunk by chunk from
/// `first_image_chunk` and in pieces of at most 16 KiB, until the last row
/// arrives or the data ends: like PIL's decoder, which stops at the last row,
/// it never inflates more than a piece past the image (a stream that inflates
/// far beyond it costs nothing). `stopped_in` is set to the offset of the
/// chunk being read when the last row arrived. (png_process_data_pause would
/// stop sooner, but from a row callback inside image data it corrupts
/// libpng 1.6's buffer count.)
PngStatus png_decode_rows(const uint8_t* head, size_t head_size, const uint8_t* data, size_t size,
                          size_t first_image_chunk, PngContext* context, size_t* stopped_in) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, context, png_on_error, png_on_warning);
  if (png == nullptr) {
    std::snprintf(context->message, sizeof context->message, "libpng could not start");
    return PngStatus::error;
  }
  png_infop info = png_create_info_struct(png);
  if (setjmp(context->jump)) {
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    return PngStatus::error;
  }
  if (info == nullptr) png_error(png, "out of memory");
  png_set_user_limits(png, 0x7FFFFFFF, 0x7FFFFFFF);  // sizes are checked against max_pixels instead
  png_set_benign_errors(png, 1);
  png_set_read_user_chunk_fn(png, nullptr, png_skip_unknown_chunk);
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, nullptr, 0);
  png_set_progressive_read_fn(png, context, png_on_info, png_on_row, nullptr);
  // The chunks before the image data, checked (CRCs included) by read_layout
  // and set right by png_head.
  png_process_data(png, info, const_cast<png_bytep>(head), head_size);
  constexpr size_t kPiece = 16 * 1024;
  size_t at = first_image_chunk;
  while (at < size && context->rows_done < context->rows_expected) {
    size_t end = size;  // a chunk cut short is fed as far as it goes
    if (size - at >= 12) {
      const size_t length = be32(data + at);
      if (length <= size - at - 12) end = at + 12 + length;
    }
    *stopped_in = at;
    for (size_t piece = at; piece < end && context->rows_done < context->rows_expected; piece += kPiece) {
      png_process_data(png, info, const_cast<png_bytep>(data + piece), std::min(kPiece, end - piece));
    }
    at = end;
  }
  png_destroy_read_struct(&png, &info, nullptr);
  return PngStatus::ok;
}

}  // namespace

ImageInfo info_png(const Source& in) {
  const PngLayout layout = checked_layout(in, false).layout;
  return ImageInfo{"PNG", layout.width, layout.height};
}

Image decode_png(const Source& in) {
  ChunkChecker checker = checked_layout(in, true);
  const PngLayout layout = checker.layout;
  Image image = new_image(in, layout.width, layout.height);
  Palette palette;
  PngContext context;
  context.message[0] = '\0';
  context.width = layout.width;
  context.height = layout.height;
  context.bit_depth = layout.bit_depth;
  context.color_type = layout.color_type;
  context.interlaced = layout.interlaced;
  context.out = image.pixels.data();
  context.palette = &palette;
  context.palette_target = &palette;
  if (layout.interlaced) {
    for (int pass = 0; pass < 7; ++pass) {
      const uint64_t columns = pass_extent(layout.width, kPassStartColumn[pass], kPassColumnStep[pass]);
      const uint64_t rows = pass_extent(layout.height, kPassStartRow[pass], kPassRowStep[pass]);
      if (columns != 0) context.rows_expected += rows;
    }
  } else {
    context.rows_expected = layout.height;
  }
  if (layout.color_type == 3 && layout.palette_length != SIZE_MAX && layout.palette_length / 3 > 256) {
    corrupt(in, "corrupt PNG: its palette has " + std::to_string(layout.palette_length / 3) +
                    " entries, more than 256 (PIL refuses it too: \"invalid palette size\")");
  }
  const std::vector<uint8_t> head = png_head(in, layout);
  size_t stopped_in = layout.first_image_chunk;
  if (png_decode_rows(head.data(), head.size(), in.data, in.size, layout.first_image_chunk, &context, &stopped_in) ==
      PngStatus::error) {
    if (std::strstr(context.message, "Read Error") != nullptr || std::strstr(context.message, "Not enough") != nullptr) {
      truncated(in, "PNG", "inside its image data");
    }
    corrupt(in, std::string("corrupt PNG image data (libpng: ") + context.message + ")");
  }
  if (context.rows_done < context.rows_expected) {
    truncated(in, "PNG", "inside its image data, " + std::to_string(context.rows_done) + " of " +
                             std::to_string(context.rows_expected) + " rows decoded");
  }
  // PIL's load_end: the rest of this chunk is skipped; every later chunk whose
  // header is whole must be whole too (up to IEND, or the next animation frame).
  size_t at = stopped_in;
  if (in.size - at >= 8) at += std::min<size_t>(in.size - at, size_t{12} + be32(in.data + at));
  while (in.size - at >= 8) {
    const uint8_t* name = in.data + at + 4;
    if (!is_chunk_name(name) || named(name, "IEND") || (named(name, "fcTL") && layout.animated)) break;
    const size_t length = be32(in.data + at);
    if (length > in.size - at - 8) {
      truncated(in, "PNG", "inside its " + chunk_label(name) + " chunk after the image data");
    }
    checker.check(name, in.data + at + 8, length, true);
    at += std::min<size_t>(in.size - at, size_t{12} + length);
  }
  return image;
}

}  // namespace pe::image::detail
