// Bindings for pe::image (include/pe/image.hpp): decode, format sniffing and
// header reading, PIL-exact bilinear resize and PE-Core preprocessing on numpy
// arrays. The GIL is released while decoding, reading headers and resizing;
// decoded pixels are handed to numpy without a copy.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <limits>
#include <string>
#include <utility>

#include "numpy_arrays.hpp"
#include "pe/image.hpp"

namespace py = pybind11;

namespace pe::python {
namespace {

py::array to_numpy(image::Image&& image) {
  const int height = image.height, width = image.width;
  return array_owning(std::move(image.pixels), {height, width, 3});
}

// A 1-D contiguous byte buffer (bytes, bytearray, memoryview); errors name `argument`.
py::buffer_info byte_buffer(const py::buffer& data) {
  py::buffer_info info = data.request();
  if (info.ndim != 1 || info.itemsize != 1) {
    throw py::type_error("data must be bytes-like (1-D bytes), got a buffer of " + std::to_string(info.ndim) +
                         " dimensions and item size " + std::to_string(info.itemsize));
  }
  // A strided view (memoryview(b)[::-1]) is not `size` bytes from ptr:
  // reading it so went out of bounds.
  if (info.size > 1 && info.strides[0] != 1) {
    throw py::value_error("data must be contiguous bytes, got a view with stride " +
                          std::to_string(info.strides[0]) + "; pass bytes(data)");
  }
  return info;
}

py::tuple to_tuple(const image::ImageInfo& info) { return py::make_tuple(info.format, info.width, info.height); }

image::DecodeOptions decode_options(int64_t max_pixels) {
  if (max_pixels <= 0) throw py::value_error("max_pixels must be > 0, got " + std::to_string(max_pixels));
  image::DecodeOptions options;
  options.max_pixels = max_pixels;
  return options;
}

// Checks an H x W x 3 uint8 C-contiguous pixel array.
py::array_t<uint8_t, py::array::c_style> require_pixels(const py::handle& object) {
  auto pixels = require_array<uint8_t>(object, "pixels", 3);
  const py::ssize_t limit = std::numeric_limits<int>::max();  // the C++ side takes int sizes
  if (pixels.shape(2) != 3 || pixels.shape(0) == 0 || pixels.shape(1) == 0 || pixels.shape(0) > limit ||
      pixels.shape(1) > limit) {
    throw py::value_error("pixels must be H x W x 3 (RGB) with H, W > 0, got shape " +
                          std::string(py::str(py::tuple(pixels.attr("shape")))));
  }
  return pixels;
}

}  // namespace

void bind_image(py::module_& parent) {
  py::module_ module = parent.def_submodule("image", "pe::image bindings");
  module.attr("DEFAULT_MAX_PIXELS") = image::kDefaultMaxPixels;

  module.def(
      "decode_file",
      [](const std::string& path, int64_t max_pixels) {
        const auto options = decode_options(max_pixels);
        image::Image decoded;
        {
          py::gil_scoped_release release;
          decoded = image::decode_file(path, options);
        }
        return to_numpy(std::move(decoded));
      },
      py::arg("path"), py::arg("max_pixels") = image::kDefaultMaxPixels);

  module.def(
      "decode_memory",
      [](const py::buffer& data, const std::string& name, int64_t max_pixels) {
        const auto options = decode_options(max_pixels);
        const py::buffer_info info = byte_buffer(data);
        image::Image decoded;
        {
          py::gil_scoped_release release;
          decoded = image::decode_memory(static_cast<const uint8_t*>(info.ptr), static_cast<size_t>(info.size), name,
                                         options);
        }
        return to_numpy(std::move(decoded));
      },
      py::arg("data"), py::arg("name") = "<memory>", py::arg("max_pixels") = image::kDefaultMaxPixels);

  module.def(
      "sniff_format",
      [](const py::buffer& data) {
        const py::buffer_info info = byte_buffer(data);
        return image::sniff_format(static_cast<const uint8_t*>(info.ptr), static_cast<size_t>(info.size));
      },
      py::arg("data"));
  module.def("is_supported_format", &image::is_supported_format, py::arg("format"));
  module.def(
      "read_info",
      [](const py::buffer& data, const std::string& name) {
        const py::buffer_info info = byte_buffer(data);
        image::ImageInfo header;
        {
          py::gil_scoped_release release;
          header = image::read_info(static_cast<const uint8_t*>(info.ptr), static_cast<size_t>(info.size), name);
        }
        return to_tuple(header);
      },
      py::arg("data"), py::arg("name") = "<memory>");
  module.def(
      "read_info_file",
      [](const std::string& path) {
        image::ImageInfo header;
        {
          py::gil_scoped_release release;
          header = image::read_info_file(path);
        }
        return to_tuple(header);
      },
      py::arg("path"));

  module.def(
      "resize_bilinear",
      [](const py::handle& object, int width, int height) {
        const auto pixels = require_pixels(object);
        if (width <= 0 || height <= 0) {
          throw py::value_error("width and height must be > 0, got " + std::to_string(width) + " x " +
                                std::to_string(height));
        }
        py::array_t<uint8_t> out({height, width, 3});
        uint8_t* target = out.mutable_data();
        {
          py::gil_scoped_release release;
          image::resize_bilinear(pixels.data(), static_cast<int>(pixels.shape(1)), static_cast<int>(pixels.shape(0)),
                                 width, height, target);
        }
        return out;
      },
      py::arg("pixels"), py::arg("width"), py::arg("height"));

  module.def(
      "preprocess",
      [](const py::handle& object, int size, std::array<float, 3> mean, std::array<float, 3> std) {
        const auto pixels = require_pixels(object);
        if (size <= 0) throw py::value_error("size must be > 0, got " + std::to_string(size));
        image::Normalization normalization;
        normalization.mean = mean;
        normalization.std = std;
        py::array_t<float> out({3, size, size});
        float* target = out.mutable_data();
        {
          py::gil_scoped_release release;
          image::preprocess(pixels.data(), static_cast<int>(pixels.shape(1)), static_cast<int>(pixels.shape(0)), size,
                            normalization, target);
        }
        return out;
      },
      py::arg("pixels"), py::arg("size"), py::arg("mean"), py::arg("std"));
}

}  // namespace pe::python
