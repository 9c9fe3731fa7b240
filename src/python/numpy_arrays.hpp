#pragma once
// Checks for numpy arrays crossing into C++. The Python layer converts what it
// can cheaply; these checks guard the boundary itself, so a wrong array is a
// ValueError/TypeError naming the argument, never a crash or a silent copy.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace pe::python {

namespace py = pybind11;

/// Requires a C-contiguous array of exactly `T` with `ndim` dimensions and
/// returns it as a typed view sharing the caller's memory (no copy).
template <class T>
py::array_t<T, py::array::c_style> require_array(const py::handle& object, const char* argument, int ndim) {
  if (!py::isinstance<py::array>(object)) {
    throw py::type_error(std::string(argument) + " must be a numpy array, got " +
                         std::string(py::str(py::type::of(object).attr("__name__"))));
  }
  auto array = py::reinterpret_borrow<py::array>(object);
  if (!array.dtype().equal(py::dtype::of<T>())) {
    throw py::type_error(std::string(argument) + " must have dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(array.dtype())) + "; convert it with .astype(np." +
                         std::string(py::str(py::dtype::of<T>())) + ")");
  }
  if (array.ndim() != ndim) {
    throw py::value_error(std::string(argument) + " must be " + std::to_string(ndim) + "-D, got " +
                          std::to_string(array.ndim()) + "-D with shape " +
                          std::string(py::str(py::tuple(array.attr("shape")))));
  }
  if (!(array.flags() & py::array::c_style)) {
    throw py::value_error(std::string(argument) +
                          " must be C-contiguous; pass np.ascontiguousarray(" + argument + ")");
  }
  return py::array_t<T, py::array::c_style>::ensure(array);
}

/// Any real-valued array-like (numpy arrays of any real dtype and layout,
/// lists, CPU torch tensors) as a C-contiguous array of `T` with `ndim`
/// dimensions. An array that already is one is used in place (no copy);
/// anything else is converted once, at the boundary. Booleans, complex
/// numbers, strings and objects are refused with a TypeError naming
/// `argument`; ids (an integer T) must be integers, and unsigned values past
/// INT64_MAX are refused.
template <class T>
py::array_t<T, py::array::c_style> convert_array(const py::handle& object, const char* argument, int ndim) {
  const py::dtype wanted = py::dtype::of<T>();
  if (py::isinstance<py::array>(object)) {
    auto array = py::reinterpret_borrow<py::array>(object);
    if (array.dtype().equal(wanted) && (array.flags() & py::array::c_style) && array.ndim() == ndim) {
      return py::array_t<T, py::array::c_style>::ensure(array);
    }
  }
  py::module_ numpy = py::module_::import("numpy");
  py::array array;
  try {
    array = numpy.attr("asarray")(object);
  } catch (py::error_already_set& error) {
    const std::string type = py::str(py::type::of(object).attr("__name__"));
    throw py::type_error(std::string(argument) + " must be an array of numbers, got " + type +
                         (type == "Tensor" ? "; move it to the CPU first: " + std::string(argument) + ".cpu()"
                                           : std::string(" (") + error.what() + ")"));
  }
  const char kind = array.dtype().kind();
  const bool integer_target = std::is_integral<T>::value;
  const bool accepted = integer_target ? (kind == 'i' || kind == 'u') : (kind == 'f' || kind == 'i' || kind == 'u');
  if (!accepted) {
    throw py::type_error(std::string(argument) + " must hold " + (integer_target ? "integers" : "real numbers") +
                         ", got dtype " + std::string(py::str(array.dtype())) +
                         (integer_target && kind == 'f' ? "; convert ids with .astype(np.int64) if they are whole "
                                                          "numbers"
                                                        : ""));
  }
  if (array.ndim() != ndim) {
    if (ndim == 2 && array.ndim() == 1) {
      throw py::value_error(std::string(argument) + " must be 2-D (rows, dim), got 1-D with shape (" +
                            std::to_string(array.shape(0)) + ",); for a single vector pass " + argument +
                            "[None, :]");
    }
    throw py::value_error(std::string(argument) + " must be " + std::to_string(ndim) + "-D, got " +
                          std::to_string(array.ndim()) + "-D with shape " +
                          std::string(py::str(py::tuple(array.attr("shape")))));
  }
  if (integer_target && kind == 'u' && array.dtype().itemsize() == 8 && array.size() > 0) {
    const py::object largest = array.attr("max")();
    if (largest.cast<unsigned long long>() > static_cast<unsigned long long>(INT64_MAX)) {
      throw py::value_error(std::string(argument) + " holds " + std::string(py::str(largest)) +
                            ", past the largest int64; ids must fit int64");
    }
  }
  return py::array_t<T, py::array::c_style>::ensure(numpy.attr("ascontiguousarray")(array, wanted));
}

/// The library's one dtype vocabulary, numpy's names: "float32", "float16",
/// "bfloat16". Takes those strings, the aliases fp32 / fp16 / bf16, numpy
/// dtypes and scalar types (np.float16) and torch dtypes (torch.bfloat16).
inline std::string dtype_name(const py::handle& dtype, const char* argument) {
  std::string text;
  if (py::isinstance<py::str>(dtype)) {
    text = dtype.cast<std::string>();
  } else if (std::string(py::str(py::type::of(dtype).attr("__module__"))) == "torch") {  // torch.float16
    text = py::str(dtype);
    if (text.rfind("torch.", 0) == 0) text = text.substr(6);
  } else {
    try {
      text = py::str(py::module_::import("numpy").attr("dtype")(dtype).attr("name"));
    } catch (py::error_already_set&) {
      throw py::type_error(std::string(argument) + " must be a dtype name such as \"float32\" or a numpy/torch "
                           "dtype, got " + std::string(py::str(py::type::of(dtype).attr("__name__"))));
    }
  }
  if (text == "fp32" || text == "float") return "float32";
  if (text == "fp16" || text == "half") return "float16";
  if (text == "bf16") return "bfloat16";
  return text;
}

/// Moves `owner` (a std::vector, an Eigen matrix: anything with data()) to the
/// heap and returns a numpy array of `shape` over its memory, freed together
/// with the array: results leave C++ without a copy.
template <class Owner>
py::array array_owning(Owner&& owner, std::vector<py::ssize_t> shape) {
  using Held = std::decay_t<Owner>;
  using T = std::remove_cv_t<std::remove_pointer_t<decltype(std::declval<Held&>().data())>>;
  auto held = std::make_unique<Held>(std::forward<Owner>(owner));
  T* data = held->data();
  py::capsule capsule(held.get(), [](void* pointer) { delete static_cast<Held*>(pointer); });
  held.release();  // the capsule owns it now
  return py::array_t<T>(std::move(shape), data, capsule);
}

}  // namespace pe::python
