#pragma once
// pe::image — image decoding and PE-Core preprocessing, without torch.
//
// What the model saw in training (and what the leaderboard ran) is PIL:
//   Image.open(f).convert("RGB").resize((S, S), BILINEAR)  -> /255 -> (x - mean) / std
// so these functions reproduce PIL bit for bit:
// - decode_*: the pixels of PIL's Image.open(...).convert("RGB"). JPEG goes
//   through libjpeg-turbo, the library PIL itself calls, with PIL's settings;
//   the other formats follow PIL's own conversion rules (palettes looked up,
//   alpha dropped, not composited; 16-bit greyscale clipped to 255, ...). The
//   formats, and where a format is stricter than PIL, are listed in docs/formats.md.
// - resize_bilinear: PIL's ImagingResample with its bilinear filter (a separable
//   convolution whose support widens when shrinking, 22-bit fixed-point
//   weights, horizontal pass first, uint8 rounding after each pass): same
//   input, same bytes as PIL.
// - preprocess: resize, then (v / 255 - mean) / std in float32, planar, the
//   values torchvision's ToTensor + Normalize give.
// The codecs (libjpeg, stb_image, ...) are compiled into the library; this
// header includes none of them.
//
// Errors (pe/error.hpp): FileNotFoundError / IoError for files that cannot be
// read; CorruptDataError for empty, truncated or damaged data and for images
// over DecodeOptions::max_pixels (a decompression-bomb guard); UnsupportedFormatError
// for formats this library does not read; InvalidArgumentError for bad sizes.
// Every message names the input.
//
// Thread safety: every function is reentrant; decode and preprocess
// concurrently from any threads.

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

/// PIL's default Image.MAX_IMAGE_PIXELS: larger images are treated as
/// decompression bombs.
inline constexpr int64_t kDefaultMaxPixels = 89'478'485;

struct DecodeOptions {
  /// Images with more pixels are rejected before any pixel buffer is allocated.
  int64_t max_pixels = kDefaultMaxPixels;
};

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
