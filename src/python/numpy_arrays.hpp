#pragma once
// Checks for numpy arrays crossing into C++. The Python layer converts what it
// can cheaply; these checks guard the boundary itself, so a wrong array is a
// ValueError/TypeError naming the argument, never a crash or a silent copy.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

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
  if (!array.dtype().is(py::dtype::of<T>())) {
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
