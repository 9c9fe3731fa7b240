// Bindings for pe::metrics (include/pe/metrics.hpp) and pe::metrics::Report.
// Arrays come in without a copy (int64 / float32 / float64, C-contiguous; the
// Python layer in perception_retrieval/metrics.py converts ids and rankings of
// other integer types). The GIL is released while scoring.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <utility>
#include <vector>

#include "numpy_arrays.hpp"
#include "pe/metrics.hpp"
#include "pe/report.hpp"

namespace py = pybind11;

namespace pe::python {
namespace {

using metrics::Evaluation;

metrics::Options make_options(std::vector<int> ks, std::vector<int> map_ks, const std::string& ap_normalizer,
                              bool exclude_self, int threads) {
  metrics::Options options;
  options.ks = std::move(ks);
  options.map_ks = std::move(map_ks);
  options.ap_normalizer = metrics::parse_ap_normalizer(ap_normalizer);
  options.exclude_self = exclude_self;
  if (threads < 0) throw py::value_error("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
  options.threads = threads;
  return options;
}

void check_ids(const py::array_t<int64_t, py::array::c_style>& ids, const char* argument, py::ssize_t expected,
               const char* expected_what) {
  if (ids.shape(0) != expected) {
    throw py::value_error(std::string(argument) + " has " + std::to_string(ids.shape(0)) + " entries but " +
                          expected_what + " " + std::to_string(expected));
  }
}

// A read-only numpy view of a per-query vector, keeping the Evaluation alive.
template <class T>
py::array per_query_view(const py::object& owner, const std::vector<T>& values, py::ssize_t rows,
                         py::ssize_t columns) {
  py::array_t<T> view({rows, columns}, {static_cast<py::ssize_t>(columns * sizeof(T)), static_cast<py::ssize_t>(sizeof(T))},
                      values.data(), owner);
  py::detail::array_proxy(view.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return std::move(view);
}

// self_indices: None, or one int64 gallery index (or -1) per query. The
// returned array keeps the buffer alive while options points into it.
py::array_t<int64_t, py::array::c_style> optional_self_indices(const py::handle& object, py::ssize_t num_queries,
                                                               metrics::Options& options) {
  if (object.is_none()) return {};
  auto indices = require_array<int64_t>(object, "self_indices", 1);
  check_ids(indices, "self_indices", num_queries, "there are queries:");
  options.self_indices = indices.data();
  return indices;
}

template <class Score>
Evaluation evaluate_scores_typed(const py::handle& scores_object, const py::handle& query_ids_object,
                                 const py::handle& gallery_ids_object, const py::handle& self_indices_object,
                                 metrics::Options options) {
  const auto scores = require_array<Score>(scores_object, "scores", 2);
  const auto query_ids = require_array<int64_t>(query_ids_object, "query_ids", 1);
  const auto gallery_ids = require_array<int64_t>(gallery_ids_object, "gallery_ids", 1);
  check_ids(query_ids, "query_ids", scores.shape(0), "scores has rows:");
  check_ids(gallery_ids, "gallery_ids", scores.shape(1), "scores has columns:");
  const auto self_indices = optional_self_indices(self_indices_object, scores.shape(0), options);
  py::gil_scoped_release release;
  return metrics::evaluate_scores(scores.data(), scores.shape(0), scores.shape(1), query_ids.data(),
                                  gallery_ids.data(), options);
}

std::vector<stats::Interval> to_intervals(const std::vector<std::pair<double, double>>& bounds) {
  std::vector<stats::Interval> intervals;
  intervals.reserve(bounds.size());
  for (const auto& [low, high] : bounds) intervals.push_back(stats::Interval{low, high});
  return intervals;
}

}  // namespace

void bind_metrics(py::module_& parent) {
  py::module_ module = parent.def_submodule("metrics", "pe::metrics bindings");

  py::class_<Evaluation>(module, "Evaluation", "Scores of one evaluation (see include/pe/metrics.hpp)")
      .def_readonly("ks", &Evaluation::ks)
      .def_readonly("map_ks", &Evaluation::map_ks)
      .def_property_readonly("ap_normalizer", [](const Evaluation& e) { return metrics::name(e.ap_normalizer); })
      .def_readonly("exclude_self", &Evaluation::exclude_self)
      .def_readonly("total_queries", &Evaluation::total_queries)
      .def_readonly("num_queries", &Evaluation::num_queries)
      .def_readonly("lone_queries", &Evaluation::lone_queries)
      .def("metric_names", &Evaluation::metric_names)
      .def("value", &Evaluation::value, py::arg("metric"))
      .def_property_readonly("per_query_precision",
                             [](const py::object& self) {
                               const auto& e = self.cast<const Evaluation&>();
                               return per_query_view(self, e.per_query_precision, e.total_queries, e.ks.size());
                             })
      .def_property_readonly("per_query_recall",
                             [](const py::object& self) {
                               const auto& e = self.cast<const Evaluation&>();
                               return per_query_view(self, e.per_query_recall, e.total_queries, e.ks.size());
                             })
      .def_property_readonly("per_query_hit_rate",
                             [](const py::object& self) {
                               const auto& e = self.cast<const Evaluation&>();
                               return per_query_view(self, e.per_query_hit_rate, e.total_queries, e.ks.size());
                             })
      .def_property_readonly("per_query_average_precision",
                             [](const py::object& self) {
                               const auto& e = self.cast<const Evaluation&>();
                               return per_query_view(self, e.per_query_average_precision, e.total_queries,
                                                     e.map_ks.size());
                             })
      .def_property_readonly("num_relevant", [](const py::object& self) {
        const auto& e = self.cast<const Evaluation&>();
        return per_query_view(self, e.num_relevant, e.total_queries, 1).attr("reshape")(-1);
      });

  module.def(
      "evaluate",
      [](const py::handle& ranking_object, const py::handle& query_ids_object, const py::handle& gallery_ids_object,
         std::vector<int> ks, std::vector<int> map_ks, const std::string& ap_normalizer, bool exclude_self,
         const py::handle& self_indices_object, int threads) {
        auto options = make_options(std::move(ks), std::move(map_ks), ap_normalizer, exclude_self, threads);
        const auto ranking = require_array<int64_t>(ranking_object, "ranking", 2);
        const auto query_ids = require_array<int64_t>(query_ids_object, "query_ids", 1);
        const auto gallery_ids = require_array<int64_t>(gallery_ids_object, "gallery_ids", 1);
        check_ids(query_ids, "query_ids", ranking.shape(0), "ranking has rows:");
        const auto self_indices = optional_self_indices(self_indices_object, ranking.shape(0), options);
        py::gil_scoped_release release;
        return metrics::evaluate(ranking.data(), ranking.shape(0), ranking.shape(1), gallery_ids.shape(0),
                                 query_ids.data(), gallery_ids.data(), options);
      },
      py::arg("ranking"), py::arg("query_ids"), py::arg("gallery_ids"), py::arg("ks"), py::arg("map_ks"),
      py::arg("ap_normalizer"), py::arg("exclude_self"), py::arg("self_indices"), py::arg("threads"),
      "ranking: Q x K int64 gallery indices (best first, -1 pads); ids: int64.");

  module.def(
      "evaluate_scores",
      [](const py::handle& scores, const py::handle& query_ids, const py::handle& gallery_ids, std::vector<int> ks,
         std::vector<int> map_ks, const std::string& ap_normalizer, bool exclude_self,
         const py::handle& self_indices, int threads) {
        const auto options = make_options(std::move(ks), std::move(map_ks), ap_normalizer, exclude_self, threads);
        const bool is_double = py::isinstance<py::array>(scores) &&
                               py::reinterpret_borrow<py::array>(scores).dtype().equal(py::dtype::of<double>());
        if (is_double) {
          return evaluate_scores_typed<double>(scores, query_ids, gallery_ids, self_indices, options);
        }
        return evaluate_scores_typed<float>(scores, query_ids, gallery_ids, self_indices, options);
      },
      py::arg("scores"), py::arg("query_ids"), py::arg("gallery_ids"), py::arg("ks"), py::arg("map_ks"),
      py::arg("ap_normalizer"), py::arg("exclude_self"), py::arg("self_indices"), py::arg("threads"),
      "scores: Q x N float32 or float64, higher = more similar; ids: int64.");

  py::class_<metrics::Report>(module, "Report", "The leaderboard table (see include/pe/report.hpp)")
      .def(py::init<std::vector<std::string>>(), py::arg("columns") = metrics::leaderboard_columns())
      .def("add", py::overload_cast<const std::string&, const Evaluation&>(&metrics::Report::add), py::arg("dataset"),
           py::arg("evaluation"))
      .def(
          "add_fractions",
          [](metrics::Report& report, const std::string& dataset, const std::map<std::string, double>& fractions,
             int64_t num_queries, int64_t lone_queries, const std::string& ap_normalizer) {
            report.add(dataset, fractions, num_queries, lone_queries, metrics::parse_ap_normalizer(ap_normalizer));
          },
          py::arg("dataset"), py::arg("fractions"), py::arg("num_queries"), py::arg("lone_queries"),
          py::arg("ap_normalizer"))
      .def(
          "set_intervals",
          [](metrics::Report& report, const std::string& dataset, const std::vector<std::pair<double, double>>& bounds) {
            report.set_intervals(dataset, to_intervals(bounds));
          },
          py::arg("dataset"), py::arg("intervals"), "one (low, high) fraction pair per column; NaN = none")
      .def(
          "set_average_intervals",
          [](metrics::Report& report, const std::vector<std::pair<double, double>>& bounds) {
            report.set_average_intervals(to_intervals(bounds));
          },
          py::arg("intervals"))
      .def(
          "set_interval_method",
          [](metrics::Report& report, double level, int64_t resamples, uint64_t seed) {
            report.set_interval_method(metrics::Report::IntervalMethod{level, resamples, seed});
          },
          py::arg("level"), py::arg("resamples"), py::arg("seed"))
      .def("has_intervals", &metrics::Report::has_intervals)
      .def("interval_description", &metrics::Report::interval_description)
      .def_property_readonly("columns", &metrics::Report::columns)
      .def_property_readonly("datasets",
                             [](const metrics::Report& report) {
                               std::vector<std::string> names;
                               for (const auto& row : report.rows()) names.push_back(row.dataset);
                               return names;
                             })
      .def_property_readonly("ap_normalizer",
                             [](const metrics::Report& report) { return metrics::name(report.ap_normalizer()); })
      .def("average", &metrics::Report::average)
      .def("to_markdown", &metrics::Report::to_markdown)
      .def("to_csv", &metrics::Report::to_csv)
      .def("to_json", &metrics::Report::to_json)
      .def("__len__", [](const metrics::Report& report) { return report.rows().size(); });
}

}  // namespace pe::python
