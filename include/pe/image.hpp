#pragma once
// pe::image — image decoding (stb_image) and PE-Core preprocessing, without torch.
//
// What the model saw in training (and what the leaderboard ran) is PIL:
//   Image.open(f).convert("RGB").resize((S, S), BILINEAR)  -> /255 -> (x - mean) / std
// so this header reproduces PIL bit for bit where it can:
// - RGB conversion as PIL's convert("RGB"): grey is replicated, alpha is dropped
//   (not composited), palettes are looked up, 16-bit samples keep their high byte,
//   except 16-bit greyscale without alpha (PNG, PGM), which PIL opens as 32-bit
//   "I" and clips to 255 (so a 16-bit grey value of 300 becomes 255, not 1).
// - The squash resize is PIL's ImagingResample with its bilinear filter: a
//   separable convolution whose support widens with the scale factor (so shrinking
//   antialiases), 22-bit fixed-point weights, horizontal pass first, rounding to
//   uint8 after each pass. Same input, same bytes as PIL.
// JPEG decoding differs slightly from PIL's libjpeg-turbo (IDCT and chroma
// upsampling rounding, typically a level or two on some pixels); PNG, BMP, GIF,
// TGA and PNM decode to the same pixels.
//
// Thread safety: every function is reentrant (stb_image keeps its error message
// in thread-local storage); decode and preprocess concurrently from any threads.

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

// stb_image, compiled into each translation unit as static functions so this
// header stays header-only (no link-time symbol clash between users).
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
#ifndef STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO  // we read files ourselves, to name them in errors
#define STBI_FAILURE_USERMSG
#include <stb/stb_image.h>
#undef STB_IMAGE_IMPLEMENTATION
#else
#include <stb/stb_image.h>
#endif
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

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

