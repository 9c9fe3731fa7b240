#pragma once
// pe::metrics::Report — the leaderboard table (Dataset | P@1 | P@5 | R@1 | R@5 |
// mAP@10 | plus an Average row, the macro mean over datasets) as Markdown, CSV
// and JSON. Values print as percent with 2 decimals; every output names the AP
// normaliser and the scored / lone query counts, so a table never travels
// without the definition that produced it.
//
// Errors: InvalidArgumentError (pe/error.hpp), naming the dataset and column.
//
// Thread safety: a Report is a plain value. Const methods may run concurrently;
// add() needs exclusive access.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "pe/metrics.hpp"

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

  const std::vector<std::string>& columns() const { return columns_; }
  const std::vector<Row>& rows() const { return rows_; }
  /// The AP normaliser shared by every row (min_r_k while the report is empty).
  APNormalizer ap_normalizer() const { return ap_normalizer_; }

  /// Macro mean per column over the datasets (NaN if any dataset lacks the value
  /// or the report is empty).
  std::vector<double> average() const;

  std::string to_markdown() const;
  /// RFC 4180 CSV: dataset, the columns in percent, queries, lone_queries,
  /// ap_normalizer. The Average row leaves the query counts empty.
  std::string to_csv() const;
  /// JSON object: {"unit": "percent", "ap_normalizer", "ap_normalizer_formula",
  /// "columns", "datasets": [{"dataset", <column>: value, "queries",
  /// "lone_queries"}], "average": {<column>: value}}; NaN becomes null.
  std::string to_json() const;

 private:
  void add_row(const std::string& dataset, std::vector<double> fractions, int64_t num_queries,
               int64_t lone_queries, APNormalizer normalizer);

  std::vector<std::string> columns_;
  std::vector<Row> rows_;
  APNormalizer ap_normalizer_ = APNormalizer::min_r_k;
};

}  // namespace pe::metrics
