// perception_retrieval._core: the compiled half of the Python package. Each
// concept binds itself in its own file (bind_<concept>.cpp) and is registered here.

#include <pybind11/pybind11.h>

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
}  // namespace pe::python

PYBIND11_MODULE(_core, module) {
  module.doc() = "perception_retrieval compiled core (use the perception_retrieval package, not this module)";
  module.attr("__version__") = pe::version;
  // The torch this module was built against; perception_retrieval/__init__.py
  // compares it with the torch that is imported.
  module.attr("__torch_version__") = PE_TORCH_VERSION;
  pe::python::bind_metrics(module);
  pe::python::bind_image(module);
  pe::python::bind_retriever(module);
  pe::python::bind_stats(module);
#ifdef PE_WITH_ENCODER
  pe::python::bind_encoder(module);
#endif
}
