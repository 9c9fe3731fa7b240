// TIFF through libtiff (strips and tiles, contiguous or planar samples, the
// first image of the file), converted as PIL 9.4's TiffImagePlugin converts
// the same layouts. PIL decodes compressed TIFFs with libtiff too, so what
// libtiff refuses (a strip cut short, damaged LZW or deflate data) is refused
// by both.
//
// Read: compression none, LZW, deflate (8 and 32946), PackBits and JPEG (7;
// YCbCr converted to RGB by libjpeg, as PIL asks libtiff to), with or without
// a predictor; fill order 1; the layouts of PIL's table (OPEN_INFO): bilevel
// and 2-, 4-, 8-bit grey (min-is-black or min-is-white, PIL's scaling and
// inversion), 16-bit grey (clipped to 255; little-endian min-is-white is read
// as min-is-black, as PIL does), 32-bit and signed 16/32-bit grey (PIL's "I",
// clipped), 32-bit float grey (PIL's "F", clipped and truncated), grey +
// alpha, RGB with 0-3 extra samples (associated alpha is un-premultiplied
// first, as PIL's "RGBa" does), 16-bit RGB(A) (high byte), palettes of 1-8
// bits (PIL keeps the colour map's high bytes), and CMYK (PIL's formula).
// Not read (UnsupportedFormatError, each named): other compressions (CCITT
// fax, old-style JPEG, LZMA, ZSTD, WebP, ...), YCbCr without JPEG, Lab, fill
// order 2, 12-bit samples. PIL reads some of those; docs/formats.md lists them.
//
// libtiff's messages go to a handler of this open file only (its per-file
// handlers of libtiff 4.5), never to the process-wide ones a user may have set.

#include <cstdarg>
#include <cstdio>
#include <string>
#include <vector>

#include <tiffio.h>

#include "image/codecs.hpp"

namespace pe::image::detail {
namespace {

struct MemoryFile {
  const uint8_t* data;
  uint64_t size;
  uint64_t position = 0;
  std::string error;      ///< libtiff's first error message
  bool io_error = false;  ///< some tag's data lies past the end of the file
};

tmsize_t tiff_read(thandle_t handle, void* buffer, tmsize_t size) {
  auto* file = static_cast<MemoryFile*>(handle);
  if (size <= 0 || file->position >= file->size) return 0;
  const uint64_t n = std::min<uint64_t>(static_cast<uint64_t>(size), file->size - file->position);
  std::memcpy(buffer, file->data + file->position, static_cast<size_t>(n));
  file->position += n;
  return static_cast<tmsize_t>(n);
}

tmsize_t tiff_write(thandle_t, void*, tmsize_t) { return -1; }

toff_t tiff_seek(thandle_t handle, toff_t offset, int whence) {
  auto* file = static_cast<MemoryFile*>(handle);
  uint64_t base = 0;
  if (whence == SEEK_CUR) base = file->position;
  else if (whence == SEEK_END) base = file->size;
  file->position = base + offset;
  return file->position;
}

int tiff_close(thandle_t) { return 0; }
toff_t tiff_size(thandle_t handle) { return static_cast<MemoryFile*>(handle)->size; }
int tiff_map(thandle_t, void**, toff_t*) { return 0; }
void tiff_unmap(thandle_t, void*, toff_t) {}

void record(MemoryFile* file, const char* module, const char* format, va_list arguments, bool is_error) {
  char message[256];
  std::vsnprintf(message, sizeof message, format, arguments);
  // libtiff only warns when a tag's data is cut off ("IO error during reading
  // of ...; tag ignored") and may then guess (a palette image without its
  // colour map becomes greyscale): PIL cannot open such a file, and it is
  // truncated, so it is refused.
  if (std::strstr(message, "IO error") != nullptr) file->io_error = true;
  if (is_error && file->error.empty()) file->error = std::string(module ? module : "libtiff") + ": " + message;
}

int tiff_on_error(TIFF*, void* user_data, const char* module, const char* format, va_list arguments) {
  record(static_cast<MemoryFile*>(user_data), module, format, arguments, true);
  return 1;  // handled: the process-wide handler is not called
}

int tiff_on_warning(TIFF*, void* user_data, const char* module, const char* format, va_list arguments) {
  record(static_cast<MemoryFile*>(user_data), module, format, arguments, false);
  return 1;
}

class TiffFile {
 public:
  TiffFile(const Source& in, tmsize_t allocation_limit) : file_{in.data, in.size, 0, {}} {
    TIFFOpenOptions* options = TIFFOpenOptionsAlloc();
    if (options == nullptr) corrupt(in, "not enough memory to read the TIFF header");
    TIFFOpenOptionsSetErrorHandlerExtR(options, tiff_on_error, &file_);
    TIFFOpenOptionsSetWarningHandlerExtR(options, tiff_on_warning, &file_);
    TIFFOpenOptionsSetMaxSingleMemAlloc(options, allocation_limit);
    // "m": no memory mapping (the bytes are ours); "h": read the header only on demand is not wanted.
    tiff_ = TIFFClientOpenExt(in.label().c_str(), "rm", &file_, tiff_read, tiff_write, tiff_seek, tiff_close,
                              tiff_size, tiff_map, tiff_unmap, options);
    TIFFOpenOptionsFree(options);
  }
  ~TiffFile() {
    if (tiff_ != nullptr) TIFFClose(tiff_);
  }
  TiffFile(const TiffFile&) = delete;
  TiffFile& operator=(const TiffFile&) = delete;

