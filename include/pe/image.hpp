#pragma once
// pe::image — image decoding and PE-Core preprocessing, without torch.
//
// What the model saw in training (and what the leaderboard ran) is PIL:
//   Image.open(f).convert("RGB").resize((S, S), BILINEAR)  -> /255 -> (x - mean) / std
// so these functions reproduce PIL bit for bit:
// - decode_*: the pixels of PIL's Image.open(...).convert("RGB") (PIL 9.4's
//   rules): JPEG through libjpeg-turbo and WebP through libwebp, the libraries
//   PIL itself calls, with PIL's settings; PNG through libpng, TIFF through
//   libtiff, and BMP, GIF, TGA, PNM and PSD through this library's own
//   decoders, each following PIL's own reader for that format (palettes looked
//   up with PIL's grey ramp past the file's colours, alpha dropped, not
//   composited; 16-bit greyscale clipped to 255, ...). docs/formats.md lists
//   per format what is read, how it compares with PIL, and every known
//   difference with its reason.
// - resize_bilinear: PIL's ImagingResample with its bilinear filter (a separable
//   convolution whose support widens when shrinking, 22-bit fixed-point
//   weights, horizontal pass first, uint8 rounding after each pass): same
//   input, same bytes as PIL.
// - preprocess: resize, then (v / 255 - mean) / std in float32, planar, the
//   values torchvision's ToTensor + Normalize give.
// The codecs (libjpeg, libpng, libwebp, libtiff) are compiled into the
// library; this header includes none of them.
//
// Errors (pe/error.hpp): FileNotFoundError / IoError for files that cannot be
// read; CorruptDataError for empty, truncated or damaged data and for images
// over twice DecodeOptions::max_pixels (a decompression-bomb guard, PIL's
// rule); UnsupportedFormatError for formats, or variants of a format, this
// library does not read (the message names them); InvalidArgumentError for
// bad sizes. Every message starts with the input's name.
//
// Thread safety: every function is reentrant; decode, sniff, read headers and
// preprocess concurrently from any threads.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pe::image {

/// An 8-bit RGB image, rows top to bottom, pixels interleaved (H x W x 3).
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;  ///< width * height * 3 bytes
};

/// PIL's Image.MAX_IMAGE_PIXELS (1024 * 1024 * 1024 // 4 // 3): above it PIL
/// warns that an image may be a decompression bomb, above twice it PIL refuses it.
inline constexpr int64_t kDefaultMaxPixels = 89'478'485;

struct DecodeOptions {
  /// PIL's MAX_IMAGE_PIXELS rule, applied to the size the header declares,
  /// before any pixel buffer is allocated: an image of more than max_pixels
  /// pixels is decoded and a warning is logged (PIL's DecompressionBombWarning;
  /// the library's logger, see PE_LOG_LEVEL); one of more than 2 * max_pixels
  /// is refused with CorruptDataError (PIL's DecompressionBombError). So the
  /// default decodes a 100-megapixel photo, as PIL does, and refuses above
  /// 178,956,970 pixels. To refuse above N pixels, set max_pixels = N / 2; to
  /// decode larger images, raise it (the warning threshold rises with it, as in
  /// PIL); to silence the warning alone, set PE_LOG_LEVEL=error. Must be >= 1.
  int64_t max_pixels = kDefaultMaxPixels;
};

/// What an encoded image's header says, without decoding its pixels.
struct ImageInfo {
  std::string format;  ///< as sniff_format names it, e.g. "JPEG", "PNG", "WebP"
  int64_t width = 0;   ///< PIL's Image.size[0] (for a GIF, the screen grown to its first frame)
  int64_t height = 0;
};

/// The format an encoded image's first bytes name, with the tests decode
/// uses to choose its decoder (and PIL's plugins use to claim a file): "JPEG",
/// "PNG", "GIF", "BMP", "DIB", "PNM", "PSD", "WebP", "TIFF" or "TGA" (recognised by
/// its header fields alone, TGA having no magic bytes) for the formats decode
/// reads; for well-known formats it does not read, their name ("HEIC/HEIF",
/// "AVIF", "JPEG XL", "JPEG 2000", "Radiance HDR", "ICO", ...); "" when
/// nothing matches. Looks at the first 32 bytes at most; never throws. The
/// name says nothing of whether the rest of the file is intact.
std::string sniff_format(const uint8_t* data, size_t size);

/// Whether decode reads `format` (a name sniff_format returns).
bool is_supported_format(const std::string& format);

/// The format and PIL's image size from the header, with the checks PIL makes
/// when it opens a file (a JPEG's sample precision and channel count, a BMP's
/// header type and compression, ...), without decoding pixels or applying the
/// pixel limit. Throws UnsupportedFormatError for formats and variants decode
/// does not read, CorruptDataError when the header is damaged or cut short
/// (damage further in shows only when decoding). `name` is used in messages.
ImageInfo read_info(const uint8_t* data, size_t size, const std::string& name = "<memory>");

/// read_info for a file: reads its first 64 KiB, and the whole file only when
/// the header goes on past them (a JPEG's frame header after large metadata, a
/// TIFF directory written after the image data). Errors as decode_file.
ImageInfo read_info_file(const std::string& path);

/// Decodes an encoded image held in memory to RGB as PIL's convert("RGB")
/// would. `name` identifies the input in error messages.
Image decode_memory(const uint8_t* data, size_t size, const std::string& name = "<memory>",
                    const DecodeOptions& options = {});

/// Reads and decodes an image file; errors name the path. Only regular files
/// are read (a FIFO or device would block or never end).
Image decode_file(const std::string& path, const DecodeOptions& options = {});

/// Resizes an RGB image (H x W x 3 bytes) to out_width x out_height exactly as
/// PIL's Image.resize(..., Image.BILINEAR) does: squash (aspect ratio not
/// kept), antialiased when shrinking, byte-identical output. Writes
/// out_height * out_width * 3 bytes to `out`.
void resize_bilinear(const uint8_t* rgb, int width, int height, int out_width, int out_height, uint8_t* out);

Image resize_bilinear(const Image& image, int out_width, int out_height);

/// Mean and standard deviation per RGB channel, on the [0, 1] scale.
struct Normalization {
  std::array<float, 3> mean{0.5f, 0.5f, 0.5f};  ///< PE-Core's
  std::array<float, 3> std{0.5f, 0.5f, 0.5f};
};

/// PE-Core's model input from RGB pixels (H x W x 3 bytes): squash-resize to
/// size x size with PIL's bilinear filter, then (v / 255 - mean) / std per
/// channel in float32, written planar (3 x size x size floats) to `out`, the
/// layout and values torchvision's ToTensor + Normalize produce.
void preprocess(const uint8_t* rgb, int width, int height, int size, const Normalization& normalization, float* out);

}  // namespace pe::image