namespace detail {

inline bool starts_with(const uint8_t* data, size_t size, size_t offset, std::string_view text) {
  return size >= offset + text.size() && std::memcmp(data + offset, text.data(), text.size()) == 0;
}

/// Names formats stb_image cannot read, from their magic bytes ("" if none).
inline std::string unsupported_format(const uint8_t* data, size_t size) {
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
/// marker was cut short; stb_image would return it padded with grey instead of
/// failing. Markers cannot occur inside entropy-coded data (0xFF is stuffed),
/// and an EXIF thumbnail's own markers all come before the main image's scans.
inline bool jpeg_is_truncated(const uint8_t* data, size_t size) {
  if (!(size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)) return false;
  size_t last_sos = 0, last_eoi = 0;
  for (size_t i = 0; i + 1 < size; ++i) {
    if (data[i] != 0xFF) continue;
    if (data[i + 1] == 0xDA) last_sos = i + 1;
    if (data[i + 1] == 0xD9) last_eoi = i + 1;
  }
  return last_sos == 0 || last_eoi < last_sos;
}

inline uint32_t read_big_endian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

/// Width and height from the header of a PNG, GIF, BMP or JPEG, read without
/// stb_image: stb refuses headers over 2^30 bytes of pixels with a generic
/// "corrupt" message, and a bomb deserves to be called one. False if unknown.
inline bool peek_dimensions(const uint8_t* data, size_t size, int64_t* width, int64_t* height) {
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
inline int pnm_max_value(const uint8_t* data, size_t size) {
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

/// PIL's rescaling of a PNM sample to `target_max` (Python's round; no ties occur).
inline int rescale(int sample, int max_value, int target_max) {
  const int clamped = std::min(sample, max_value);
  return static_cast<int>((static_cast<int64_t>(clamped) * target_max * 2 + max_value) / (2 * int64_t{max_value}));
}

[[noreturn]] inline void too_many_pixels(const std::string& name, int64_t width, int64_t height, int64_t limit) {
  throw std::runtime_error(name + ": the image claims " + std::to_string(width) + " x " + std::to_string(height) +
                           " = " + std::to_string(width * height) + " pixels, over the limit of " +
                           std::to_string(limit) +
                           " (a decompression bomb guard, as in PIL); raise max_pixels if the image is genuine");
}

[[noreturn]] inline void fail(const std::string& name, const std::string& problem) {
  throw std::runtime_error(name + ": " + problem);
}

}  // namespace detail

/// Decodes an encoded image held in memory (JPEG baseline and progressive, PNG
/// including 16-bit and palette, BMP, GIF first frame, TGA, PNM, PSD) to RGB as
/// PIL's convert("RGB") would. `name` identifies the input in error messages.
/// Throws std::runtime_error naming `name` for empty, truncated, corrupt or
/// unsupported data (WebP, TIFF, HEIC, AVIF, JPEG XL) and for images over
/// options.max_pixels.
inline Image decode_memory(const uint8_t* data, size_t size, const std::string& name = "<memory>",
                           const DecodeOptions& options = {}) {
  if (data == nullptr || size == 0) detail::fail(name, "the image data is empty (0 bytes)");
  if (size > static_cast<size_t>(std::numeric_limits<int>::max())) {
    detail::fail(name, "the encoded image is larger than 2 GiB, which stb_image cannot read");
  }
  const auto length = static_cast<int>(size);
  // Checked before stb reads anything: a 100,000 x 100,000 header must not
  // allocate 30 GB (stb's own ceiling is 1 GiB, still far past the limit).
  int64_t claimed_width = 0, claimed_height = 0;
  if (detail::peek_dimensions(data, size, &claimed_width, &claimed_height) &&
      claimed_width * claimed_height > options.max_pixels) {
    detail::too_many_pixels(name, claimed_width, claimed_height, options.max_pixels);
  }
  int width = 0, height = 0, channels = 0;
  if (!stbi_info_from_memory(data, length, &width, &height, &channels)) {
    const std::string format = detail::unsupported_format(data, size);
    if (!format.empty()) {
      detail::fail(name, format + " images are not supported (stb_image reads JPEG, PNG, BMP, GIF, TGA, PNM, PSD); "
                                  "convert it first, e.g. to PNG or JPEG");
    }
    detail::fail(name, std::string("not a readable image: ") + stbi_failure_reason());
  }
  const int64_t pixel_count = static_cast<int64_t>(width) * height;
  if (width <= 0 || height <= 0 || pixel_count > options.max_pixels) {
    detail::too_many_pixels(name, width, height, options.max_pixels);  // formats peek_dimensions does not know
  }
  if (detail::jpeg_is_truncated(data, size)) {
    detail::fail(name, "the JPEG data is truncated (no end-of-image marker after the last scan)");
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
    if (samples == nullptr) detail::fail(name, std::string("corrupt image: ") + stbi_failure_reason());
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
  if (samples == nullptr) detail::fail(name, std::string("corrupt image: ") + stbi_failure_reason());
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
inline Image decode_file(const std::string& path, const DecodeOptions& options = {}) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) detail::fail(path, "is a directory, not an image file");
  std::ifstream file(path, std::ios::binary);
  if (!file) detail::fail(path, std::string("cannot open the image file: ") + std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (file.bad()) detail::fail(path, "reading the image file failed");
  return decode_memory(bytes.data(), bytes.size(), path, options);
}

namespace detail {

// PIL (libImaging/Resample.c) keeps 8-bit weights with 32 - 8 - 2 fraction bits.
constexpr int kPrecisionBits = 32 - 8 - 2;

/// One axis of PIL's separable resample: for each output index, the first input
/// index, the number of taps, and their fixed-point weights.
struct ResampleAxis {
  int taps_per_output = 0;
  std::vector<int> first;        ///< first input index per output
  std::vector<int> count;        ///< taps used per output
  std::vector<int32_t> weights;  ///< out_size x taps_per_output
};

/// PIL's precompute_coeffs + normalize_coeffs_8bpc for the bilinear (triangle)
/// filter over the whole input range.
inline ResampleAxis bilinear_axis(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);  // widen the filter when shrinking
  const double support = 1.0 * filter_scale;
  ResampleAxis axis;
  axis.taps_per_output = static_cast<int>(std::ceil(support)) * 2 + 1;
  axis.first.resize(static_cast<size_t>(out_size));
  axis.count.resize(static_cast<size_t>(out_size));
  axis.weights.assign(static_cast<size_t>(out_size) * axis.taps_per_output, 0);
  std::vector<double> weights(static_cast<size_t>(axis.taps_per_output));
  for (int out = 0; out < out_size; ++out) {
    const double center = (out + 0.5) * scale;
    const double inverse_scale = 1.0 / filter_scale;
    // PIL truncates toward zero here (C cast), then clamps.
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    const int hi = std::min(static_cast<int>(center + support + 0.5), in_size);
    const int taps = hi - lo;
    double total = 0.0;
    for (int x = 0; x < taps; ++x) {
      const double distance = std::fabs((x + lo - center + 0.5) * inverse_scale);
      weights[x] = distance < 1.0 ? 1.0 - distance : 0.0;
      total += weights[x];
    }
    for (int x = 0; x < taps; ++x) {
      const double w = total != 0.0 ? weights[x] / total : weights[x];
      axis.weights[static_cast<size_t>(out) * axis.taps_per_output + x] =
          static_cast<int32_t>(w < 0 ? -0.5 + w * (1 << kPrecisionBits) : 0.5 + w * (1 << kPrecisionBits));
    }
    axis.first[out] = lo;
    axis.count[out] = taps;
  }
  return axis;
}

inline uint8_t clip_fixed_point(int32_t value) {
  const int32_t shifted = value >> kPrecisionBits;
  return static_cast<uint8_t>(std::clamp(shifted, 0, 255));
}

}  // namespace detail

/// Resizes an RGB image (H x W x 3 bytes) to out_width x out_height exactly as
/// PIL's Image.resize(..., Image.BILINEAR) does: squash (aspect ratio not
/// kept), antialiased when shrinking, byte-identical output. Writes
/// out_height * out_width * 3 bytes to `out`.
inline void resize_bilinear(const uint8_t* rgb, int width, int height, int out_width, int out_height, uint8_t* out) {
  if (rgb == nullptr || out == nullptr) throw std::invalid_argument("resize_bilinear: null pixel buffer");
  if (width <= 0 || height <= 0 || out_width <= 0 || out_height <= 0) {
    throw std::invalid_argument("resize_bilinear: sizes must be positive, got " + std::to_string(width) + " x " +
                                std::to_string(height) + " -> " + std::to_string(out_width) + " x " +
                                std::to_string(out_height));
  }
  const bool horizontal = out_width != width;
  const bool vertical = out_height != height;
  if (!horizontal && !vertical) {
    std::copy_n(rgb, static_cast<size_t>(width) * height * 3, out);
    return;
  }
  const detail::ResampleAxis columns = detail::bilinear_axis(width, out_width);
  const detail::ResampleAxis rows = detail::bilinear_axis(height, out_height);

  // Horizontal pass first (as PIL), over the input rows the vertical pass reads.
  const int first_row = vertical ? rows.first[0] : 0;
  const int last_row = vertical ? rows.first[out_height - 1] + rows.count[out_height - 1] : height;
  std::vector<uint8_t> temporary;
  const uint8_t* source = rgb + static_cast<size_t>(first_row) * width * 3;
  int source_width = width;
  if (horizontal) {
    const int temp_rows = last_row - first_row;
    temporary.resize(static_cast<size_t>(temp_rows) * out_width * 3);
    uint8_t* target = vertical ? temporary.data() : out;
    for (int y = 0; y < temp_rows; ++y) {
      const uint8_t* in_row = source + static_cast<size_t>(y) * width * 3;
      uint8_t* out_row = target + static_cast<size_t>(y) * out_width * 3;
      for (int x = 0; x < out_width; ++x) {
        const int32_t* k = &columns.weights[static_cast<size_t>(x) * columns.taps_per_output];
        const uint8_t* px = in_row + static_cast<size_t>(columns.first[x]) * 3;
        int32_t r = 1 << (detail::kPrecisionBits - 1), g = r, b = r;
        for (int t = 0; t < columns.count[x]; ++t, px += 3) {
          r += px[0] * k[t];
          g += px[1] * k[t];
          b += px[2] * k[t];
        }
        out_row[x * 3 + 0] = detail::clip_fixed_point(r);
        out_row[x * 3 + 1] = detail::clip_fixed_point(g);
        out_row[x * 3 + 2] = detail::clip_fixed_point(b);
      }
    }
    if (!vertical) return;
    source = temporary.data();
    source_width = out_width;
  }
  // Vertical pass; row indices are relative to first_row.
  const size_t stride = static_cast<size_t>(source_width) * 3;
  for (int y = 0; y < out_height; ++y) {
    const int32_t* k = &rows.weights[static_cast<size_t>(y) * rows.taps_per_output];
    const uint8_t* column_top = source + static_cast<size_t>(rows.first[y] - first_row) * stride;
    uint8_t* out_row = out + static_cast<size_t>(y) * out_width * 3;
    for (size_t i = 0; i < stride; ++i) {
      int32_t sum = 1 << (detail::kPrecisionBits - 1);
      const uint8_t* px = column_top + i;
      for (int t = 0; t < rows.count[y]; ++t, px += stride) sum += *px * k[t];
      out_row[i] = detail::clip_fixed_point(sum);
    }
  }
}

inline Image resize_bilinear(const Image& image, int out_width, int out_height) {
  Image out;
  out.width = out_width;
  out.height = out_height;
  out.pixels.resize(static_cast<size_t>(std::max(out_width, 0)) * std::max(out_height, 0) * 3);
  resize_bilinear(image.pixels.data(), image.width, image.height, out_width, out_height, out.pixels.data());
  return out;
}

/// Mean and standard deviation per RGB channel, on the [0, 1] scale.
struct Normalization {
  std::array<float, 3> mean{0.5f, 0.5f, 0.5f};  ///< PE-Core's
  std::array<float, 3> std{0.5f, 0.5f, 0.5f};
};

/// PE-Core's model input from RGB pixels (H x W x 3 bytes): squash-resize to
/// size x size with PIL's bilinear filter, then (v / 255 - mean) / std per
/// channel in float32, written planar (3 x size x size floats) to `out`, the
/// layout and values torchvision's ToTensor + Normalize produce.
inline void preprocess(const uint8_t* rgb, int width, int height, int size, const Normalization& normalization,
                       float* out) {
  if (size <= 0) throw std::invalid_argument("preprocess: size must be positive, got " + std::to_string(size));
  for (int c = 0; c < 3; ++c) {
    if (!(normalization.std[c] > 0.0f)) {
      throw std::invalid_argument("preprocess: std[" + std::to_string(c) + "] = " +
                                  std::to_string(normalization.std[c]) + " must be > 0");
    }
  }
  std::vector<uint8_t> resized(static_cast<size_t>(size) * size * 3);
  resize_bilinear(rgb, width, height, size, size, resized.data());
  const size_t plane = static_cast<size_t>(size) * size;
  for (size_t i = 0; i < plane; ++i) {
    for (int c = 0; c < 3; ++c) {
      // Same float32 operations, in the same order, as ToTensor then Normalize.
      const float value = static_cast<float>(resized[i * 3 + c]) / 255.0f;
      out[c * plane + i] = (value - normalization.mean[c]) / normalization.std[c];
    }
  }
}

}  // namespace pe::image