  TIFF* get() const { return tiff_; }
  const std::string& error() const { return file_.error; }
  bool io_error() const { return file_.io_error; }

 private:
  MemoryFile file_;
  TIFF* tiff_ = nullptr;
};

enum class Layout { bits, grey, grey_alpha, wide_grey, float_grey, rgb, rgb_associated, palette, cmyk };

struct TiffLayout {
  int64_t width = 0, height = 0;
  Layout layout = Layout::grey;
  int bits = 8;
  int samples = 1;
  int format = SAMPLEFORMAT_UINT;
  bool min_is_white = false;
  bool planar = false;
  bool tiled = false;
  Palette palette;
};

std::string compression_name(int compression) {
  switch (compression) {
    case 2: return "CCITT RLE";
    case 3: return "CCITT fax 3";
    case 4: return "CCITT fax 4";
    case 6: case 7: return "JPEG";
    case 32809: return "ThunderScan";
    case 34676: case 34677: return "SGI LogLuv";
    case 34925: return "LZMA";
    case 50000: return "ZSTD";
    case 50001: return "WebP";
    default: return "method " + std::to_string(compression);
  }
}

TiffLayout read_layout(const Source& in, const TiffFile& file) {
  if (file.get() == nullptr || file.io_error()) {
    if (file.io_error()) truncated(in, "TIFF", "inside the data of its header's tags (its image directory)");
    corrupt(in, "corrupt TIFF: libtiff cannot read its header (" +
                    (file.error().empty() ? std::string("no reason given") : file.error()) + ")");
  }
  TIFF* tiff = file.get();
  TiffLayout layout;
  uint32_t width = 0, height = 0;
  TIFFGetField(tiff, TIFFTAG_IMAGEWIDTH, &width);
  TIFFGetField(tiff, TIFFTAG_IMAGELENGTH, &height);
  layout.width = width;
  layout.height = height;
  uint16_t compression = 1, photometric = 0, bits = 1, samples = 1, format = 1, fill = 1, planar = 1;
  TIFFGetFieldDefaulted(tiff, TIFFTAG_COMPRESSION, &compression);
  TIFFGetField(tiff, TIFFTAG_PHOTOMETRIC, &photometric);
  TIFFGetFieldDefaulted(tiff, TIFFTAG_BITSPERSAMPLE, &bits);
  TIFFGetFieldDefaulted(tiff, TIFFTAG_SAMPLESPERPIXEL, &samples);
  TIFFGetFieldDefaulted(tiff, TIFFTAG_SAMPLEFORMAT, &format);
  TIFFGetFieldDefaulted(tiff, TIFFTAG_FILLORDER, &fill);
  TIFFGetFieldDefaulted(tiff, TIFFTAG_PLANARCONFIG, &planar);
  uint16_t extra_count = 0;
  uint16_t* extra = nullptr;
  TIFFGetFieldDefaulted(tiff, TIFFTAG_EXTRASAMPLES, &extra_count, &extra);
  if (compression != COMPRESSION_NONE && compression != COMPRESSION_LZW && compression != COMPRESSION_ADOBE_DEFLATE &&
      compression != COMPRESSION_DEFLATE && compression != COMPRESSION_PACKBITS && compression != COMPRESSION_JPEG) {
    unsupported(in, "TIFF compression " + compression_name(compression) +
                        " is not supported (this library reads uncompressed, LZW, deflate, PackBits and JPEG TIFFs); "
                        "convert it to PNG or to an LZW TIFF");
  }
  auto refuse = [&](const std::string& what) {
    unsupported(in, "a TIFF of " + what + " is not supported (read: 1-, 2-, 4-, 8-bit grey, 16-bit grey, grey + "
                    "alpha, 8- and 16-bit RGB(A), 1- to 8-bit palettes, 8-bit CMYK); convert it to PNG");
  };
  if (fill != FILLORDER_MSB2LSB) refuse("fill order 2 (least significant bit first)");
  layout.format = format;
  if (format != SAMPLEFORMAT_UINT) {
    // PIL's table has single-channel signed 16/32-bit and float 32-bit grey only.
    const bool is_grey = samples == 1 && (photometric == PHOTOMETRIC_MINISBLACK ||
                                          (format == SAMPLEFORMAT_IEEEFP && photometric == PHOTOMETRIC_MINISWHITE));
    if (format == SAMPLEFORMAT_IEEEFP && is_grey && bits == 32) {
      layout.layout = Layout::float_grey;
    } else if (format == SAMPLEFORMAT_INT && is_grey && (bits == 16 || bits == 32)) {
      layout.layout = Layout::wide_grey;
    } else {
      refuse(format == SAMPLEFORMAT_IEEEFP ? "these floating-point samples" : "these signed samples");
    }
    layout.bits = bits;
    layout.samples = 1;
    layout.tiled = TIFFIsTiled(tiff) != 0;
    return layout;
  }
  if (photometric == PHOTOMETRIC_YCBCR && compression == COMPRESSION_JPEG && planar == PLANARCONFIG_CONTIG &&
      bits == 8 && samples == 3) {
    // As PIL does: libjpeg converts to RGB (libtiff's JPEGCOLORMODE_RGB).
    TIFFSetField(tiff, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    layout.bits = 8;
    layout.samples = 3;
    layout.layout = Layout::rgb;
    layout.tiled = TIFFIsTiled(tiff) != 0;
    return layout;
  }
  layout.bits = bits;
  layout.samples = samples;
  layout.planar = planar == PLANARCONFIG_SEPARATE && samples > 1;
  layout.tiled = TIFFIsTiled(tiff) != 0;
  // The extra samples PIL's table knows: 0 (unspecified), 1 (associated
  // alpha) or 2 (unassociated alpha) for the first, 0 after it.
  const int base = (photometric == PHOTOMETRIC_RGB) ? 3 : photometric == PHOTOMETRIC_SEPARATED ? 4 : 1;
  const int extras = samples - base;
  const int first_extra = extra_count > 0 && extra != nullptr ? extra[0] : -1;  // -1: no ExtraSamples tag
  for (int i = 1; i < extra_count; ++i) {
    if (extra[i] != 0) refuse("these extra samples");
  }
  if (extra_count > 0 && extra_count != extras) refuse("an ExtraSamples tag that does not match its samples");
  switch (photometric) {
    case PHOTOMETRIC_MINISWHITE:
    case PHOTOMETRIC_MINISBLACK:
      layout.min_is_white = photometric == PHOTOMETRIC_MINISWHITE;
      if (samples == 1 && (bits == 1 || bits == 2 || bits == 4 || bits == 8)) {
        layout.layout = bits == 1 ? Layout::bits : Layout::grey;
      } else if (samples == 1 && bits == 32 && !layout.min_is_white && !TIFFIsBigEndian(tiff)) {
        layout.layout = Layout::wide_grey;  // PIL's "I;32N"
      } else if (samples == 1 && bits == 16) {
        // PIL reads little-endian min-is-white 16-bit as "I;16" (not inverted)
        // and has no entry for the big-endian one.
        if (layout.min_is_white && TIFFIsBigEndian(tiff)) refuse("16-bit big-endian min-is-white samples");
        layout.min_is_white = false;
        layout.layout = Layout::grey;
      } else if (samples == 2 && bits == 8 && !layout.min_is_white && first_extra == 2) {
        layout.layout = Layout::grey_alpha;
      } else {
        refuse(std::to_string(samples) + " greyscale samples of " + std::to_string(bits) + " bits");
      }
      break;
    case PHOTOMETRIC_RGB:
      if (bits != 8 && bits != 16) refuse(std::to_string(bits) + "-bit RGB samples");
      if (samples < 3 || samples > 6 || (bits == 16 && samples > 4)) refuse(std::to_string(samples) + " RGB samples");
      if (samples > 3 && extra_count == 0 && samples != 4) refuse("RGB with extra samples but no ExtraSamples tag");
      if (first_extra > 2 && !(first_extra == 999 && samples == 4 && bits == 8)) refuse("these extra samples");
      layout.layout = first_extra == 1 ? Layout::rgb_associated : Layout::rgb;
      if (bits == 16 && first_extra == 1) refuse("16-bit RGB with associated alpha");
      break;
    case PHOTOMETRIC_PALETTE: {
      if (!(samples == 1 && (bits == 1 || bits == 2 || bits == 4 || bits == 8)) &&
          !(samples == 2 && bits == 8 && first_extra == 2)) {
        refuse(std::to_string(samples) + " palette samples of " + std::to_string(bits) + " bits");
      }
      uint16_t *red = nullptr, *green = nullptr, *blue = nullptr;
      if (!TIFFGetField(tiff, TIFFTAG_COLORMAP, &red, &green, &blue) || red == nullptr) {
        corrupt(in, "corrupt TIFF: a palette image without a colour map");
      }
      const int entries = 1 << bits;
      for (int i = 0; i < entries && i < 256; ++i) {  // PIL keeps value // 256
        layout.palette.rgb[static_cast<size_t>(i) * 3] = static_cast<uint8_t>(red[i] >> 8);
        layout.palette.rgb[static_cast<size_t>(i) * 3 + 1] = static_cast<uint8_t>(green[i] >> 8);
        layout.palette.rgb[static_cast<size_t>(i) * 3 + 2] = static_cast<uint8_t>(blue[i] >> 8);
      }
      layout.layout = Layout::palette;
      break;
    }
    case PHOTOMETRIC_SEPARATED: {
      uint16_t ink_set = INKSET_CMYK;
      TIFFGetFieldDefaulted(tiff, TIFFTAG_INKSET, &ink_set);
      if (bits != 8 || samples < 4 || samples > 6 || (samples > 4 && first_extra != 0) || ink_set != INKSET_CMYK) {
        refuse("these separated (CMYK) samples");
      }
      layout.layout = Layout::cmyk;
      break;
    }
    case PHOTOMETRIC_YCBCR: refuse("YCbCr samples"); break;
    case PHOTOMETRIC_CIELAB: case PHOTOMETRIC_ICCLAB: case PHOTOMETRIC_ITULAB: refuse("Lab samples"); break;
    default: refuse("photometric interpretation " + std::to_string(photometric));
  }
  return layout;
}

/// Sample `index` of a row of `bits`-bit samples (wider ones in host order,
/// as libtiff gives them; `format` says how 32-bit ones read).
inline double sample(const uint8_t* row, int64_t index, int bits, int format) {
  switch (bits) {
    case 1: return (row[index >> 3] >> (7 - (index & 7))) & 1;
    case 2: return (row[index >> 2] >> (6 - 2 * (index & 3))) & 3;
    case 4: return (row[index >> 1] >> (4 - 4 * (index & 1))) & 15;
    case 8: return row[index];
    case 16: {
      uint16_t value;
      std::memcpy(&value, row + index * 2, 2);
      return format == SAMPLEFORMAT_INT ? static_cast<int16_t>(value) : value;
    }
    default: {
      uint32_t value;
      std::memcpy(&value, row + index * 4, 4);
      if (format == SAMPLEFORMAT_IEEEFP) {
        float f;
        std::memcpy(&f, &value, 4);
        return f;
      }
      return format == SAMPLEFORMAT_INT ? static_cast<double>(static_cast<int32_t>(value)) : value;
    }
  }
}

inline uint8_t clip8(int v) { return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v); }

/// PIL's RGB for pixel samples s[0..samples).
void to_rgb(const TiffLayout& layout, const double* sd, uint8_t* out) {
  int s[6] = {};
  for (int i = 0; i < layout.samples && i < 6; ++i) s[i] = layout.layout == Layout::float_grey ? 0 : static_cast<int>(std::max(-2147483648.0, std::min(2147483647.0, sd[i])));
  switch (layout.layout) {
    case Layout::bits: {
      const bool white = (s[0] != 0) != layout.min_is_white;
      out[0] = out[1] = out[2] = white ? 255 : 0;
      break;
    }
    case Layout::grey: case Layout::grey_alpha: {
      int v = s[0];
      if (layout.bits == 2) v *= 85;
      else if (layout.bits == 4) v *= 17;
      else if (layout.bits == 16) v = v > 255 ? 255 : v;
      if (layout.min_is_white) v = 255 - v;
      out[0] = out[1] = out[2] = static_cast<uint8_t>(v);
      break;
    }
    case Layout::wide_grey:  // PIL's "I": clipped by convert("RGB")
      out[0] = out[1] = out[2] = clip8(s[0]);
      break;
    case Layout::float_grey: {  // PIL's f2l: clipped, then truncated (NaN reads 0 there on x86)
      const double v = sd[0];
      out[0] = out[1] = out[2] = v >= 255.0 ? 255 : v > 0.0 ? static_cast<uint8_t>(v) : 0;
      break;
    }
    case Layout::rgb:
      for (int c = 0; c < 3; ++c) out[c] = static_cast<uint8_t>(layout.bits == 16 ? s[c] >> 8 : s[c]);
      break;
    case Layout::rgb_associated: {  // PIL's unpackRGBa
      const int a = s[3];
      for (int c = 0; c < 3; ++c) out[c] = a == 0 ? 0 : a == 255 ? static_cast<uint8_t>(s[c]) : clip8(s[c] * 255 / a);
      break;
    }
    case Layout::palette: {
      const uint8_t* rgb = layout.palette[s[0]];
      out[0] = rgb[0];
      out[1] = rgb[1];
      out[2] = rgb[2];
      break;
    }
    case Layout::cmyk:
      cmyk_to_rgb(s[0], s[1], s[2], s[3], out);
      break;
  }
}

}  // namespace

ImageInfo info_tiff(const Source& in) {
  const TiffFile file(in, tmsize_t{256} << 20);
  const TiffLayout layout = read_layout(in, file);
  return ImageInfo{"TIFF", layout.width, layout.height};
}

Image decode_tiff(const Source& in) {
  // libtiff allocates at most one strip's or tile's compressed bytes at a
  // time, which the file holds; the decoded buffers are ours.
  const tmsize_t limit = static_cast<tmsize_t>(std::max<uint64_t>(uint64_t{256} << 20, uint64_t{2} * in.size));
  const TiffFile file(in, limit);
  const TiffLayout layout = read_layout(in, file);
  TIFF* tiff = file.get();
  check_size(in, "TIFF", layout.width, layout.height);
  const int64_t width = layout.width, height = layout.height;
  Image image = new_image(in, width, height);
  const int planes = layout.planar ? layout.samples : 1;
  const int per_plane = layout.planar ? 1 : layout.samples;
  const int64_t row_bytes = (width * per_plane * layout.bits + 7) / 8;
  // Each plane's samples for one full image row band, then converted.
  auto fail_read = [&](const char* what) {
    const std::string reason = file.error().empty() ? std::string("no reason given") : file.error();
    if (reason.find("Read error") != std::string::npos || reason.find("Not enough data") != std::string::npos ||
        reason.find("short") != std::string::npos) {
      truncated(in, "TIFF", std::string("inside its ") + what + " (libtiff: " + reason + ")");
    }
    corrupt(in, std::string("corrupt TIFF ") + what + " (libtiff: " + reason + ")");
  };
  uint32_t block_width = static_cast<uint32_t>(width), block_height = 0;
  if (layout.tiled) {
    TIFFGetField(tiff, TIFFTAG_TILEWIDTH, &block_width);
    TIFFGetField(tiff, TIFFTAG_TILELENGTH, &block_height);
  } else {
    TIFFGetFieldDefaulted(tiff, TIFFTAG_ROWSPERSTRIP, &block_height);
  }
  if (block_width == 0 || block_height == 0) corrupt(in, "corrupt TIFF: strips or tiles of no size");
  if (layout.tiled && uint64_t{block_width} * block_height > std::max<uint64_t>(uint64_t{1} << 22,
                                                                                 4 * static_cast<uint64_t>(width * height))) {
    corrupt(in, "corrupt TIFF: tiles of " + std::to_string(block_width) + " x " + std::to_string(block_height) +
                    " pixels for a " + std::to_string(width) + " x " + std::to_string(height) + " image");
  }
  block_height = static_cast<uint32_t>(std::min<int64_t>(block_height, height));
  const tmsize_t block_bytes = layout.tiled ? TIFFTileSize(tiff) : TIFFStripSize(tiff);
  const int64_t block_row_bytes = layout.tiled ? TIFFTileRowSize(tiff) : row_bytes;
  if (block_bytes <= 0 || block_row_bytes <= 0) corrupt(in, "corrupt TIFF: strips or tiles of no size");
  // Rows of samples for one band of block_height rows, per plane.
  const uint32_t band_rows = block_height;
  std::vector<std::vector<uint8_t>> band(static_cast<size_t>(planes));
  std::vector<uint8_t> block;
  try {
    for (auto& plane : band) plane.assign(static_cast<size_t>(row_bytes) * band_rows, 0);
    block.resize(static_cast<size_t>(block_bytes));
  } catch (const std::bad_alloc&) {
    corrupt(in, "not enough memory to decode this TIFF (strips or tiles of " + std::to_string(block_bytes) + " bytes)");
  }
  std::vector<double> s(static_cast<size_t>(layout.samples));
  const bool fast = layout.bits == 8 && (layout.layout == Layout::grey || layout.layout == Layout::grey_alpha ||
                                         layout.layout == Layout::palette || layout.layout == Layout::rgb);
  for (int64_t top = 0; top < height; top += band_rows) {
    const int64_t rows = std::min<int64_t>(band_rows, height - top);
    for (int p = 0; p < planes; ++p) {
      if (!layout.tiled) {
        const uint32_t strip = TIFFComputeStrip(tiff, static_cast<uint32_t>(top), static_cast<uint16_t>(p));
        const tmsize_t got = TIFFReadEncodedStrip(tiff, strip, block.data(), block_bytes);
        if (got < 0 || got < rows * row_bytes) fail_read("strip data");
        std::memcpy(band[p].data(), block.data(), static_cast<size_t>(rows * row_bytes));
        continue;
      }
      for (int64_t left = 0; left < width; left += block_width) {
        const uint32_t tile = TIFFComputeTile(tiff, static_cast<uint32_t>(left), static_cast<uint32_t>(top), 0,
                                              static_cast<uint16_t>(p));
        if (TIFFReadEncodedTile(tiff, tile, block.data(), block_bytes) < 0) fail_read("tile data");
        const int64_t columns = std::min<int64_t>(block_width, width - left);
        // Tiles hold whole samples; copy the part of each tile row inside the image.
        const int64_t first_bit = left * per_plane * layout.bits;
        const int64_t bits_wanted = columns * per_plane * layout.bits;
        for (int64_t r = 0; r < rows; ++r) {
          const uint8_t* from = block.data() + r * block_row_bytes;
          uint8_t* to = band[p].data() + r * row_bytes;
          if (first_bit % 8 == 0 && bits_wanted % 8 == 0) {
            std::memcpy(to + first_bit / 8, from, static_cast<size_t>(bits_wanted / 8));
          } else {  // sub-byte samples not on a byte boundary
            for (int64_t b = 0; b < bits_wanted; ++b) {
              const int bit = (from[b >> 3] >> (7 - (b & 7))) & 1;
              const int64_t at = first_bit + b;
              to[at >> 3] = static_cast<uint8_t>((to[at >> 3] & ~(0x80 >> (at & 7))) | (bit << (7 - (at & 7))));
            }
          }
        }
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      uint8_t* out = image.pixels.data() + static_cast<size_t>((top + r) * width) * 3;
      if (fast && !layout.planar) {  // 8-bit contiguous samples: no per-sample dispatch
        const uint8_t* in = band[0].data() + r * row_bytes;
        const int n = layout.samples;
        for (int64_t x = 0; x < width; ++x, out += 3, in += n) {
          switch (layout.layout) {
            case Layout::grey: case Layout::grey_alpha:
              out[0] = out[1] = out[2] = layout.min_is_white ? static_cast<uint8_t>(255 - in[0]) : in[0];
              break;
            case Layout::palette: {
              const uint8_t* rgb = layout.palette[in[0]];
              out[0] = rgb[0];
              out[1] = rgb[1];
              out[2] = rgb[2];
              break;
            }
            default:  // rgb
              out[0] = in[0];
              out[1] = in[1];
              out[2] = in[2];
              break;
          }
        }
        continue;
      }
      for (int64_t x = 0; x < width; ++x, out += 3) {
        for (int c = 0; c < layout.samples; ++c) {
          const uint8_t* row = band[layout.planar ? c : 0].data() + r * row_bytes;
          s[c] = sample(row, layout.planar ? x : x * layout.samples + c, layout.bits, layout.format);
        }
        to_rgb(layout, s.data(), out);
      }
    }
  }
  return image;
}

}  // namespace pe::image::detail
