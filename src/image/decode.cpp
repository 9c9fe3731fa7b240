// pe::image decoding: libjpeg-turbo for JPEG, stb_image for the other formats
// (see include/pe/image.hpp for the contract).
//
// - JPEG goes through libjpeg-turbo with PIL's settings (accurate integer IDCT,
//   fancy upsampling, libjpeg's colour-space guess from the JFIF/Adobe
//   markers), so the pixels are PIL's. Greyscale is replicated; 4-channel JPEG
//   is read as PIL does, always as Adobe-inverted CMYK (YCCK converted by
//   libjpeg), then PIL's CMYK -> RGB formula.
// - Other formats: RGB conversion as PIL's convert("RGB"): grey is replicated,
//   alpha is dropped (not composited), palettes are looked up, 16-bit samples
//   keep their high byte, except 16-bit greyscale without alpha (PNG, PGM),
//   which PIL opens as 32-bit "I" and clips to 255 (so 300 becomes 255, not 1).
// Stricter than PIL on purpose: a JPEG cut short, or with corrupt
// entropy-coded data, is an error rather than an image padded with grey; so is
// a JPEG of more than 500 scans (a CPU-exhaustion pattern; libjpeg-turbo's own
// TurboJPEG API refuses those too). Harmless libjpeg warnings (junk bytes
// between markers, an unknown JFIF version) are ignored, as PIL ignores them.

#include "pe/image.hpp"

#include "pe/error.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstdint>
#include <cstdlib>
#include <cstdio>  // before jpeglib.h, which uses FILE and size_t without including it
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

// stb_image's allocations go through stb_allocate, so decode_memory can cap
// them: stb inflates PNG data into a buffer it grows for as long as the data
// lasts, and allocates a chunk's claimed length before reading it, so a
// 300 KB PNG of 1 x 1 pixels took 512 MB, a 60-byte one 2 GB (PIL reads both
// in constant memory).
namespace pe::image::detail {
namespace {
thread_local size_t stb_allocation_limit = 0;  ///< bytes per allocation on this thread; 0 = none
thread_local bool stb_allocation_refused = false;
void* stb_allocate(void* previous, size_t bytes) {
  if (stb_allocation_limit != 0 && bytes > stb_allocation_limit) {
    stb_allocation_refused = true;
    return nullptr;  // stb fails cleanly ("Out of memory") and frees what it holds
  }
  return previous ? std::realloc(previous, bytes) : std::malloc(bytes);
}
}  // namespace
}  // namespace pe::image::detail

// stb_image's implementation, as static functions of this file alone: a user
// who compiles stb into their own program (STB_IMAGE_IMPLEMENTATION) gets
// their copy, the library keeps this one with its allocation cap.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wpedantic"
#endif
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO  // we read files ourselves, to name them in errors
#define STBI_NO_JPEG   // libjpeg-turbo reads JPEG (PIL's decoder, so PIL's pixels)
#define STBI_FAILURE_USERMSG
#define STBI_MALLOC(bytes) ::pe::image::detail::stb_allocate(nullptr, bytes)
#define STBI_REALLOC(pointer, bytes) ::pe::image::detail::stb_allocate(pointer, bytes)
#define STBI_FREE(pointer) std::free(pointer)
#include <stb/stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include <jpeglib.h>
#include <jerror.h>  // after jpeglib.h: the warning codes (JWRN_*) told apart below

