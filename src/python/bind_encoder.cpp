// Bindings for pe::Encoder (include/pe/encoder.hpp). Inputs may mix file paths,
// encoded bytes and H x W x 3 uint8 arrays; they are collected with the GIL held
// (arrays and bytes are kept alive, not copied), then encoded with the GIL
// released. Between batches the binding checks for Ctrl-C and calls the
// optional Python progress callback. Embeddings come back as a numpy array
// that owns the C++ buffer (no copy).

#ifdef PE_WITH_ENCODER

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "numpy_arrays.hpp"
#include "pe/encoder.hpp"

namespace py = pybind11;

namespace pe::python {
namespace {

// One input, reachable without the GIL. `keep_alive` holds the Python object
// whose memory `bytes` or `pixels` points into.
struct Input {
  std::string path;  // when a path
  EncodedImage bytes;
  PixelImage pixels;
  py::object keep_alive;
  enum class Kind { path, bytes, pixels } kind = Kind::path;
};

// An H x W x 3 uint8 C-contiguous array with 1 <= H, W <= INT_MAX (the C++
// side takes int sizes); errors name `argument`.
py::array_t<uint8_t, py::array::c_style> require_pixels(const py::handle& object, const std::string& argument) {
  auto pixels = require_array<uint8_t>(object, argument.c_str(), 3);
  const py::ssize_t limit = std::numeric_limits<int>::max();
  if (pixels.shape(2) != 3 || pixels.shape(0) < 1 || pixels.shape(1) < 1 || pixels.shape(0) > limit ||
      pixels.shape(1) > limit) {
    throw py::value_error(argument + " must be an H x W x 3 uint8 RGB array with H, W >= 1, got shape " +
                          std::string(py::str(py::tuple(pixels.attr("shape")))));
  }
  return pixels;
}

std::vector<Input> collect_inputs(const py::sequence& inputs) {
  std::vector<Input> collected(inputs.size());
  py::module_ os = py::module_::import("os");
  for (size_t i = 0; i < collected.size(); ++i) {
    py::object item = inputs[i];
    Input& input = collected[i];
    if (py::isinstance<py::str>(item) || py::hasattr(item, "__fspath__")) {
      input.kind = Input::Kind::path;
      input.path = py::str(os.attr("fspath")(item));
    } else if (py::isinstance<py::bytes>(item) || py::isinstance<py::bytearray>(item) ||
               py::isinstance<py::memoryview>(item)) {
      const py::buffer_info info = py::reinterpret_borrow<py::buffer>(item).request();
      // A strided view (memoryview(b)[::-1]) is not size bytes from ptr:
      // reading it so went out of bounds.
      py::ssize_t expected_stride = info.itemsize;
      for (py::ssize_t d = info.ndim - 1; d >= 0; --d) {
        if (info.shape[d] > 1 && info.strides[d] != expected_stride) {
          throw py::value_error("inputs[" + std::to_string(i) + "] is a non-contiguous buffer view; pass bytes(...)");
        }
        expected_stride *= info.shape[d];
      }
      input.kind = Input::Kind::bytes;
      input.bytes = EncodedImage{static_cast<const uint8_t*>(info.ptr), static_cast<size_t>(info.size * info.itemsize),
                                 "inputs[" + std::to_string(i) + "] (bytes)"};
      input.keep_alive = item;
    } else if (py::isinstance<py::array>(item)) {
      const std::string name = "inputs[" + std::to_string(i) + "]";
      auto pixels = require_pixels(item, name);
      input.kind = Input::Kind::pixels;
      input.pixels = PixelImage{pixels.data(), static_cast<int>(pixels.shape(1)), static_cast<int>(pixels.shape(0))};
      input.keep_alive = pixels;
    } else {
      throw py::type_error("inputs[" + std::to_string(i) + "] is a " +
                           std::string(py::str(py::type::of(item).attr("__name__"))) +
                           "; pass a file path, encoded image bytes or an H x W x 3 uint8 array");
    }
  }
  return collected;
}

// A 3 x S x S model input, handed to numpy without a copy.
py::array planar_to_numpy(const Encoder& encoder, std::vector<float>&& planar) {
  const py::ssize_t size = encoder.info().image_size;
  return array_owning(std::move(planar), {py::ssize_t{3}, size, size});
}

py::array to_numpy(Embeddings&& embeddings) {
  const py::ssize_t rows = embeddings.rows(), cols = embeddings.cols();
  return array_owning(std::move(embeddings), {rows, cols});
}

py::object encode(const Encoder& encoder, const py::sequence& inputs, const std::string& on_error,
                  const py::object& progress) {
  if (on_error != "raise" && on_error != "skip") {
    throw py::value_error("on_error must be \"raise\" or \"skip\", got \"" + on_error + "\"");
  }
  if (py::isinstance<py::str>(inputs) || py::isinstance<py::bytes>(inputs)) {
    throw py::type_error("inputs must be a list of images; wrap a single path or bytes in a list");
  }
  const std::vector<Input> collected = collect_inputs(inputs);
  auto load = [&](size_t i, float* out) {
    const Input& input = collected[i];
    switch (input.kind) {
      case Input::Kind::path: return encoder.preprocess_file(input.path, out);
      case Input::Kind::bytes: return encoder.preprocess_encoded(input.bytes, out);
      case Input::Kind::pixels: return encoder.preprocess_pixels(input.pixels, out);
    }
  };
  // Runs between batches: Ctrl-C raises KeyboardInterrupt through the C++ call.
  auto report = [&](size_t done, size_t total) {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (!progress.is_none()) progress(done, total);
  };
  EncodeResult result;
  {
    py::gil_scoped_release release;
    result = encoder.encode_inputs(collected.size(), load, on_error == "skip", report);
  }
  py::array embeddings = to_numpy(std::move(result.embeddings));
  if (on_error == "raise") return std::move(embeddings);
  py::list failures;
  for (const auto& failure : result.failures) failures.append(py::make_tuple(failure.index, failure.reason));
  py::array_t<int64_t> rows(static_cast<py::ssize_t>(result.rows.size()));
  std::copy(result.rows.begin(), result.rows.end(), rows.mutable_data());
  return py::make_tuple(embeddings, rows, failures);
}

}  // namespace

void bind_encoder(py::module_& module) {
  // EncoderOptions' defaults, so the Python layer defines none of its own.
  module.def("encoder_defaults", [] {
    const EncoderOptions defaults;
    py::dict out;
    out["device"] = defaults.device;
    out["dtype"] = defaults.dtype;
    out["batch_size"] = defaults.batch_size;
    out["threads"] = defaults.threads;
    out["decode_threads"] = defaults.decode_threads;
    out["normalize"] = defaults.normalize;
    out["onednn"] = defaults.onednn;
    out["tune_allocator"] = defaults.tune_allocator;
    out["fused_attention"] = defaults.fused_attention;
    out["gemm"] = defaults.gemm;
    out["max_pixels"] = defaults.max_pixels;
    return out;
  });
  py::class_<Encoder>(module, "Encoder", "pe::Encoder (see include/pe/encoder.hpp)")
      .def(py::init([](const std::string& model_path, const std::string& device, const py::handle& dtype,
                       int batch_size, int threads, int decode_threads, bool normalize, int64_t max_pixels,
                       bool onednn, bool tune_allocator, bool fused_attention, const std::string& gemm) {
             EncoderOptions options;
             options.device = device;
             options.dtype = dtype_name(dtype, "dtype");
             options.batch_size = batch_size;
             options.threads = threads;
             options.decode_threads = decode_threads;
             options.normalize = normalize;
             options.max_pixels = max_pixels;
             options.onednn = onednn;
             options.tune_allocator = tune_allocator;
             options.fused_attention = fused_attention;
             options.gemm = gemm;
             py::gil_scoped_release release;
             return std::make_unique<Encoder>(model_path, options);
           }),
           py::arg("model_path"), py::arg("device"), py::arg("dtype"), py::arg("batch_size"), py::arg("threads"),
           py::arg("decode_threads"), py::arg("normalize"), py::arg("max_pixels"), py::arg("onednn") = true,
           py::arg("tune_allocator") = false, py::arg("fused_attention") = true, py::arg("gemm") = "auto")
      .def("encode", &encode, py::arg("inputs"), py::arg("on_error"), py::arg("progress"))
      .def(
          "preprocess",
          [](const Encoder& encoder, const py::handle& object) {
            auto pixels = require_pixels(object, "pixels");
            std::vector<float> planar;
            {
              py::gil_scoped_release release;
              planar = encoder.preprocess(
                  PixelImage{pixels.data(), static_cast<int>(pixels.shape(1)), static_cast<int>(pixels.shape(0))});
            }
            return planar_to_numpy(encoder, std::move(planar));
          },
          py::arg("pixels"))
      .def(
          "preprocess_file",
          [](const Encoder& encoder, const std::string& path) {
            std::vector<float> planar;
            {
              py::gil_scoped_release release;
              planar = encoder.preprocess_file(path);
            }
            return planar_to_numpy(encoder, std::move(planar));
          },
          py::arg("path"))
      .def(
          "preprocess_encoded",
          [](const Encoder& encoder, const py::buffer& data) {
            const std::vector<Input> collected = collect_inputs(py::make_tuple(data));
            std::vector<float> planar;
            {
              py::gil_scoped_release release;
              EncodedImage encoded = collected[0].bytes;
              encoded.name = "<bytes>";
              planar = encoder.preprocess_encoded(encoded);
            }
            return planar_to_numpy(encoder, std::move(planar));
          },
          py::arg("data"))
      .def_property_readonly("metadata_json", [](const Encoder& e) { return e.info().metadata_json; })
      .def_property_readonly("model_format", [](const Encoder& e) { return e.info().model_format; })
      .def_property_readonly("image_size", [](const Encoder& e) { return e.info().image_size; })
      .def_property_readonly("embedding_dim", [](const Encoder& e) { return e.info().embedding_dim; })
      .def_property_readonly("mean", [](const Encoder& e) { return e.info().normalization.mean; })
      .def_property_readonly("std", [](const Encoder& e) { return e.info().normalization.std; })
      .def_property_readonly("device", [](const Encoder& e) { return e.options().device; })
      .def_property_readonly("batch_size", [](const Encoder& e) { return e.options().batch_size; })
      .def_property_readonly("uses_onednn", &Encoder::uses_onednn)
      .def_property_readonly("uses_fused_attention", &Encoder::uses_fused_attention)
      .def_property_readonly("gemm_route", &Encoder::gemm_route)
      .def_property_readonly("forward_description", &Encoder::forward_description)
      .def_property_readonly("dtype", [](const Encoder& encoder) { return encoder.options().dtype; });
}

}  // namespace pe::python

#endif  // PE_WITH_ENCODER
