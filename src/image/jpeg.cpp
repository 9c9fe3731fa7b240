// JPEG through libjpeg-turbo, the library PIL itself calls, with PIL's
// settings (accurate integer IDCT, fancy upsampling, libjpeg's colour-space
// guess from the JFIF/Adobe markers), so the pixels are PIL's. Greyscale is
// replicated; 4-channel JPEG is read as PIL does, always as Adobe-inverted
// CMYK (YCCK converted by libjpeg), then PIL's CMYK -> RGB formula.
//
// Where the image ends is libjpeg's to say, as in PIL: it reads the primary
// image's marker segments and scans and stops at its end-of-image marker, so
// whatever trails it (a phone's Motion Photo video, a vendor trailer, an MPO
// file's second image, bytes FF DA included) is never looked at. The data is
// handed over as PIL's decoder hands it: through a suspending source, which
// makes libjpeg stop and wait when the data runs out instead of inventing an
// end-of-image marker. So, as in PIL, a JPEG that ends before its last
// scanline is truncated (PIL: "image file is truncated"), and one that ends
// after it, missing only its end-of-image marker, is read.
//
// Stricter than PIL on purpose: corrupt entropy-coded data, which libjpeg pads
// with grey after a warning (PIL ignores it), is an error; so is a JPEG of
// more than 500 scans (a CPU-exhaustion pattern; libjpeg-turbo's own
// TurboJPEG API refuses those too). Harmless libjpeg warnings (junk bytes
// between markers, an unknown JFIF version) are ignored, as PIL ignores them.

#include <csetjmp>
#include <cstdio>  // before jpeglib.h, which uses FILE and size_t without including it
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include <jpeglib.h>
#include <jerror.h>  // after jpeglib.h: the warning codes (JWRN_*) told apart below

#include "image/codecs.hpp"