namespace pe::image {

namespace detail {
namespace {

bool starts_with(const uint8_t* data, size_t size, size_t offset, std::string_view text) {
  return size >= offset + text.size() && std::memcmp(data + offset, text.data(), text.size()) == 0;
}

/// Names formats stb_image cannot read, from their magic bytes ("" if none).
std::string unsupported_format(const uint8_t* data, size_t size) {
  if (starts_with(data, size, 0, "RIFF") && starts_with(data, size, 8, "WEBP")) return "WebP";
  if (starts_with(data, size, 0, std::string_view("II*\0", 4)) || starts_with(data, size, 0, std::string_view("MM\0*", 4)))
    return "TIFF";
  if (starts_with(data, size, 4, "ftyp")) {
    for (const char* brand : {"avif", "avis"}) {
      if (starts_with(data, size, 8, brand)) return "AVIF";
    }
    for (const char* brand : {"heic", "heix", "hevc", "heim", "heis", "mif1", "msf1"}) {
      if (starts_with(data, size, 8, brand)) return "HEIC/HEIF";
    }
  }
  if (starts_with(data, size, 0, "\xff\x0a") || starts_with(data, size, 4, "JXL ")) return "JPEG XL";
  return "";
}

/// A JPEG whose last scan (SOS marker) is not followed by an end-of-image
/// marker was cut short. libjpeg would pad it with grey after a warning (which
/// decode_jpeg turns into an error too); this check names the problem plainly
/// before any decoding. Markers cannot occur inside entropy-coded data (0xFF is
/// stuffed), and an EXIF thumbnail's own markers all come before the main
/// image's scans.
bool jpeg_is_truncated(const uint8_t* data, size_t size) {
  if (!(size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)) return false;
  size_t last_sos = 0, last_eoi = 0;
  for (size_t i = 0; i + 1 < size; ++i) {
    if (data[i] != 0xFF) continue;
    if (data[i + 1] == 0xDA) last_sos = i + 1;
    if (data[i + 1] == 0xD9) last_eoi = i + 1;
  }
  return last_sos == 0 || last_eoi < last_sos;
}

uint32_t read_big_endian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

/// Width and height from the header of a PNG, GIF, BMP or JPEG, read without
/// stb_image: stb refuses headers over 2^30 bytes of pixels with a generic
/// "corrupt" message, and a bomb deserves to be called one. False if unknown.
bool peek_dimensions(const uint8_t* data, size_t size, int64_t* width, int64_t* height) {
  if (starts_with(data, size, 0, "\x89PNG\r\n\x1a\n") && starts_with(data, size, 12, "IHDR") && size >= 24) {
    *width = read_big_endian32(data + 16);
    *height = read_big_endian32(data + 20);
    return true;
  }
  if ((starts_with(data, size, 0, "GIF87a") || starts_with(data, size, 0, "GIF89a")) && size >= 10) {
    *width = data[6] | (data[7] << 8);
    *height = data[8] | (data[9] << 8);
    return true;
  }
  if (starts_with(data, size, 0, "BM") && size >= 26) {
    int32_t w = 0, h = 0;
    std::memcpy(&w, data + 18, 4);  // little-endian hosts (x86-64, arm64)
    std::memcpy(&h, data + 22, 4);
    *width = std::abs(static_cast<int64_t>(w));
    *height = std::abs(static_cast<int64_t>(h));  // negative = top-down rows
    return true;
  }
  if (size >= 4 && data[0] == 0xFF && data[1] == 0xD8) {
    // Walk the marker segments up to the first start-of-frame (SOF0..SOF15
    // except DHT C4, JPG C8, DAC CC).
    size_t i = 2;
    while (i + 9 < size) {
      if (data[i] != 0xFF) return false;
      const uint8_t marker = data[i + 1];
      if (marker == 0xFF) { ++i; continue; }  // fill byte
      const size_t length = (size_t{data[i + 2]} << 8) | data[i + 3];
      if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
        *height = (data[i + 5] << 8) | data[i + 6];
        *width = (data[i + 7] << 8) | data[i + 8];
        return true;
      }
      if (length < 2) return false;
      i += 2 + length;
    }
  }
  return false;
}

/// The maximum sample value of a binary PNM (P5 grey, P6 RGB), or 0 for other
/// data. PIL scales PNM samples by 255 / maxval; stb_image does not.
int pnm_max_value(const uint8_t* data, size_t size) {
  if (size < 3 || data[0] != 'P' || (data[1] != '5' && data[1] != '6')) return 0;
  size_t i = 2;
  int fields[3] = {0, 0, 0};  // width, height, maxval
  for (int& field : fields) {
    while (i < size && (std::isspace(data[i]) || data[i] == '#')) {
      if (data[i] == '#') {
        while (i < size && data[i] != '\n' && data[i] != '\r') ++i;
      } else {
        ++i;
      }
    }
    if (i >= size || !std::isdigit(data[i])) return 0;
    while (i < size && std::isdigit(data[i]) && field < 1'000'000) field = field * 10 + (data[i++] - '0');
  }
  return fields[2];
}

/// stb_image 2.27 reads PNM header numbers into an int with no overflow check
/// (undefined behaviour; found by fuzz_image; 2.28 checks). Reads the header
/// as stb does and reports a number past INT_MAX.
bool pnm_header_overflows(const uint8_t* data, size_t size) {
  if (size < 2 || data[0] != 'P' || (data[1] != '5' && data[1] != '6')) return false;
  size_t at = 2;
  auto get8 = [&]() -> char { return at < size ? static_cast<char>(data[at++]) : 0; };
  char c = get8();
  for (int field = 0; field < 3; ++field) {  // width, height, maxval
    for (;;) {  // stbi__pnm_skip_whitespace: blanks and # comments
      while (at < size && (c == ' ' || (c >= '\t' && c <= '\r'))) c = get8();
      if (at >= size || c != '#') break;
      while (at < size && c != '\n' && c != '\r') c = get8();
    }
    int64_t value = 0;
    while (at < size && c >= '0' && c <= '9') {
      value = value * 10 + (c - '0');
      if (value > std::numeric_limits<int>::max()) return true;
      c = get8();
    }
  }
  return false;
}

/// PIL's rescaling of a PNM sample to `target_max` (Python's round; no ties occur).
int rescale(int sample, int max_value, int target_max) {
  const int clamped = std::min(sample, max_value);
  return static_cast<int>((static_cast<int64_t>(clamped) * target_max * 2 + max_value) / (2 * int64_t{max_value}));
}

// Header sizes reach 2^32 - 1 per side (PNG), so their product needs 64 unsigned bits.
uint64_t pixel_product(int64_t width, int64_t height) {
  return static_cast<uint64_t>(width) * static_cast<uint64_t>(height);
}

[[noreturn]] void too_many_pixels(const std::string& name, int64_t width, int64_t height, int64_t limit) {
  throw CorruptDataError(name + ": the image claims " + std::to_string(width) + " x " + std::to_string(height) +
                           " = " + std::to_string(pixel_product(width, height)) + " pixels, over the limit of " +
                           std::to_string(limit) +
                           " (a decompression bomb guard, as in PIL); raise max_pixels if the image is genuine");
}

[[noreturn]] void fail(const std::string& name, const std::string& problem) {
  throw CorruptDataError(name + ": " + problem);
}

[[noreturn]] void fail_unsupported(const std::string& name, const std::string& problem) {
  throw UnsupportedFormatError(name + ": " + problem);
}

[[noreturn]] void fail_io(const std::string& name, const std::string& problem) {
  throw IoError(name + ": " + problem);
}

bool is_jpeg(const uint8_t* data, size_t size) {
  return size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;  // PIL's test too
}

// ---- JPEG through libjpeg-turbo -------------------------------------------
// libjpeg reports fatal errors through error_exit, which must not return: it
// longjmps back to jpeg_decode_pixels. longjmp skips destructors, so that
// function and everything libjpeg calls back into hold only trivially
// destructible objects; the C++ side (vector, strings, exceptions) lives in
// decode_jpeg, which calls it and is never jumped over.

/// TurboJPEG's TJFLAG_LIMITSCANS limit: real progressive files have about 10.
constexpr int kMaxJpegScans = 500;

struct JpegErrorHandler {
  jpeg_error_mgr manager;  // first member: libjpeg's cinfo->err points here
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

/// Warnings that mean pixels were lost or invented (libjpeg would pad with
/// grey and carry on); the others (junk before a marker, an unknown JFIF
/// version or Adobe transform, a bad ICC marker) leave the pixels intact.
bool jpeg_warning_loses_data(int code) {
  switch (code) {
    case JWRN_JPEG_EOF:         // "Premature end of JPEG file"
    case JWRN_HIT_MARKER:       // "premature end of data segment"
    case JWRN_HUFF_BAD_CODE:
    case JWRN_ARITH_BAD_CODE:
    case JWRN_MUST_RESYNC:
    case JWRN_NOT_SEQUENTIAL:
    case JWRN_BOGUS_PROGRESSION:
    case JWRN_TOO_MUCH_DATA:
      return true;
    default:
      return false;
  }
}

[[noreturn]] void jpeg_error_exit(j_common_ptr cinfo) {
  auto* handler = reinterpret_cast<JpegErrorHandler*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, handler->message);
  std::longjmp(handler->jump, 1);
}

void jpeg_emit_message(j_common_ptr cinfo, int level) {
  // level -1 is a warning; 0 and up are trace messages.
  if (level == -1 && jpeg_warning_loses_data(cinfo->err->msg_code)) jpeg_error_exit(cinfo);
}

/// Our own fatal error, reported like libjpeg's.
[[noreturn]] void jpeg_fail(j_common_ptr cinfo, const char* message) {
  auto* handler = reinterpret_cast<JpegErrorHandler*>(cinfo->err);
  std::snprintf(handler->message, sizeof handler->message, "%s", message);
  std::longjmp(handler->jump, 1);
}

void jpeg_count_scans(j_common_ptr cinfo) {
  if (cinfo->is_decompressor && reinterpret_cast<j_decompress_ptr>(cinfo)->input_scan_number > kMaxJpegScans) {
    static_assert(kMaxJpegScans == 500, "update the message");
    jpeg_fail(cinfo, "more than 500 scans (a CPU-exhaustion pattern, never seen in real photos)");
  }
}

enum class JpegStatus { ok, libjpeg_error, too_many_pixels, unsupported_channels, out_of_memory };

/// What jpeg_decode_pixels hands back; plain data only (see above).
struct JpegResult {
  JpegStatus status = JpegStatus::ok;
  int64_t width = 0, height = 0;
  int channels = 0;
  char message[JMSG_LENGTH_MAX] = {};
};

/// Resizes the caller's pixel vector; false when that fails. A C++ call that
/// returns normally, so no longjmp crosses it.
using JpegAllocate = uint8_t* (*)(void* context, size_t bytes);

/// PIL's own CMYK -> RGB (Convert.c cmyk2rgb) on libjpeg's Adobe-inverted
/// samples, which PIL un-inverts first ("CMYK;I"): r = (255 - k) * (1 - c / 255),
/// with PIL's rounding of the product.
void jpeg_inverted_cmyk_row_to_rgb(const uint8_t* cmyk, int width, uint8_t* rgb) {
  for (int x = 0; x < width; ++x, cmyk += 4, rgb += 3) {
    const int not_k = cmyk[3];  // 255 - k, since PIL's k = 255 - sample
    for (int c = 0; c < 3; ++c) {
      const int product = (255 - cmyk[c]) * not_k + 128;
      rgb[c] = static_cast<uint8_t>(std::clamp(not_k - (((product >> 8) + product) >> 8), 0, 255));
    }
  }
}

/// Decodes with the settings of PIL's Image.open(...).convert("RGB"): libjpeg's
/// defaults (JDCT_ISLOW, fancy upsampling, block smoothing) and its colour-space
/// guess, RGB out for 1 and 3 channels (libjpeg replicates grey exactly as PIL
/// does), CMYK out for 4 (YCCK converted) then PIL's conversion.
void jpeg_decode_pixels(const uint8_t* data, size_t size, int64_t max_pixels, JpegAllocate allocate,
                               void* context, JpegResult* result) {
  jpeg_decompress_struct cinfo{};
  JpegErrorHandler handler{};
  jpeg_progress_mgr progress{};
  cinfo.err = jpeg_std_error(&handler.manager);
  handler.manager.error_exit = jpeg_error_exit;
  handler.manager.emit_message = jpeg_emit_message;
  handler.message[0] = '\0';
  if (setjmp(handler.jump)) {
    jpeg_destroy_decompress(&cinfo);
    result->status = JpegStatus::libjpeg_error;
    std::memcpy(result->message, handler.message, sizeof result->message);
    result->message[sizeof result->message - 1] = '\0';
    return;
  }
  jpeg_create_decompress(&cinfo);
  progress.progress_monitor = jpeg_count_scans;
  cinfo.progress = &progress;
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  result->width = cinfo.image_width;
  result->height = cinfo.image_height;
  result->channels = cinfo.num_components;
  JpegStatus refusal = JpegStatus::ok;
  if (max_pixels < 0 || result->width * result->height > max_pixels) {
    refusal = JpegStatus::too_many_pixels;  // checked again here: the header walk may not have found SOF
  } else if (cinfo.num_components != 1 && cinfo.num_components != 3 && cinfo.num_components != 4) {
    refusal = JpegStatus::unsupported_channels;  // PIL: "cannot handle N-layer images"
  }
  uint8_t* pixels = nullptr;
  if (refusal == JpegStatus::ok) {
    pixels = allocate(context, static_cast<size_t>(result->width * result->height * 3));
    if (pixels == nullptr) refusal = JpegStatus::out_of_memory;
  }
  if (refusal != JpegStatus::ok) {
    jpeg_destroy_decompress(&cinfo);
    result->status = refusal;
    return;
  }
  const bool cmyk = cinfo.num_components == 4;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&cinfo);  // allocates the image-sized buffers: after the pixel limit
  const size_t stride = static_cast<size_t>(cinfo.output_width) * 3;
  JSAMPARRAY cmyk_row = cmyk ? (*cinfo.mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(&cinfo), JPOOL_IMAGE,
                                                          cinfo.output_width * 4, 1)
                             : nullptr;
  while (cinfo.output_scanline < cinfo.output_height) {
    uint8_t* row = pixels + static_cast<size_t>(cinfo.output_scanline) * stride;
    JSAMPROW rows[1] = {row};
    // An in-memory source never suspends, so 0 lines would mean a libjpeg bug: fail, never spin.
    if (jpeg_read_scanlines(&cinfo, cmyk ? cmyk_row : rows, 1) != 1) {
      jpeg_fail(reinterpret_cast<j_common_ptr>(&cinfo), "libjpeg returned no scanline");
    }
    if (cmyk) jpeg_inverted_cmyk_row_to_rgb(cmyk_row[0], static_cast<int>(cinfo.output_width), row);
  }
  jpeg_finish_decompress(&cinfo);  // reads to the end-of-image marker: a cut file warns here
  jpeg_destroy_decompress(&cinfo);
}

uint8_t* resize_pixel_vector(void* context, size_t bytes) {
  try {
    auto* pixels = static_cast<std::vector<uint8_t>*>(context);
    pixels->resize(bytes);
    return pixels->data();
  } catch (const std::bad_alloc&) {
    return nullptr;
  } catch (const std::length_error&) {
    return nullptr;
  }
}

/// A JPEG as PIL's Image.open(...).convert("RGB") decodes it (see the header comment).
Image decode_jpeg(const uint8_t* data, size_t size, const std::string& name, int64_t max_pixels) {
  Image image;
  JpegResult result;
  jpeg_decode_pixels(data, size, max_pixels, resize_pixel_vector, &image.pixels, &result);
  switch (result.status) {
    case JpegStatus::ok:
      break;
    case JpegStatus::libjpeg_error:
      fail(name, std::string("unreadable JPEG data (libjpeg: ") + result.message + ")");
    case JpegStatus::too_many_pixels:
      too_many_pixels(name, result.width, result.height, max_pixels);
    case JpegStatus::unsupported_channels:
      fail_unsupported(name, "a JPEG with " + std::to_string(result.channels) +
                     " channels is not supported (PIL reads 1, 3 or 4); convert it to a 3-channel JPEG or PNG");
    case JpegStatus::out_of_memory:
      fail(name, "not enough memory for the " + std::to_string(result.width) + " x " + std::to_string(result.height) +
                     " decoded image");
  }
  image.width = static_cast<int>(result.width);
  image.height = static_cast<int>(result.height);
  return image;
}

}  // namespace
}  // namespace detail

