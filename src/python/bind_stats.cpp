// Bindings for pe::stats (include/pe/stats.hpp): bootstrap and sign-flip
// replicates, percentile intervals, permutation p-values, and the raw random
// stream (so the generator can be checked against independent code).
// float32 / float64 C-contiguous arrays come in without a copy; results leave
// without one (array_owning). The GIL is released while computing.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "numpy_arrays.hpp"
#include "pe/stats.hpp"

namespace py = pybind11;

namespace pe::python {
namespace {

void check_count(int64_t count, const char* argument) {
  if (count < 0) throw py::value_error(std::string(argument) + " must be >= 0, got " + std::to_string(count));
}

void check_threads(int threads) {
  if (threads < 0) throw py::value_error("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
}

// True for float64, false for float32; any other array is a TypeError naming
// both accepted types (require_array alone would name only the one it tried).
bool is_float64(const py::handle& object, const char* argument) {
  if (py::isinstance<py::array>(object)) {
    const auto array = py::reinterpret_borrow<py::array>(object);
    if (array.dtype().equal(py::dtype::of<double>())) return true;
    if (!array.dtype().equal(py::dtype::of<float>())) {
      throw py::type_error(std::string(argument) + " must have dtype float64 or float32, got " +
                           std::string(py::str(array.dtype())) + "; convert it with .astype(np.float64)");
    }
  }
  return false;
}

// Kernel: bootstrap_means or sign_flip_means; both take (values, n, m, count, seed, stream, out, threads).
template <class T, class Kernel>
py::array replicates_typed(const py::handle& object, const char* argument, int64_t count, uint64_t seed,
                           uint64_t stream, int threads, Kernel kernel) {
  const auto values = require_array<T>(object, argument, 2);
  const int64_t rows = values.shape(0);
  const int64_t columns = values.shape(1);
  std::vector<double> out(static_cast<size_t>(count * columns));
  {
    py::gil_scoped_release release;
    kernel(values.data(), rows, columns, count, seed, stream, out.data(), threads);
  }
  return array_owning(std::move(out), {static_cast<py::ssize_t>(count), static_cast<py::ssize_t>(columns)});
}

}  // namespace

void bind_stats(py::module_& parent) {
  py::module_ module = parent.def_submodule("stats", "pe::stats bindings");

  module.def(
      "bootstrap_means",
      [](const py::handle& values, int64_t resamples, uint64_t seed, uint64_t stream, int threads) {
        check_count(resamples, "resamples");
        check_threads(threads);
        if (is_float64(values, "values")) {
          return replicates_typed<double>(values, "values", resamples, seed, stream, threads,
                                          [](const double* data, int64_t rows, int64_t columns, int64_t count, uint64_t seed,
                                             uint64_t stream, double* out, int threads) {
                                            stats::bootstrap_means(data, rows, columns, count, seed, stream, out, threads);
                                          });
        }
        return replicates_typed<float>(values, "values", resamples, seed, stream, threads,
                                       [](const float* data, int64_t rows, int64_t columns, int64_t count, uint64_t seed,
                                             uint64_t stream, double* out, int threads) {
                                            stats::bootstrap_means(data, rows, columns, count, seed, stream, out, threads);
                                          });
      },
      py::arg("values"), py::arg("resamples"), py::arg("seed"), py::arg("stream"), py::arg("threads"),
      "values: Q x M float32/float64 per-query metrics; returns resamples x M float64 replicate means.");

  module.def(
      "sign_flip_means",
      [](const py::handle& differences, int64_t permutations, uint64_t seed, uint64_t stream, int threads) {
        check_count(permutations, "permutations");
        check_threads(threads);
        if (is_float64(differences, "differences")) {
          return replicates_typed<double>(differences, "differences", permutations, seed, stream, threads,
                                          [](const double* data, int64_t rows, int64_t columns, int64_t count, uint64_t seed,
                                             uint64_t stream, double* out, int threads) {
                                            stats::sign_flip_means(data, rows, columns, count, seed, stream, out, threads);
                                          });
        }
        return replicates_typed<float>(differences, "differences", permutations, seed, stream, threads,
                                       [](const float* data, int64_t rows, int64_t columns, int64_t count, uint64_t seed,
                                             uint64_t stream, double* out, int threads) {
                                            stats::sign_flip_means(data, rows, columns, count, seed, stream, out, threads);
                                          });
      },
      py::arg("differences"), py::arg("permutations"), py::arg("seed"), py::arg("stream"), py::arg("threads"),
      "differences: Q x M float32/float64 paired differences; returns permutations x M float64 means.");

  module.def(
      "percentile_intervals",
      [](const py::handle& replicates_object, double level) {
        const auto replicates = require_array<double>(replicates_object, "replicates", 2);
        std::vector<stats::Interval> intervals;
        {
          py::gil_scoped_release release;
          intervals = stats::percentile_intervals(replicates.data(), replicates.shape(0), replicates.shape(1),
                                                  level);
        }
        std::vector<double> flat;
        flat.reserve(intervals.size() * 2);
        for (const auto& interval : intervals) {
          flat.push_back(interval.low);
          flat.push_back(interval.high);
        }
        return array_owning(std::move(flat), {static_cast<py::ssize_t>(intervals.size()), 2});
      },
      py::arg("replicates"), py::arg("level"), "replicates: R x M float64; returns M x 2 (low, high).");

  module.def(
      "permutation_p_values",
      [](const py::handle& permuted_object, const py::handle& observed_object, const py::handle& tolerance_object) {
        const auto permuted = require_array<double>(permuted_object, "permuted", 2);
        const auto observed = require_array<double>(observed_object, "observed", 1);
        if (observed.shape(0) != permuted.shape(1)) {
          throw py::value_error("observed has " + std::to_string(observed.shape(0)) + " entries but permuted has " +
                                std::to_string(permuted.shape(1)) + " columns; give one observed mean per metric");
        }
        py::array_t<double, py::array::c_style> tolerance;
        if (!tolerance_object.is_none()) {
          tolerance = require_array<double>(tolerance_object, "tolerance", 1);
          if (tolerance.shape(0) != permuted.shape(1)) {
            throw py::value_error("tolerance has " + std::to_string(tolerance.shape(0)) + " entries but permuted has " +
                                  std::to_string(permuted.shape(1)) + " columns; give one slack per metric");
          }
        }
        std::vector<double> p;
        {
          py::gil_scoped_release release;
          p = stats::permutation_p_values(permuted.data(), permuted.shape(0), permuted.shape(1), observed.data(),
                                          tolerance_object.is_none() ? nullptr : tolerance.data());
        }
        const auto size = static_cast<py::ssize_t>(p.size());
        return array_owning(std::move(p), {size});
      },
      py::arg("permuted"), py::arg("observed"), py::arg("tolerance"),
      "permuted: P x M float64, observed: M float64, tolerance: M float64 or None; returns M p-values.");

  module.def(
      "random_u64",
      [](uint64_t seed, uint64_t stream, uint64_t substream, int64_t count) {
        check_count(count, "count");
        std::vector<uint64_t> out(static_cast<size_t>(count));
        {
          py::gil_scoped_release release;
          auto generator = stats::stream_generator(seed, stream, substream);
          for (auto& value : out) value = generator.next();
        }
        return array_owning(std::move(out), {static_cast<py::ssize_t>(count)});
      },
      py::arg("seed"), py::arg("stream"), py::arg("substream"), py::arg("count"),
      "The first count raw outputs of the generator (seed, stream, substream).");

  module.def(
      "random_bounded",
      [](uint64_t seed, uint64_t stream, uint64_t substream, uint32_t bound, int64_t count) {
        check_count(count, "count");
        if (bound == 0) throw py::value_error("bound must be in [1, 2^32), got 0");
        std::vector<uint32_t> out(static_cast<size_t>(count));
        {
          py::gil_scoped_release release;
          auto generator = stats::stream_generator(seed, stream, substream);
          for (auto& value : out) value = generator.bounded(bound);
        }
        return array_owning(std::move(out), {static_cast<py::ssize_t>(count)});
      },
      py::arg("seed"), py::arg("stream"), py::arg("substream"), py::arg("bound"), py::arg("count"),
      "The first count integers in [0, bound) of the generator (seed, stream, substream).");
}

}  // namespace pe::python
