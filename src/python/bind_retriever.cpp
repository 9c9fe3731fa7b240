// Bindings for pe::Retriever (include/pe/retriever.hpp), mirroring the C++ API.
// Arrays cross without a copy: float32 / int64, C-contiguous, checked by
// require_array, whose errors say how to convert anything else. Outputs are
// allocated first, then filled with the GIL released; a long search polls for
// Ctrl-C (KeyboardInterrupt) about every 100 ms.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "numpy_arrays.hpp"
#include "pe/retriever.hpp"

namespace py = pybind11;

namespace pe::python {
namespace {

using FloatArray = py::array_t<float, py::array::c_style>;
using IdArray = py::array_t<int64_t, py::array::c_style>;

// Real-valued array-likes are converted to float32 / int64 at the boundary
// (no copy when they already are C-contiguous float32 / int64).
template <class T>
py::array_t<T, py::array::c_style> require(const py::handle& object, const char* argument, int ndim) {
  return convert_array<T>(object, argument, ndim);
}

void check_dim(const FloatArray& array, const char* argument, int64_t dim) {
  if (array.shape(1) != dim) {
    throw py::value_error(std::string(argument) + " has " + std::to_string(array.shape(1)) +
                          " columns but the retriever's dim is " + std::to_string(dim) +
                          "; embed with the same model the gallery was built with");
  }
}

// A str, bytes or os.PathLike path as a str. os.fsdecode, not str(os.fspath(.)):
// str() of a bytes path is "b'...'", which named a different file.
std::string fspath(const py::handle& path, const char* argument) {
  if (!py::isinstance<py::str>(path) && !py::isinstance<py::bytes>(path) && !py::hasattr(path, "__fspath__")) {
    throw py::type_error(std::string(argument) + " must be a file path (str, bytes or os.PathLike), got " +
                         std::string(py::str(py::type::of(path).attr("__name__"))));
  }
  return py::str(py::module_::import("os").attr("fsdecode")(path));
}

py::tuple search(const Retriever& retriever, const py::handle& queries_object, int64_t k, bool exclude_self,
                 const py::handle& exclude_ids_object, const py::handle& allowed_ids_object, int threads,
                 const std::string& simd) {
  const auto queries = require<float>(queries_object, "queries", 2);
  check_dim(queries, "queries", retriever.dim());
  if (k <= 0) {
    throw py::value_error("k must be >= 1, got " + std::to_string(k) +
                          "; ask for at least one result per query (k larger than the gallery is fine)");
  }
  const int64_t num_queries = queries.shape(0);
  SearchOptions options;
  options.exclude_self = exclude_self;
  options.threads = threads;
  options.simd = parse_simd(simd);
  IdArray exclude_ids;
  if (!exclude_ids_object.is_none()) {
    exclude_ids = require<int64_t>(exclude_ids_object, "exclude_ids", 1);
    if (exclude_ids.shape(0) != num_queries) {
      throw py::value_error("exclude_ids has " + std::to_string(exclude_ids.shape(0)) + " entries for " +
                            std::to_string(num_queries) + " queries; pass one id per query");
    }
    options.exclude_ids = exclude_ids.data();
  }
  IdArray allowed_ids;
  if (!allowed_ids_object.is_none()) {
    allowed_ids = require<int64_t>(allowed_ids_object, "allowed_ids", 1);
    options.allowed_ids = allowed_ids.data();
    options.num_allowed_ids = allowed_ids.shape(0);
  }
  options.interrupt = [] {
    py::gil_scoped_acquire acquire;
    return PyErr_CheckSignals() != 0;  // leaves KeyboardInterrupt set
  };
  FloatArray scores({num_queries, k});
  IdArray ids({num_queries, k});
  try {
    py::gil_scoped_release release;
    retriever.search(queries.data(), num_queries, k, scores.mutable_data(), ids.mutable_data(), options);
  } catch (const SearchInterrupted&) {
    throw py::error_already_set();
  }
  return py::make_tuple(std::move(scores), std::move(ids));
}

void add(Retriever& retriever, const py::handle& vectors_object, const py::handle& ids_object,
         const py::handle& metadata_object) {
  const auto vectors = require<float>(vectors_object, "vectors", 2);
  check_dim(vectors, "vectors", retriever.dim());
  const auto ids = require<int64_t>(ids_object, "ids", 1);
  if (ids.shape(0) != vectors.shape(0)) {
    throw py::value_error("ids has " + std::to_string(ids.shape(0)) + " entries for " +
                          std::to_string(vectors.shape(0)) + " vectors; pass one id per row");
  }
  std::vector<std::string> metadata;
  if (!metadata_object.is_none()) {
    try {
      metadata = metadata_object.cast<std::vector<std::string>>();
    } catch (const py::cast_error&) {
      throw py::type_error("metadata must be a list of strings (one per row) or None, got " +
                           std::string(py::str(py::type::of(metadata_object).attr("__name__"))) +
                           (py::isinstance<py::str>(metadata_object) ? "; wrap a single string in a list" : ""));
    }
    if (static_cast<py::ssize_t>(metadata.size()) != vectors.shape(0)) {
      throw py::value_error("metadata has " + std::to_string(metadata.size()) + " entries for " +
                            std::to_string(vectors.shape(0)) + " vectors; pass one string per row or None");
    }
  }
  py::gil_scoped_release release;
  retriever.add(vectors.data(), vectors.shape(0), ids.data(), metadata.empty() ? nullptr : metadata.data());
}

std::string repr(const Retriever& retriever) {
  py::gil_scoped_release release;
  return std::string("Retriever(dim=") + std::to_string(retriever.dim()) + ", metric='" + name(retriever.metric()) +
         "', dtype='" + name(retriever.storage()) + "', size=" + std::to_string(retriever.size()) +
         (retriever.is_mapped() ? ", mmap=True" : "") + ")";
}

// Every call that takes the retriever's lock releases the GIL first. Otherwise
// len(r) waiting behind a queued add() would hold the GIL that a running
// search needs for its Ctrl-C poll, and the three would deadlock.
template <class Result, class... Args>
auto without_gil(Result (Retriever::*method)(Args...) const) {
  return [method](const Retriever& retriever, Args... args) {
    py::gil_scoped_release release;
    return (retriever.*method)(args...);
  };
}

}  // namespace

// The serialised index as bytes (save()'s file format), for to_bytes and pickling.
py::bytes retriever_to_bytes(const Retriever& retriever) {
  std::string bytes;
  {
    py::gil_scoped_release release;
    bytes = retriever.to_bytes();
  }
  return py::bytes(bytes);
}

Retriever retriever_from_bytes(const py::bytes& data) {
  char* buffer = nullptr;
  py::ssize_t size = 0;
  PyBytes_AsStringAndSize(data.ptr(), &buffer, &size);
  py::gil_scoped_release release;
  return Retriever::from_bytes(buffer, static_cast<size_t>(size));
}

void bind_retriever(py::module_& module) {
  py::class_<Retriever> cls(module, "Retriever", R"doc(
Exact top-k search over an embedding gallery (pe::Retriever, include/pe/retriever.hpp).

Retriever(dim, metric="cosine", dtype="float32")
  metric: "cosine" (vectors and queries L2-normalised) or "ip" (raw inner product)
  dtype:  "float32" or "float16" (half the memory and scan time)

Arrays: vectors/queries float32 (n, dim) and ids int64 (n,), C-contiguous; they
are used without a copy. search() returns (scores float32 (Q, k), ids int64 (Q, k)),
best first, ties by insertion order, padded with -inf / -1 when fewer than k
rows qualify. Concurrent searches are safe (the GIL is released); add/remove
wait for running searches.)doc");
  cls.def(py::init([](int64_t dim, const std::string& metric, const py::handle& dtype) {
            return Retriever(dim, parse_metric(metric), parse_storage(dtype_name(dtype, "dtype")));
          }),
          py::arg("dim"), py::arg("metric") = "cosine", py::arg("dtype") = "float32")
      .def("add", &add, py::arg("vectors"), py::arg("ids"), py::arg("metadata") = py::none(),
           "Append rows: vectors float32 (n, dim), ids int64 (n,) unique, metadata: n strings or None.")
      .def(
          "remove",
          [](Retriever& retriever, const py::handle& ids_object) {
            const auto ids = require<int64_t>(ids_object, "ids", 1);
            py::gil_scoped_release release;
            retriever.remove(ids.data(), ids.shape(0));
          },
          py::arg("ids"), "Remove rows by id (int64 (n,)); unknown ids raise ValueError and remove nothing.")
      .def("search", &search, py::arg("queries"), py::arg("k"), py::arg("exclude_self") = false,
           py::arg("exclude_ids") = py::none(), py::arg("allowed_ids") = py::none(), py::arg("threads") = 0,
           py::arg("simd") = "best",
           "Exact top-k. queries float32 (Q, dim). exclude_self: query i skips gallery row i (Q == len). "
           "exclude_ids: int64 (Q,), query i skips that id. allowed_ids: int64, only these ids are returned. "
           "threads: 0 = all cores. Returns (scores float32 (Q, k), ids int64 (Q, k)).")
      .def(
          "reserve",
          [](Retriever& retriever, int64_t rows) {
            py::gil_scoped_release release;
            retriever.reserve(rows);
          },
          py::arg("rows"))
      .def("__len__", without_gil(&Retriever::size))
      .def("__repr__", &repr)
      .def("__contains__", without_gil(&Retriever::contains), py::arg("id"))
      .def_property_readonly("dim", &Retriever::dim)
      .def_property_readonly("metric", [](const Retriever& retriever) { return name(retriever.metric()); })
      .def_property_readonly("dtype", [](const Retriever& retriever) { return name(retriever.storage()); })
      .def_property_readonly("is_mapped", without_gil(&Retriever::is_mapped))
      .def(
          "ids",
          [](const Retriever& retriever) {
            std::vector<int64_t> ids;
            {
              py::gil_scoped_release release;
              ids = retriever.ids();
            }
            IdArray out(static_cast<py::ssize_t>(ids.size()));
            if (!ids.empty()) std::memcpy(out.mutable_data(), ids.data(), sizeof(int64_t) * ids.size());
            return out;
          },
          "The ids in row order (a copy), int64 (N,).")
      .def(
          "vectors",
          [](const Retriever& retriever) {
            Retriever::Matrix copy;
            {
              py::gil_scoped_release release;
              copy = retriever.vectors();
            }
            FloatArray out({copy.rows(), copy.cols()});
            if (copy.size() > 0) std::memcpy(out.mutable_data(), copy.data(), sizeof(float) * copy.size());
            return out;
          },
          "The gallery as float32 (N, dim), a copy (normalised rows under cosine).")
      .def("metadata", without_gil(&Retriever::metadata), py::arg("id"),
           "The metadata string of one id ('' when none).")
      .def(
          "save",
          [](const Retriever& retriever, const py::handle& path_object) {
            const std::string path = fspath(path_object, "path");
            py::gil_scoped_release release;
            retriever.save(path);
          },
          py::arg("path"), "Write the index atomically (versioned binary format with checksum).")
      .def_static(
          "load",
          [](const py::handle& path_object, bool mmap) {
            const std::string path = fspath(path_object, "path");
            py::gil_scoped_release release;
            return Retriever::load(path, mmap);
          },
          py::arg("path"), py::arg("mmap") = false,
          "Read an index written by save(); mmap=True maps the vectors read-only instead of copying them.")
      .def("to_bytes",
           &retriever_to_bytes)
      .def_static(
          "from_bytes",
          &retriever_from_bytes, py::arg("data"))
      .def(
          "export_npy",
          [](const Retriever& retriever, const py::handle& vectors_path, const py::handle& ids_path) {
            const std::string vectors = fspath(vectors_path, "vectors_path");
            const std::string ids = fspath(ids_path, "ids_path");
            py::gil_scoped_release release;
            retriever.export_npy(vectors, ids);
          },
          py::arg("vectors_path"), py::arg("ids_path"),
          "Write float32 (N, dim) vectors and int64 (N,) ids as .npy files (np.load / FAISS read them).")
      .def(
          "add_npy",
          [](Retriever& retriever, const py::handle& vectors_path, const py::handle& ids_path) {
            const std::string vectors = fspath(vectors_path, "vectors_path");
            const std::string ids = fspath(ids_path, "ids_path");
            py::gil_scoped_release release;
            retriever.add_npy(vectors, ids);
          },
          py::arg("vectors_path"), py::arg("ids_path"), "Add rows from float32 (N, dim) and int64/int32 (N,) .npy files.")
      .def_static(
          "from_npy",
          [](const py::handle& vectors_path, const py::handle& ids_path, const std::string& metric,
             const py::handle& dtype) {
            const std::string vectors = fspath(vectors_path, "vectors_path");
            const std::string ids = fspath(ids_path, "ids_path");
            const Metric parsed_metric = parse_metric(metric);
            const Storage parsed_dtype = parse_storage(dtype_name(dtype, "dtype"));
            py::gil_scoped_release release;
            return Retriever::from_npy(vectors, ids, parsed_metric, parsed_dtype);
          },
          py::arg("vectors_path"), py::arg("ids_path"), py::arg("metric") = "cosine", py::arg("dtype") = "float32")
      .def_static(
          "simd", [](const std::string& requested) { return name(Retriever::resolve_simd(parse_simd(requested))); },
          py::arg("requested") = "best", "The instruction set a search with simd=requested uses on this machine.")
      .def(py::pickle(
          &retriever_to_bytes,
          &retriever_from_bytes));
  // Pickles and reprs name the public package, not the compiled submodule.
  cls.attr("__module__") = "perception_retrieval";
  cls.attr("MAX_DIM") = Retriever::kMaxDim;  // the largest dim the constructor and index files take

  // Benchmark helper (benchmarks/bench_retriever.py): read bandwidth in bytes/s
  // over a float32 array or a float32 retriever's gallery, `threads` threads.
  module.def(
      "_retriever_read_bandwidth",
      [](const py::handle& source, int threads, int repeats) {
        const float* data = nullptr;
        int64_t count = 0;
        FloatArray array;
        if (py::isinstance<Retriever>(source)) {
          const auto& retriever = source.cast<const Retriever&>();
          py::gil_scoped_release release;
          const auto gallery = retriever.gallery();
          data = gallery.data();
          count = gallery.size();
        } else {
          array = require_array<float>(source, "source", 2);
          data = array.data();
          count = array.size();
        }
        py::gil_scoped_release release;
        return measure_read_bandwidth(data, count, threads, repeats);
      },
      py::arg("source"), py::arg("threads") = 0, py::arg("repeats") = 5);
}

}  // namespace pe::python