namespace detail {
namespace {
/// A PNG's bytes without its zero-length IDAT chunks (which carry no data), or
/// empty when it has none. stb 2.27 copies an empty first IDAT into a buffer it
/// has not allocated yet (memcpy to null, 0 bytes): harmless in practice but
/// undefined behaviour, which UBSan and the fuzzers rightly refuse.
std::vector<uint8_t> png_without_empty_idat(const uint8_t* data, size_t size) {
  if (!starts_with(data, size, 0, "\x89PNG\r\n\x1a\n")) return {};
  auto chunk_length = [data](size_t at) {
    return (size_t{data[at]} << 24) | (size_t{data[at + 1]} << 16) | (size_t{data[at + 2]} << 8) | data[at + 3];
  };
  bool found = false;
  for (size_t at = 8; at + 12 <= size;) {
    const size_t length = chunk_length(at);
    if (length == 0 && std::memcmp(data + at + 4, "IDAT", 4) == 0) found = true;
    if (length > size - at - 12) break;  // a truncated chunk: stb reports it
    at += 12 + length;
  }
  if (!found) return {};
  std::vector<uint8_t> kept(data, data + 8);
  size_t at = 8;
  for (; at + 12 <= size;) {
    const size_t length = chunk_length(at);
    if (length > size - at - 12) break;
    if (!(length == 0 && std::memcmp(data + at + 4, "IDAT", 4) == 0)) {
      kept.insert(kept.end(), data + at, data + at + 12 + length);
    }
    at += 12 + length;
  }
  kept.insert(kept.end(), data + at, data + size);  // whatever trails, as it was
  return kept;
}

}  // namespace
}  // namespace detail