namespace pe::image::detail {
namespace {

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

enum class JpegStatus { ok, libjpeg_error, truncated, too_many_pixels, unsupported_channels, out_of_memory };

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
void jpeg_decode_pixels(const uint8_t* data, size_t size, int64_t max_pixels, JpegAllocate allocate, void* context,
                        JpegResult* result) {
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
  jpeg_source_mgr source{};
  source.next_input_byte = data;
  source.bytes_in_buffer = size;
  source.init_source = [](j_decompress_ptr) {};
  source.fill_input_buffer = [](j_decompress_ptr) -> boolean { return FALSE; };  // suspend: no more data
  source.skip_input_data = [](j_decompress_ptr decompress, long count) {
    jpeg_source_mgr* src = decompress->src;
    const size_t skip = count > 0 ? static_cast<size_t>(count) : 0;
    const size_t step = skip < src->bytes_in_buffer ? skip : src->bytes_in_buffer;  // past the end: suspend later
    src->next_input_byte += step;
    src->bytes_in_buffer -= step;
  };
  source.resync_to_restart = jpeg_resync_to_restart;
  source.term_source = [](j_decompress_ptr) {};
  cinfo.src = &source;
  auto suspended = [&]() {
    jpeg_destroy_decompress(&cinfo);
    result->status = JpegStatus::truncated;
  };
  if (jpeg_read_header(&cinfo, TRUE) == JPEG_SUSPENDED) return suspended();
  result->width = cinfo.image_width;
  result->height = cinfo.image_height;
  result->channels = cinfo.num_components;
  JpegStatus refusal = JpegStatus::ok;
  if (result->width * result->height > max_pixels) {
    refusal = JpegStatus::too_many_pixels;  // libjpeg's frame header is the one info_jpeg read: a safeguard
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
  // Allocates the image-sized buffers (after the pixel limit); for a
  // progressive JPEG it reads every scan, so a cut one suspends here.
  if (!jpeg_start_decompress(&cinfo)) return suspended();
  const size_t stride = static_cast<size_t>(cinfo.output_width) * 3;
  JSAMPARRAY cmyk_row = cmyk ? (*cinfo.mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(&cinfo), JPOOL_IMAGE,
                                                          cinfo.output_width * 4, 1)
                             : nullptr;
  while (cinfo.output_scanline < cinfo.output_height) {
    uint8_t* row = pixels + static_cast<size_t>(cinfo.output_scanline) * stride;
    JSAMPROW rows[1] = {row};
    if (jpeg_read_scanlines(&cinfo, cmyk ? cmyk_row : rows, 1) != 1) return suspended();  // data ran out
    if (cmyk) jpeg_inverted_cmyk_row_to_rgb(cmyk_row[0], static_cast<int>(cinfo.output_width), row);
  }
  // Reads on to the end-of-image marker; when the data ends first it
  // suspends, and PIL (JpegDecode.c) accepts the image all the same.
  jpeg_finish_decompress(&cinfo);
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

/// The frame header, read as PIL's JpegImagePlugin reads it: markers from SOI
/// on, junk between them skipped, up to the first start-of-frame (SOF0-SOF15
/// but DHT C4, JPG C8 and DAC CC).
struct JpegFrame {
  int64_t width = 0, height = 0;
  int precision = 0, components = 0;
};

JpegFrame jpeg_frame(const Source& in) {
  const uint8_t* data = in.data;
  const size_t size = in.size;
  size_t i = 2;
  for (;;) {
    while (i < size && data[i] != 0xFF) ++i;
    while (i + 1 < size && data[i + 1] == 0xFF) ++i;
    if (i + 1 >= size) truncated(in, "JPEG", "before its frame header (SOF marker)");
    const uint8_t marker = data[i + 1];
    i += 2;
    if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;
    if (marker == 0xD9 || marker == 0xDA) {
      corrupt(in, "corrupt JPEG: no frame header (SOF marker) before its image data; libjpeg cannot read it");
    }
    if (i + 2 > size) truncated(in, "JPEG", "inside a marker segment, before its frame header");
    const size_t length = be16(data + i);
    if (length < 2) corrupt(in, "corrupt JPEG: a marker segment of length " + std::to_string(length));
    if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
      if (length < 8 || i + 8 > size) truncated(in, "JPEG", "inside its frame header");
      JpegFrame frame;
      frame.precision = data[i + 2];
      frame.height = be16(data + i + 3);
      frame.width = be16(data + i + 5);
      frame.components = data[i + 7];
      return frame;
    }
    if (length > size - i) truncated(in, "JPEG", "inside a marker segment, before its frame header");
    i += length;
  }
}

/// PIL's checks on the frame header (JpegImagePlugin.SOF).
JpegFrame checked_frame(const Source& in) {
  const JpegFrame frame = jpeg_frame(in);
  if (frame.precision != 8) {
    unsupported(in, "a " + std::to_string(frame.precision) +
                        "-bit JPEG is not supported (PIL reads 8-bit JPEG only); convert it to an 8-bit JPEG or PNG");
  }
  if (frame.components != 1 && frame.components != 3 && frame.components != 4) {
    unsupported(in, "a JPEG with " + std::to_string(frame.components) +
                        " channels is not supported (PIL reads 1, 3 or 4); convert it to a 3-channel JPEG or PNG");
  }
  if (frame.height == 0) {
    unsupported(in, "a JPEG whose height is set by a DNL marker is not supported (neither PIL nor libjpeg reads it)");
  }
  return frame;
}

}  // namespace

ImageInfo info_jpeg(const Source& in) {
  const JpegFrame frame = checked_frame(in);
  return ImageInfo{"JPEG", frame.width, frame.height};
}

Image decode_jpeg(const Source& in) {
  const JpegFrame frame = checked_frame(in);
  check_size(in, "JPEG", frame.width, frame.height);
  Image image;
  JpegResult result;
  jpeg_decode_pixels(in.data, in.size, 2 * in.max_pixels, resize_pixel_vector, &image.pixels, &result);
  switch (result.status) {
    case JpegStatus::ok:
      break;
    case JpegStatus::libjpeg_error:
      corrupt(in, std::string("unreadable JPEG data (libjpeg: ") + result.message + ")");
    case JpegStatus::truncated:
      truncated(in, "JPEG", "before its last scanline");
    case JpegStatus::too_many_pixels:
      check_size(in, "JPEG", result.width, result.height);
      corrupt(in, "corrupt JPEG: libjpeg read another frame size than its header's");
    case JpegStatus::unsupported_channels:
      unsupported(in, "a JPEG with " + std::to_string(result.channels) +
                          " channels is not supported (PIL reads 1, 3 or 4); convert it to a 3-channel JPEG or PNG");
    case JpegStatus::out_of_memory:
      corrupt(in, "not enough memory for the " + std::to_string(result.width) + " x " +
                      std::to_string(result.height) + " decoded image");
  }
  image.width = static_cast<int>(result.width);
  image.height = static_cast<int>(result.height);
  return image;
}

}  // namespace pe::image::detail
