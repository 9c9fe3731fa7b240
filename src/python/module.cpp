// perception_retrieval._core: the compiled half of the Python package. Each
// concept binds itself in its own file (bind_<concept>.cpp) and is registered here.

#include <pybind11/pybind11.h>

#include "pe/cpu.hpp"
#include "pe/error.hpp"
#include "pe/version.hpp"

namespace py = pybind11;

namespace pe::python {
void bind_metrics(py::module_& module);
void bind_image(py::module_& module);
void bind_retriever(py::module_& module);
void bind_stats(py::module_& module);
#ifdef PE_WITH_ENCODER
void bind_encoder(py::module_& module);
#endif

namespace {

// pe::Error -> the perception_retrieval.errors class of the same kind (each is
// also the matching built-in: ValueError, FileNotFoundError, ...). The classes
// are plain Python (errors.py), looked up when an error is first translated, so
// the module imports without them and they carry real docstrings.
const char* python_error_class(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid_argument: return "InvalidArgumentError";
    case ErrorKind::io: return "IoError";
    case ErrorKind::file_not_found: return "FileNotFoundError";
    case ErrorKind::corrupt_data: return "CorruptFileError";
    case ErrorKind::unsupported_format: return "UnsupportedFormatError";
    case ErrorKind::version_mismatch: return "VersionMismatchError";
    case ErrorKind::cancelled: return "CancelledError";
  }
  return "Error";
}

void translate_errors(std::exception_ptr pending) {
  if (!pending) return;
  try {
    std::rethrow_exception(pending);
  } catch (const Error& error) {
    py::gil_scoped_acquire gil;
    try {
      py::object type = py::module_::import("perception_retrieval.errors").attr(python_error_class(error.kind()));
      PyErr_SetString(type.ptr(), error.what());
    } catch (py::error_already_set& lookup) {  // the package is broken: keep the message at least
      PyErr_SetString(PyExc_RuntimeError, error.what());
    }
  }
}

}  // namespace
}  // namespace pe::python

PYBIND11_MODULE(_core, module) {
  module.doc() = "perception_retrieval compiled core (use the perception_retrieval package, not this module)";
  module.attr("__version__") = pe::version;
  // The torch this module was built against; perception_retrieval/__init__.py
  // compares it with the torch that is imported.
  module.attr("__torch_version__") = PE_TORCH_VERSION;
  py::register_exception_translator(pe::python::translate_errors);
  module.def("usable_cpu_count", &pe::usable_cpu_count,
             "CPUs this process may use: its affinity mask, capped by its cgroup CPU quota (containers). "
             "What a thread count of 0 means everywhere in the library.");
  module.def("cpu_features", &pe::cpu_features, "The CPU's SIMD extensions the kernels can use, e.g. 'x86-64 avx2 fma'.");
  pe::python::bind_metrics(module);
  pe::python::bind_image(module);
  pe::python::bind_retriever(module);
  pe::python::bind_stats(module);
#ifdef PE_WITH_ENCODER
  pe::python::bind_encoder(module);
#endif
}