Image decode_memory(const uint8_t* data, size_t size, const std::string& name, const DecodeOptions& options) {
  if (data == nullptr || size == 0) detail::fail(name, "the image data is empty (0 bytes)");
  if (size > static_cast<size_t>(std::numeric_limits<int>::max())) {
    detail::fail(name, "the encoded image is larger than 2 GiB, which stb_image cannot read");
  }
  auto length = static_cast<int>(size);
  // Checked before stb reads anything: a 100,000 x 100,000 header must not
  // allocate 30 GB (stb's own ceiling is 1 GiB, still far past the limit).
  int64_t claimed_width = 0, claimed_height = 0;
  if (detail::peek_dimensions(data, size, &claimed_width, &claimed_height) &&
      (options.max_pixels < 0 ||
       detail::pixel_product(claimed_width, claimed_height) > static_cast<uint64_t>(options.max_pixels))) {
    detail::too_many_pixels(name, claimed_width, claimed_height, options.max_pixels);
  }
  if (detail::pnm_header_overflows(data, size)) {
    detail::fail(name, "corrupt PNM: a number in its header is larger than 2147483647");
  }
  if (detail::is_jpeg(data, size)) {
    if (detail::jpeg_is_truncated(data, size)) {
      detail::fail(name, "the JPEG data is truncated (no end-of-image marker after the last scan)");
    }
    return detail::decode_jpeg(data, size, name, options.max_pixels);
  }
  int width = 0, height = 0, channels = 0;
  if (!stbi_info_from_memory(data, length, &width, &height, &channels)) {
    const std::string format = detail::unsupported_format(data, size);
    if (!format.empty()) {
      detail::fail_unsupported(name, format + " images are not supported (readable: JPEG, PNG, BMP, GIF, TGA, PNM, PSD); "
                                  "convert it first, e.g. to PNG or JPEG");
    }
    detail::fail(name, std::string("not a readable image: ") + stbi_failure_reason());
  }
  const int64_t pixel_count = static_cast<int64_t>(width) * height;
  if (width <= 0 || height <= 0 || pixel_count > options.max_pixels) {
    detail::too_many_pixels(name, width, height, options.max_pixels);  // formats peek_dimensions does not know
  }

  // No allocation of a genuine image needs more than its float HDR buffer (16
  // bytes a pixel; 32 leaves room for row and block padding) or a copy of its
  // compressed data; anything larger is a decompression bomb.
  struct AllocationLimit {
    explicit AllocationLimit(size_t bytes) {
      detail::stb_allocation_limit = bytes;
      detail::stb_allocation_refused = false;
    }
    ~AllocationLimit() { detail::stb_allocation_limit = 0; }
  } limit(static_cast<size_t>(32 * (static_cast<uint64_t>(width) + 16) * (static_cast<uint64_t>(height) + 16) +
                              2 * static_cast<uint64_t>(size) + (uint64_t{1} << 20)));
  auto stb_failed = [&, header_width = width, header_height = height]() {
    if (detail::stb_allocation_refused) {
      detail::fail(name, "corrupt image: decoding it would need far more memory than a " +
                             std::to_string(header_width) + " x " + std::to_string(header_height) +
                             " image (a decompression bomb, e.g. PNG data that inflates far past the image's "
                             "size, or a chunk claiming gigabytes)");
    }
    const char* reason = stbi_failure_reason();  // stb returns some errors without one
    detail::fail(name, std::string("corrupt image: ") + (reason ? reason : "stb_image could not decode it"));
  };

  const std::vector<uint8_t> cleaned_png = detail::png_without_empty_idat(data, size);
  if (!cleaned_png.empty()) {
    data = cleaned_png.data();
    size = cleaned_png.size();
    length = static_cast<int>(size);
  }
  Image image;
  image.width = width;
  image.height = height;
  image.pixels.resize(static_cast<size_t>(pixel_count) * 3);
  int decoded_channels = 0;
  if (stbi_is_16_bit_from_memory(data, length)) {
    // Decoded here rather than by stb's 16 -> 8 conversion, which differs from
    // PIL: PIL opens 16-bit greyscale as 32-bit "I" and convert("RGB") clips it
    // to 255 (stb keeps the high byte); PIL scales PNM samples by 255 / maxval
    // (stb keeps the high byte, and 2.27 also forgets to swap PNM's big-endian
    // samples).
    stbi_us* samples = stbi_load_16_from_memory(data, length, &width, &height, &decoded_channels, 0);
    if (samples == nullptr) stb_failed();
    const int pnm_max = detail::pnm_max_value(data, size);
    const int c = decoded_channels;
    uint8_t* out = image.pixels.data();
    for (int64_t i = 0; i < pixel_count; ++i, out += 3) {
      for (int channel = 0; channel < 3; ++channel) {
        int sample = samples[i * c + (c >= 3 ? channel : 0)];
        if (pnm_max > 0) {
          sample = ((sample >> 8) | (sample << 8)) & 0xFFFF;
          sample = detail::rescale(sample, pnm_max, c == 1 ? 65535 : 255);
        } else if (c != 1) {
          sample >>= 8;
        }
        out[channel] = static_cast<uint8_t>(std::min(sample, 255));
      }
    }
    stbi_image_free(samples);
    return image;
  }
  stbi_uc* samples = stbi_load_from_memory(data, length, &width, &height, &decoded_channels, 0);
  if (samples == nullptr) stb_failed();
  uint8_t* out = image.pixels.data();
  const int c = decoded_channels;
  for (int64_t i = 0; i < pixel_count; ++i, out += 3) {
    const stbi_uc* in = samples + i * c;
    if (c >= 3) {  // RGB, or RGBA with the alpha dropped
      out[0] = in[0];
      out[1] = in[1];
      out[2] = in[2];
    } else {  // grey, or grey + alpha with the alpha dropped
      out[0] = out[1] = out[2] = in[0];
    }
  }
  stbi_image_free(samples);
  const int pnm_max = detail::pnm_max_value(data, size);
  if (pnm_max > 0 && pnm_max != 255) {  // e.g. maxval 15: PIL stretches to 0..255
    for (uint8_t& value : image.pixels) value = static_cast<uint8_t>(detail::rescale(value, pnm_max, 255));
  }
  return image;
}

