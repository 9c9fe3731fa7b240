// Format sniffing, header reading and what the codecs share: errors, PIL's
// decompression-bomb rule, image allocation (see src/image/codecs.hpp).

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <new>
#include <string>

#include "common/log.hpp"
#include "image/codecs.hpp"

namespace pe::image {
namespace detail {

namespace {

bool has(const uint8_t* data, size_t size, size_t offset, const char* text) {
  return starts_with(data, size, offset, text, std::strlen(text));
}

bool has_bytes(const uint8_t* data, size_t size, size_t offset, std::initializer_list<uint8_t> bytes) {
  if (size < offset + bytes.size()) return false;
  size_t i = offset;
  for (uint8_t b : bytes) {
    if (data[i++] != b) return false;
  }
  return true;
}

/// ISO base media files (HEIF, AVIF): "ftyp" at 4 and a brand at 8.
Format iso_media_format(const uint8_t* data, size_t size) {
  if (!has(data, size, 4, "ftyp")) return Format::unknown;
  for (const char* brand : {"avif", "avis"}) {
    if (has(data, size, 8, brand)) return Format::avif;
  }
  for (const char* brand : {"heic", "heix", "hevc", "hevx", "heim", "heis", "hevm", "hevs", "mif1", "msf1"}) {
    if (has(data, size, 8, brand)) return Format::heif;
  }
  return Format::unknown;
}

}  // namespace

// The order follows PIL's: its plugins claim a file by their accept tests in
// registration order (BMP, GIF, JPEG, PPM, PNG first, then alphabetical), and
// TGA, which has no magic bytes, is tried after the formats with one. The
// formats PIL reads and this library does not are recognised too, so that
// such a file is named and refused, never misread as a TGA.
Format sniff(const uint8_t* data, size_t size) {
  if (data == nullptr || size == 0) return Format::unknown;
  if (has(data, size, 0, "BM")) return Format::bmp;
  if (size >= 4) {  // PIL's DIB plugin: a BMP info header without the file header
    const uint32_t header = le32(data);
    if (header == 12 || header == 40 || header == 64 || header == 108 || header == 124) return Format::dib;
  }
  if (has(data, size, 0, "GIF87a") || has(data, size, 0, "GIF89a")) return Format::gif;
  if (has_bytes(data, size, 0, {0xFF, 0xD8, 0xFF})) return Format::jpeg;
  if (size >= 2 && data[0] == 'P' && std::strchr("0123456y", data[1]) != nullptr && data[1] != '\0') {
    return Format::pnm;  // PIL's test; the magic itself is checked as PIL does, when reading
  }
  if (has_bytes(data, size, 0, {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'})) return Format::png;
  if (has(data, size, 0, "8BPS")) return size >= 6 && be16(data + 4) == 2 ? Format::psb : Format::psd;
  if (has(data, size, 0, "RIFF") && has(data, size, 8, "WEBP")) {
    // PIL claims a RIFF/WEBP file only when its first chunk is an image chunk.
    if (has(data, size, 12, "VP8 ") || has(data, size, 12, "VP8L") || has(data, size, 12, "VP8X")) return Format::webp;
    return Format::unknown;
  }
  for (const char* prefix : {"MM\x00\x2A", "II\x2A\x00", "MM\x2A\x00", "II\x00\x2A", "MM\x00\x2B", "II\x2B\x00"}) {
    if (starts_with(data, size, 0, prefix, 4)) return Format::tiff;
  }
  // Read by PIL, not here.
  if (has(data, size, 0, "BLP1") || has(data, size, 0, "BLP2")) return Format::blp;
  // CUR and ICO share their first bytes with TGAs of type 2 and 1: PIL's
  // plugins give such a file up (and TGA gets it) when it lists no image.
  if (has_bytes(data, size, 0, {0, 0, 2, 0}) && size >= 6 && le16(data + 4) > 0) return Format::cur;
  if (has(data, size, 0, "DDS ")) return Format::dds;
  if (has(data, size, 0, "%!PS") || has_bytes(data, size, 0, {0xC5, 0xD0, 0xD3, 0xC6})) return Format::eps;
  if (has(data, size, 0, "SIMPLE")) return Format::fits;
  if (size >= 16 && (le16(data + 4) == 0xAF11 || le16(data + 4) == 0xAF12) &&
      (le16(data + 14) == 0 || le16(data + 14) == 3)) {
    return Format::fli;
  }
  if (has_bytes(data, size, 0, {0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1})) return Format::ole;
  if (has(data, size, 0, "icns")) return Format::icns;
  if (has_bytes(data, size, 0, {0, 0, 1, 0}) && size >= 6 && le16(data + 4) > 0) return Format::ico;
  if (has_bytes(data, size, 0, {0xFF, 0x4F, 0xFF, 0x51}) ||
      has_bytes(data, size, 0, {0, 0, 0, 0x0C, 'j', 'P', ' ', ' ', 0x0D, 0x0A, 0x87, 0x0A})) {
    return Format::jpeg2000;
  }
  if (has(data, size, 0, "DanM") || has(data, size, 0, "LinS")) return Format::msp;
  if (size >= 2 && data[0] == 10 && (data[1] == 0 || data[1] == 2 || data[1] == 3 || data[1] == 5)) {
    return Format::pcx;
  }
  if (has_bytes(data, size, 0, {0x80, 0xE8, 0x00, 0x00})) return Format::pixar;
  if (size >= 2 && be16(data) == 474) return Format::sgi;
  if (size >= 4 && be32(data) == 0x59A66A95) return Format::sun;
  // Read by neither (checked before TGA, whose test a few of them could pass).
  if (const Format media = iso_media_format(data, size); media != Format::unknown) return media;
  if (has_bytes(data, size, 0, {0xFF, 0x0A}) ||
      has_bytes(data, size, 0, {0, 0, 0, 0x0C, 'J', 'X', 'L', ' ', 0x0D, 0x0A, 0x87, 0x0A})) {
    return Format::jpegxl;
  }
  if (has(data, size, 0, "#?RADIANCE") || has(data, size, 0, "#?RGBE")) return Format::radiance_hdr;
  if (has_bytes(data, size, 0, {0x53, 0x80, 0xF6, 0x34})) return Format::softimage_pic;
  if (has(data, size, 0, "%PDF")) return Format::pdf;
  if (has(data, size, 0, "qoif")) return Format::qoi;
  if (has(data, size, 0, "/* XPM */")) return Format::xpm;
  size_t first = 0;  // XBM (a C header) and SVG may start with blanks
  while (first < size && first < 16 && std::isspace(data[first])) ++first;
  if (has(data, size, first, "#define")) return Format::xbm;
  if (has(data, size, first, "<svg") || has(data, size, first, "<?xml")) return Format::svg;
  if (looks_like_tga(data, size)) return Format::tga;
  return Format::unknown;
}

const char* format_name(Format format) {
  switch (format) {
    case Format::unknown: return "";
    case Format::jpeg: return "JPEG";
    case Format::png: return "PNG";
    case Format::gif: return "GIF";
    case Format::bmp: return "BMP";
    case Format::dib: return "DIB";
    case Format::pnm: return "PNM";
    case Format::psd: return "PSD";
    case Format::webp: return "WebP";
    case Format::tiff: return "TIFF";
    case Format::tga: return "TGA";
    case Format::jpeg2000: return "JPEG 2000";
    case Format::ico: return "ICO";
    case Format::cur: return "CUR";
    case Format::icns: return "ICNS";
    case Format::dds: return "DDS";
    case Format::eps: return "EPS";
    case Format::fits: return "FITS";
    case Format::blp: return "BLP";
    case Format::sgi: return "SGI";
    case Format::sun: return "Sun raster";
    case Format::xbm: return "XBM";
    case Format::xpm: return "XPM";
    case Format::msp: return "MSP";
    case Format::pixar: return "Pixar";
    case Format::fli: return "FLI/FLC";
    case Format::ole: return "FlashPix (OLE)";
    case Format::pcx: return "PCX";
    case Format::heif: return "HEIC/HEIF";
    case Format::avif: return "AVIF";
    case Format::jpegxl: return "JPEG XL";
    case Format::radiance_hdr: return "Radiance HDR";
    case Format::softimage_pic: return "Softimage PIC";
    case Format::pdf: return "PDF";
    case Format::svg: return "SVG";
    case Format::qoi: return "QOI";
    case Format::psb: return "PSB";
  }
  return "";
}

bool is_read(Format format) {
  switch (format) {
    case Format::jpeg: case Format::png: case Format::gif: case Format::bmp: case Format::dib: case Format::pnm:
    case Format::psd: case Format::webp: case Format::tiff: case Format::tga:
      return true;
    default:
      return false;
  }
}

void corrupt(const Source& in, const std::string& problem) { throw CorruptDataError(in.label() + ": " + problem); }

void unsupported(const Source& in, const std::string& problem) {
  throw UnsupportedFormatError(in.label() + ": " + problem);
}

void truncated(const Source& in, const char* format, const std::string& what) {
  throw CorruptDataError(in.label() + ": truncated " + format + " data: the file ends " + what +
                         " (" + std::to_string(in.size) + " bytes); it is incomplete, as PIL also reports; "
                         "download or export it again");
}

void check_size(const Source& in, const char* format, int64_t width, int64_t height) {
  if (width <= 0 || height <= 0) {
    corrupt(in, std::string("corrupt ") + format + ": the header declares " + std::to_string(width) + " x " +
                    std::to_string(height) + " pixels, an image without pixels");
  }
  const uint64_t pixels = static_cast<uint64_t>(width) * static_cast<uint64_t>(height);
  const uint64_t limit = 2 * static_cast<uint64_t>(in.max_pixels);
  const std::string claim = std::string("the ") + format + " header declares " + std::to_string(width) + " x " +
                            std::to_string(height) + " = " + std::to_string(pixels) + " pixels";
  if (pixels > limit) {
    throw CorruptDataError(in.label() + ": " + claim + ", over the limit of " + std::to_string(limit) +
                           " (2 x max_pixels " + std::to_string(in.max_pixels) +
                           "; a decompression-bomb guard, PIL's rule); raise max_pixels if the image is genuine");
  }
  if (width > std::numeric_limits<int>::max() || height > std::numeric_limits<int>::max()) {
    unsupported(in, claim + ", a side longer than 2147483647 pixels, which this library cannot hold");
  }
  if (pixels > static_cast<uint64_t>(in.max_pixels)) {
    pe::detail::logger().warn("{}: {}, over max_pixels {} (PIL's MAX_IMAGE_PIXELS; PIL warns of a possible "
                              "decompression bomb too); decoding it, refused only above {}",
                              in.label(), claim, in.max_pixels, limit);
  }
}

Image new_image(const Source& in, int64_t width, int64_t height) {
  Image image;
  try {
    image.pixels.assign(static_cast<size_t>(width) * static_cast<size_t>(height) * 3, 0);
  } catch (const std::bad_alloc&) {
    corrupt(in, "not enough memory for the decoded " + std::to_string(width) + " x " + std::to_string(height) +
                    " image (" + std::to_string(width * height * 3 / (1 << 20)) + " MiB)");
  } catch (const std::length_error&) {
    corrupt(in, "not enough memory for the decoded " + std::to_string(width) + " x " + std::to_string(height) +
                    " image");
  }
  image.width = static_cast<int>(width);
  image.height = static_cast<int>(height);
  return image;
}

namespace {

[[noreturn]] void refuse_format(const Source& in, Format format) {
  std::string reason;
  switch (format) {
    case Format::radiance_hdr:
    case Format::softimage_pic:
      reason = " (PIL does not read it either, and the model's training pipeline was PIL)";
      break;
    case Format::heif:
    case Format::avif:
    case Format::jpegxl:
    case Format::qoi:
    case Format::pdf:
    case Format::svg:
      reason = " (PIL 9.4 does not read it either)";
      break;
    case Format::psb:
      reason = " (Photoshop's large-document format; PIL does not read it either)";
      break;
    default:
      reason = " (PIL reads it; this library does not)";
      break;
  }
  unsupported(in, std::string(format_name(format)) + " images are not supported" + reason +
                      "; readable: JPEG, PNG, WebP, GIF, BMP, TIFF, TGA, PNM, PSD; convert it first, e.g. to PNG");
}

[[noreturn]] void refuse_unknown(const Source& in) {
  corrupt(in, "not a readable image: its first bytes match no image format (read: JPEG, PNG, WebP, GIF, BMP, "
              "TIFF, TGA, PNM, PSD); it may be damaged, empty or not an image");
}

}  // namespace

}  // namespace detail

std::string sniff_format(const uint8_t* data, size_t size) { return detail::format_name(detail::sniff(data, size)); }

bool is_supported_format(const std::string& format) {
  for (auto candidate : {detail::Format::jpeg, detail::Format::png, detail::Format::gif, detail::Format::bmp,
                         detail::Format::dib, detail::Format::pnm, detail::Format::psd, detail::Format::webp, detail::Format::tiff,
                         detail::Format::tga}) {
    if (format == detail::format_name(candidate)) return true;
  }
  return false;
}

ImageInfo read_info(const uint8_t* data, size_t size, const std::string& name) {
  detail::Source in{data, size, &name, kDefaultMaxPixels};
  if (data == nullptr || size == 0) detail::corrupt(in, "the image data is empty (0 bytes)");
  const detail::Format format = detail::sniff(data, size);
  switch (format) {
    case detail::Format::jpeg: return detail::info_jpeg(in);
    case detail::Format::png: return detail::info_png(in);
    case detail::Format::gif: return detail::info_gif(in);
    case detail::Format::bmp: return detail::info_bmp(in);
    case detail::Format::dib: return detail::info_dib(in);
    case detail::Format::pnm: return detail::info_pnm(in);
    case detail::Format::psd: return detail::info_psd(in);
    case detail::Format::webp: return detail::info_webp(in);
    case detail::Format::tiff: return detail::info_tiff(in);
    case detail::Format::tga: return detail::info_tga(in);
    case detail::Format::unknown: detail::refuse_unknown(in);
    default: detail::refuse_format(in, format);
  }
}

Image decode_memory(const uint8_t* data, size_t size, const std::string& name, const DecodeOptions& options) {
  detail::Source in{data, size, &name, options.max_pixels};
  if (data == nullptr || size == 0) detail::corrupt(in, "the image data is empty (0 bytes)");
  if (options.max_pixels < 1) {
    throw InvalidArgumentError(name + ": max_pixels must be >= 1, got " + std::to_string(options.max_pixels));
  }
  const detail::Format format = detail::sniff(data, size);
  switch (format) {
    case detail::Format::jpeg: return detail::decode_jpeg(in);
    case detail::Format::png: return detail::decode_png(in);
    case detail::Format::gif: return detail::decode_gif(in);
    case detail::Format::bmp: return detail::decode_bmp(in);
    case detail::Format::dib: return detail::decode_dib(in);
    case detail::Format::pnm: return detail::decode_pnm(in);
    case detail::Format::psd: return detail::decode_psd(in);
    case detail::Format::webp: return detail::decode_webp(in);
    case detail::Format::tiff: return detail::decode_tiff(in);
    case detail::Format::tga: return detail::decode_tga(in);
    case detail::Format::unknown: detail::refuse_unknown(in);
    default: detail::refuse_format(in, format);
  }
}

namespace {

/// Checks that `path` names a regular file; returns its size.
uintmax_t regular_file_size(const std::string& path) {
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  if (!std::filesystem::exists(status)) throw FileNotFoundError(path + ": no such image file");
  if (std::filesystem::is_directory(status)) throw IoError(path + ": is a directory, not an image file");
  // A FIFO would block the open, /dev/zero would never end: only regular files.
  if (!std::filesystem::is_regular_file(status)) {
    throw IoError(path + ": is not a regular file (a device, FIFO or socket); pass an image file");
  }
  const uintmax_t bytes = std::filesystem::file_size(path, error);
  return error ? 0 : bytes;
}

/// Up to `limit` bytes from the start of `path` (everything when limit is 0).
std::vector<uint8_t> read_file(const std::string& path, uintmax_t file_bytes, uintmax_t limit) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw IoError(path + ": cannot open the image file: " + std::strerror(errno));
  const uintmax_t wanted = limit != 0 ? std::min(limit, file_bytes) : file_bytes;
  // One read of the size the file system reports (a stream iterator would copy
  // byte by byte, ~5% of a JPEG decode), then whatever is left if it grew since.
  std::vector<uint8_t> bytes(static_cast<size_t>(wanted));
  file.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(static_cast<size_t>(file.gcount()));
  if (limit == 0 && !file.eof()) {
    bytes.insert(bytes.end(), std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  }
  if (file.bad()) throw IoError(path + ": reading the image file failed");
  return bytes;
}

constexpr uintmax_t kMaxEncodedBytes = uintmax_t{1} << 31;  // 2 GiB: far past any real image

}  // namespace

Image decode_file(const std::string& path, const DecodeOptions& options) {
  const uintmax_t file_bytes = regular_file_size(path);
  if (file_bytes > kMaxEncodedBytes) {
    throw UnsupportedFormatError(path + ": the encoded image is larger than 2 GiB (" + std::to_string(file_bytes) +
                                 " bytes), more than this library reads");
  }
  const std::vector<uint8_t> bytes = read_file(path, file_bytes, 0);
  return decode_memory(bytes.data(), bytes.size(), path, options);
}

ImageInfo read_info_file(const std::string& path) {
  const uintmax_t file_bytes = regular_file_size(path);
  constexpr uintmax_t kPrefix = 64 * 1024;
  std::vector<uint8_t> bytes = read_file(path, file_bytes, kPrefix);
  if (bytes.size() < file_bytes) {
    try {
      return read_info(bytes.data(), bytes.size(), path);
    } catch (const CorruptDataError&) {
      // The header may continue past the prefix (a JPEG's frame header after
      // large EXIF or ICC segments): read it all and look again.
    }
    bytes = read_file(path, file_bytes, std::min(file_bytes, kMaxEncodedBytes));
  }
  return read_info(bytes.data(), bytes.size(), path);
}

}  // namespace pe::image
