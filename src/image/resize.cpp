// PIL's bilinear resample and PE-Core's normalisation (see include/pe/image.hpp).

#include "pe/image.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "pe/error.hpp"

namespace pe::image {

namespace detail {
namespace {

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
ResampleAxis bilinear_axis(int in_size, int out_size) {
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

uint8_t clip_fixed_point(int32_t value) {
  const int32_t shifted = value >> kPrecisionBits;
  return static_cast<uint8_t>(std::clamp(shifted, 0, 255));
}

}  // namespace
}  // namespace detail

/// Resizes an RGB image (H x W x 3 bytes) to out_width x out_height exactly as
/// PIL's Image.resize(..., Image.BILINEAR) does: squash (aspect ratio not
/// kept), antialiased when shrinking, byte-identical output. Writes
/// out_height * out_width * 3 bytes to `out`.
void resize_bilinear(const uint8_t* rgb, int width, int height, int out_width, int out_height, uint8_t* out) {
  if (rgb == nullptr || out == nullptr) throw pe::InvalidArgumentError("resize_bilinear: null pixel buffer");
  if (width <= 0 || height <= 0 || out_width <= 0 || out_height <= 0) {
    throw pe::InvalidArgumentError("resize_bilinear: sizes must be positive, got " + std::to_string(width) + " x " +
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

Image resize_bilinear(const Image& image, int out_width, int out_height) {
  Image out;
  out.width = out_width;
  out.height = out_height;
  out.pixels.resize(static_cast<size_t>(std::max(out_width, 0)) * std::max(out_height, 0) * 3);
  resize_bilinear(image.pixels.data(), image.width, image.height, out_width, out_height, out.pixels.data());
  return out;
}


/// PE-Core's model input from RGB pixels (H x W x 3 bytes): squash-resize to
/// size x size with PIL's bilinear filter, then (v / 255 - mean) / std per
/// channel in float32, written planar (3 x size x size floats) to `out`, the
/// layout and values torchvision's ToTensor + Normalize produce.
void preprocess(const uint8_t* rgb, int width, int height, int size, const Normalization& normalization,
                       float* out) {
  if (size <= 0) throw pe::InvalidArgumentError("preprocess: size must be positive, got " + std::to_string(size));
  for (int c = 0; c < 3; ++c) {
    if (!(normalization.std[c] > 0.0f) || !std::isfinite(normalization.std[c])) {
      throw pe::InvalidArgumentError("preprocess: std[" + std::to_string(c) + "] = " +
                                  std::to_string(normalization.std[c]) + " must be > 0 and finite");
    }
    if (!std::isfinite(normalization.mean[c])) {  // would make every input value NaN or inf
      throw pe::InvalidArgumentError("preprocess: mean[" + std::to_string(c) + "] = " +
                                  std::to_string(normalization.mean[c]) + " must be finite");
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

