#pragma once
// pe::metrics::Report — the leaderboard table (Dataset | P@1 | P@5 | R@1 | R@5 |
// mAP@10 | plus an Average row, the macro mean over datasets) as Markdown, CSV
// and JSON. Values print as percent with 2 decimals; every output names the AP
// normaliser and the scored / lone query counts, so a table never travels
// without the definition that produced it. Rows may carry an interval per
// column (a bootstrap interval from pe::stats, say), shown beside each value
// with the method that made it.
//
// Errors: InvalidArgumentError (pe/error.hpp), naming the dataset and column.
//
// Thread safety: a Report is a plain value. Const methods may run concurrently;
// add() and the setters need exclusive access.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "pe/metrics.hpp"
#include "pe/stats.hpp"

namespace pe::metrics {

/// The leaderboard's columns, in its order: P@1, P@5, R@1, R@5, mAP@10.
std::vector<std::string> leaderboard_columns();

class Report {
 public:
  struct Row {
    std::string dataset;
    std::vector<double> fractions;  ///< one per column, in [0, 1], NaN = not available
    int64_t num_queries = 0;        ///< scored queries
    int64_t lone_queries = 0;       ///< excluded queries (R = 0)
    std::vector<stats::Interval> intervals;  ///< one per column (fractions), or empty: none
  };

  /// How the intervals were made, for the footnote and the CSV / JSON fields.
  struct IntervalMethod {
    double level = 0.95;    ///< coverage, e.g. 0.95
    int64_t resamples = 0;  ///< bootstrap resamples (0 = not stated)
    uint64_t seed = 0;
  };

  /// `columns` are metric names as Evaluation::metric_names() spells them.
  explicit Report(std::vector<std::string> columns = leaderboard_columns());

  /// Adds a dataset's row. Throws InvalidArgumentError when the evaluation lacks
  /// one of the columns, the name is empty or already present, or its AP
  /// normaliser differs from the rows already in the report (a table mixing
  /// definitions would compare unlike numbers).
  void add(const std::string& dataset, const Evaluation& evaluation);

  /// Adds a row from metric values given as fractions (e.g. read back from a
  /// results file). Every column must be present in `fractions`.
  void add(const std::string& dataset, const std::map<std::string, double>& fractions, int64_t num_queries,
           int64_t lone_queries, APNormalizer ap_normalizer);

  /// Sets a dataset's intervals, one per column as fractions (NaN bounds = none
  /// for that column). Throws InvalidArgumentError for an unknown dataset, a
  /// wrong count, a bound outside [0, 1] or low > high.
  void set_intervals(const std::string& dataset, std::vector<stats::Interval> intervals);
  /// Sets the Average row's intervals (same rules as set_intervals).
  void set_average_intervals(std::vector<stats::Interval> intervals);
  void set_interval_method(const IntervalMethod& method);

  const IntervalMethod& interval_method() const { return method_; }
  const std::vector<stats::Interval>& average_intervals() const { return average_intervals_; }
  /// True when any row or the Average row carries an interval.
  bool has_intervals() const;

  const std::vector<std::string>& columns() const { return columns_; }
  const std::vector<Row>& rows() const { return rows_; }
  /// The AP normaliser shared by every row (min_r_k while the report is empty).
  APNormalizer ap_normalizer() const { return ap_normalizer_; }

  /// Macro mean per column over the datasets (NaN if any dataset lacks the value
  /// or the report is empty).
  std::vector<double> average() const;

  std::string to_markdown() const;
  /// "95% bootstrap intervals over queries (percentile method, 1000 resamples,
  /// seed 0; ...)": what the brackets of to_markdown() are.
  std::string interval_description() const;
  /// RFC 4180 CSV: dataset, the columns in percent, queries, lone_queries,
  /// ap_normalizer. The Average row leaves the query counts empty. With
  /// intervals, each column C is followed by "C ci95 low" and "C ci95 high"
  /// (the level's percent in the name), and the rows end with
  /// bootstrap_resamples and bootstrap_seed.
  std::string to_csv() const;
  /// JSON object: {"unit": "percent", "ap_normalizer", "ap_normalizer_formula",
  /// "columns", "datasets": [{"dataset", <column>: value, "queries",
  /// "lone_queries"}], "average": {<column>: value}}; NaN becomes null. With
  /// intervals, each dataset and the average gain "ci": {<column>: [low, high]}
  /// (percent) and the object gains "intervals": {"level", "resamples", "seed",
  /// "method"}.
  std::string to_json() const;

 private:
  void add_row(const std::string& dataset, std::vector<double> fractions, int64_t num_queries,
               int64_t lone_queries, APNormalizer normalizer);
  std::string intervals_json(const std::vector<stats::Interval>& intervals) const;
  void check_intervals(const std::string& where, const std::vector<stats::Interval>& intervals) const;

  std::vector<std::string> columns_;
  std::vector<Row> rows_;
  APNormalizer ap_normalizer_ = APNormalizer::min_r_k;
  std::vector<stats::Interval> average_intervals_;
  IntervalMethod method_;
};

}  // namespace pe::metrics
