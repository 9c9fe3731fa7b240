#pragma once
// Internal to src/image (not installed): what the codecs share. One file per
// format decodes it (jpeg.cpp, png.cpp, bmp.cpp, gif.cpp, tga.cpp, pnm.cpp,
// psd.cpp, webp.cpp, tiff.cpp); format.cpp names formats from their first bytes
// and reads headers; decode.cpp dispatches.
//
// Every decoder reproduces what PIL 9.4 gives for Image.open(f).convert("RGB"):
// the same file layout rules (which fields PIL reads, which it ignores), the
// same conversions (PIL's unpackers and converters, named where they are
// copied in spirit), and the same verdict on damaged data. Where we refuse
// something PIL decodes, or the reverse, the decoder says why and
// docs/formats.md lists it.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "pe/error.hpp"
#include "pe/image.hpp"

namespace pe::image::detail {

/// An encoded image being read: its bytes, its name for messages, the pixel limit.
struct Source {
  const uint8_t* data = nullptr;
  size_t size = 0;
  const std::string* name = nullptr;
  int64_t max_pixels = kDefaultMaxPixels;

  const std::string& label() const { return *name; }
};

enum class Format {
  unknown,
  // read
  jpeg, png, gif, bmp, dib, pnm, psd, webp, tiff, tga,
  // recognised, refused (PIL reads these, this library does not)
  jpeg2000, ico, cur, icns, dds, eps, fits, blp, sgi, sun, xbm, xpm, msp, pixar, fli, ole, pcx,
  // recognised, refused (PIL does not read these either)
  heif, avif, jpegxl, radiance_hdr, softimage_pic, pdf, svg, qoi, psb,
};

/// The format named by the first bytes of `data` (see sniff_format in pe/image.hpp).
Format sniff(const uint8_t* data, size_t size);
const char* format_name(Format format);
bool is_read(Format format);

// ---- errors ----------------------------------------------------------------

[[noreturn]] void corrupt(const Source& in, const std::string& problem);
[[noreturn]] void unsupported(const Source& in, const std::string& problem);
/// The data ends before the image does: `what` says where ("in the pixel data").
[[noreturn]] void truncated(const Source& in, const char* format, const std::string& what);

/// PIL's decompression-bomb rule for a width x height image, before anything
/// image-sized is allocated: refused (CorruptDataError) above 2 * max_pixels,
/// logged as a warning above max_pixels. Sizes <= 0 are corrupt, sizes past
/// int are refused (Image holds int sides).
void check_size(const Source& in, const char* format, int64_t width, int64_t height);

/// A zeroed width x height RGB image (after check_size).
Image new_image(const Source& in, int64_t width, int64_t height);

// ---- bytes -------------------------------------------------------------------

inline uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t le32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}
inline uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

inline bool starts_with(const uint8_t* data, size_t size, size_t offset, const char* text, size_t length) {
  return size >= offset + length && std::memcmp(data + offset, text, length) == 0;
}

// ---- PIL's palette and conversions ---------------------------------------------

/// A palette image's 256 colours as Pillow 13 converts them to RGB: the
/// entries a file defines, then black, so an index past the colours a file
/// defines (or any index of a palette image with no colours) reads as black.
/// (Pillow 9.4 read its grey ramp (i, i, i) there; docs/formats.md.)
struct Palette {
  std::array<uint8_t, 256 * 3> rgb{};
  const uint8_t* operator[](int index) const { return &rgb[static_cast<size_t>(index) * 3]; }
};

/// PIL's MULDIV255 with its rounding: a * b / 255.
inline int muldiv255(int a, int b) {
  const int product = a * b + 128;
  return ((product >> 8) + product) >> 8;
}

/// PIL's cmyk2rgb (Convert.c): r = (255 - k) - c * (255 - k) / 255, clipped.
inline void cmyk_to_rgb(int c, int m, int y, int k, uint8_t* rgb) {
  const int not_k = 255 - k;
  const int ink[3] = {c, m, y};
  for (int i = 0; i < 3; ++i) {
    const int v = not_k - muldiv255(ink[i], not_k);
    rgb[i] = static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
  }
}

// ---- codecs --------------------------------------------------------------------
// info_*: PIL's Image.size and the checks PIL's open makes, from the header
// alone; they throw what decode would for a header that is damaged or names a
// variant that is not read. decode_*: the RGB pixels.

ImageInfo info_jpeg(const Source& in);
Image decode_jpeg(const Source& in);
ImageInfo info_png(const Source& in);
Image decode_png(const Source& in);
ImageInfo info_gif(const Source& in);
Image decode_gif(const Source& in);
ImageInfo info_bmp(const Source& in);
Image decode_bmp(const Source& in);
ImageInfo info_dib(const Source& in);  // a BMP without its file header (PIL's DIB plugin)
Image decode_dib(const Source& in);
ImageInfo info_tga(const Source& in);
Image decode_tga(const Source& in);
ImageInfo info_pnm(const Source& in);
Image decode_pnm(const Source& in);
ImageInfo info_psd(const Source& in);
Image decode_psd(const Source& in);
ImageInfo info_webp(const Source& in);
Image decode_webp(const Source& in);
ImageInfo info_tiff(const Source& in);
Image decode_tiff(const Source& in);

/// The TGA header test of PIL's TgaImagePlugin (TGA has no magic bytes).
bool looks_like_tga(const uint8_t* data, size_t size);

}  // namespace pe::image::detail