/// Reads and decodes an image file; errors name the path.
Image decode_file(const std::string& path, const DecodeOptions& options) {
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  if (!std::filesystem::exists(status)) {
    throw FileNotFoundError(path + ": no such image file");
  }
  if (std::filesystem::is_directory(status)) detail::fail_io(path, "is a directory, not an image file");
  // A FIFO would block the open, /dev/zero would never end: only regular files.
  if (std::filesystem::exists(status) && !std::filesystem::is_regular_file(status)) {
    detail::fail_io(path, "is not a regular file (a device, FIFO or socket); pass an image file");
  }
  const uintmax_t file_bytes = std::filesystem::is_regular_file(status) ? std::filesystem::file_size(path, error) : 0;
  if (!error && file_bytes > static_cast<uintmax_t>(std::numeric_limits<int>::max())) {
    detail::fail(path, "the encoded image is larger than 2 GiB, which stb_image cannot read");  // before reading it all
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) detail::fail_io(path, std::string("cannot open the image file: ") + std::strerror(errno));
  // One read of the size the file system reports (a stream iterator would copy
  // byte by byte, ~5% of a JPEG decode), then whatever is left if it grew since.
  std::vector<uint8_t> bytes(error ? 0 : static_cast<size_t>(file_bytes));
  file.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(static_cast<size_t>(file.gcount()));
  if (!file.eof()) bytes.insert(bytes.end(), std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  if (file.bad()) detail::fail_io(path, "reading the image file failed");
  return decode_memory(bytes.data(), bytes.size(), path, options);
}
}  // namespace pe::image

