#pragma once
// pe::metrics::Report — the leaderboard table (Dataset | P@1 | P@5 | R@1 | R@5 |
// mAP@10 | plus an Average row, the macro mean over datasets) as Markdown, CSV
// and JSON. Values print as percent with 2 decimals; every output names the AP
// normaliser and the scored / lone query counts, so a table never travels
// without the definition that produced it. Rows may carry an interval per
// column (a bootstrap interval from pe::stats, say), shown beside each value
// with the method that made it.
//
// Thread safety: a Report is a plain value. Const methods may run concurrently;
// add() needs exclusive access.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "pe/metrics.hpp"
#include "pe/stats.hpp"

namespace pe::metrics {

/// The leaderboard's columns, in its order.
inline std::vector<std::string> leaderboard_columns() { return {"P@1", "P@5", "R@1", "R@5", "mAP@10"}; }

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
  explicit Report(std::vector<std::string> columns = leaderboard_columns()) : columns_(std::move(columns)) {
    if (columns_.empty()) throw std::invalid_argument("Report: columns is empty; name at least one metric");
  }

  /// Adds a dataset's row. Throws std::invalid_argument when the evaluation lacks
  /// one of the columns, the name is empty or already present, or its AP
  /// normaliser differs from the rows already in the report (a table mixing
  /// definitions would compare unlike numbers).
  void add(const std::string& dataset, const Evaluation& evaluation) {
    std::vector<double> fractions;
    fractions.reserve(columns_.size());
    for (const auto& column : columns_) fractions.push_back(evaluation.value(column));
    add_row(dataset, std::move(fractions), evaluation.num_queries, evaluation.lone_queries,
            evaluation.ap_normalizer);
  }

  /// Adds a row from metric values given as fractions (e.g. read back from a
  /// results file). Every column must be present in `fractions`.
  void add(const std::string& dataset, const std::map<std::string, double>& fractions, int64_t num_queries,
           int64_t lone_queries, APNormalizer ap_normalizer) {
    std::vector<double> values;
    values.reserve(columns_.size());
    for (const auto& column : columns_) {
      const auto found = fractions.find(column);
      if (found == fractions.end()) {
        throw std::invalid_argument("Report::add(\"" + dataset + "\"): no value for column " + column);
      }
      values.push_back(found->second);
    }
    add_row(dataset, std::move(values), num_queries, lone_queries, ap_normalizer);
  }

  /// Sets a dataset's intervals, one per column as fractions (NaN bounds = none
  /// for that column). Throws std::invalid_argument for an unknown dataset, a
  /// wrong count, a bound outside [0, 1] or low > high.
  void set_intervals(const std::string& dataset, std::vector<stats::Interval> intervals) {
    check_intervals("Report::set_intervals(\"" + dataset + "\")", intervals);
    for (auto& row : rows_) {
      if (row.dataset == dataset) {
        row.intervals = std::move(intervals);
        return;
      }
    }
    throw std::invalid_argument("Report::set_intervals: no dataset \"" + dataset + "\" in the report; add() it first");
  }

  /// Sets the Average row's intervals (same rules as set_intervals).
  void set_average_intervals(std::vector<stats::Interval> intervals) {
    check_intervals("Report::set_average_intervals", intervals);
    average_intervals_ = std::move(intervals);
  }

  void set_interval_method(const IntervalMethod& method) {
    if (!(method.level > 0.0 && method.level < 1.0) || method.resamples < 0) {
      throw std::invalid_argument("Report::set_interval_method: level must lie in (0, 1) and resamples be >= 0, got "
                                  "level " + std::to_string(method.level) + ", resamples " +
                                  std::to_string(method.resamples));
    }
    method_ = method;
  }

  const IntervalMethod& interval_method() const { return method_; }
  const std::vector<stats::Interval>& average_intervals() const { return average_intervals_; }

  /// True when any row or the Average row carries an interval.
  bool has_intervals() const {
    if (!average_intervals_.empty()) return true;
    for (const auto& row : rows_) {
      if (!row.intervals.empty()) return true;
    }
    return false;
  }

  const std::vector<std::string>& columns() const { return columns_; }
  const std::vector<Row>& rows() const { return rows_; }
  /// The AP normaliser shared by every row (min_r_k while the report is empty).
  APNormalizer ap_normalizer() const { return ap_normalizer_; }

  /// Macro mean per column over the datasets (NaN if any dataset lacks the value
  /// or the report is empty).
  std::vector<double> average() const {
    std::vector<double> means(columns_.size(), rows_.empty() ? std::nan("") : 0.0);
    for (const auto& row : rows_) {
      for (size_t j = 0; j < columns_.size(); ++j) means[j] += row.fractions[j];
    }
    for (double& mean : means) mean /= static_cast<double>(rows_.size());
    return means;
  }

  std::string to_markdown() const {
    std::string out = "| Dataset |";
    for (const auto& column : columns_) out += " " + column + " |";
    out += "\n|---|";
    for (size_t j = 0; j < columns_.size(); ++j) out += "---|";
    out += "\n";
    auto line = [&](const std::string& name, const std::vector<double>& fractions,
                    const std::vector<stats::Interval>& intervals) {
      out += "| " + escape_markdown(name) + " |";
      for (size_t j = 0; j < fractions.size(); ++j) {
        out += " " + percent(fractions[j]);
        if (j < intervals.size() && !std::isnan(intervals[j].low)) {
          out += " [" + percent(intervals[j].low) + ", " + percent(intervals[j].high) + "]";
        }
        out += " |";
      }
      out += "\n";
    };
    for (const auto& row : rows_) line(row.dataset, row.fractions, row.intervals);
    line("Average", average(), average_intervals_);
    out += "\nValues in percent. AP@k divided by " + std::string(formula(ap_normalizer_)) +
           " (ap_normalizer=" + name(ap_normalizer_) + "). Queries scored / lone (R = 0, excluded):";
    for (size_t i = 0; i < rows_.size(); ++i) {
      out += (i == 0 ? " " : "; ") + escape_markdown(rows_[i].dataset) + " " +
             std::to_string(rows_[i].num_queries) + " / " + std::to_string(rows_[i].lone_queries);
    }
    out += rows_.empty() ? " none.\n" : ".\n";
    if (has_intervals()) out += "In brackets: " + interval_description() + ".\n";
    return out;
  }

  /// "95% bootstrap intervals over queries (percentile method, 1000 resamples,
  /// seed 0; ...)": what the brackets of to_markdown() are.
  std::string interval_description() const {
    std::string out = std::to_string(static_cast<int>(std::lround(method_.level * 100))) +
                      "% bootstrap intervals over queries (percentile method";
    if (method_.resamples > 0) {
      out += ", " + std::to_string(method_.resamples) + " resamples, seed " + std::to_string(method_.seed);
    }
    return out + "; the Average row resamples every dataset independently)";
  }

  /// RFC 4180 CSV: dataset, the columns in percent, queries, lone_queries,
  /// ap_normalizer. The Average row leaves the query counts empty. With
  /// intervals, each column C is followed by "C ci95 low" and "C ci95 high"
  /// (the level's percent in the name), and the rows end with
  /// bootstrap_resamples and bootstrap_seed.
  std::string to_csv() const {
    const bool intervals = has_intervals();
    const std::string level = "ci" + std::to_string(static_cast<int>(std::lround(method_.level * 100)));
    std::string out = "dataset";
    for (const auto& column : columns_) {
      out += "," + quote_csv(column);
      if (intervals) out += "," + quote_csv(column + " " + level + " low") + "," + quote_csv(column + " " + level + " high");
    }
    out += ",queries,lone_queries,ap_normalizer";
    out += intervals ? ",bootstrap_resamples,bootstrap_seed\n" : "\n";
    const std::string method = intervals ? "," + std::to_string(method_.resamples) + "," + std::to_string(method_.seed)
                                         : std::string();
    auto values = [&](const std::vector<double>& fractions, const std::vector<stats::Interval>& row_intervals) {
      std::string cells;
      for (size_t j = 0; j < fractions.size(); ++j) {
        cells += "," + percent(fractions[j], "");
        if (intervals) {
          const bool known = j < row_intervals.size();
          cells += "," + percent(known ? row_intervals[j].low : std::nan(""), "") + "," +
                   percent(known ? row_intervals[j].high : std::nan(""), "");
        }
      }
      return cells;
    };
    for (const auto& row : rows_) {
      out += quote_csv(row.dataset) + values(row.fractions, row.intervals);
      out += "," + std::to_string(row.num_queries) + "," + std::to_string(row.lone_queries) + "," +
             name(ap_normalizer_) + method + "\n";
    }
    out += "Average" + values(average(), average_intervals_);
    out += ",,," + std::string(name(ap_normalizer_)) + method + "\n";
    return out;
  }

  /// JSON object: {"unit": "percent", "ap_normalizer", "ap_normalizer_formula",
  /// "columns", "datasets": [{"dataset", <column>: value, "queries",
  /// "lone_queries"}], "average": {<column>: value}}; NaN becomes null. With
  /// intervals, each dataset and the average gain "ci": {<column>: [low, high]}
  /// (percent) and the object gains "intervals": {"level", "resamples", "seed",
  /// "method"}.
  std::string to_json() const {
    std::string out = "{\n  \"unit\": \"percent\",\n  \"ap_normalizer\": \"" + std::string(name(ap_normalizer_)) +
                      "\",\n  \"ap_normalizer_formula\": \"" + formula(ap_normalizer_) + "\",\n  \"columns\": [";
    for (size_t j = 0; j < columns_.size(); ++j) out += (j ? ", " : "") + quote_json(columns_[j]);
    out += "],\n  \"datasets\": [";
    for (size_t i = 0; i < rows_.size(); ++i) {
      const Row& row = rows_[i];
      out += std::string(i ? "," : "") + "\n    {\"dataset\": " + quote_json(row.dataset);
      for (size_t j = 0; j < columns_.size(); ++j) {
        out += ", " + quote_json(columns_[j]) + ": " + percent(row.fractions[j], "null");
      }
      out += ", \"queries\": " + std::to_string(row.num_queries) +
             ", \"lone_queries\": " + std::to_string(row.lone_queries);
      if (!row.intervals.empty()) out += ", \"ci\": " + intervals_json(row.intervals);
      out += "}";
    }
    out += rows_.empty() ? "],\n" : "\n  ],\n";
    out += "  \"average\": {";
    const std::vector<double> means = average();
    for (size_t j = 0; j < columns_.size(); ++j) {
      out += (j ? ", " : "") + quote_json(columns_[j]) + ": " + percent(means[j], "null");
    }
    if (!average_intervals_.empty()) out += ", \"ci\": " + intervals_json(average_intervals_);
    out += "}";
    if (has_intervals()) {
      char level[32];
      std::snprintf(level, sizeof level, "%.10g", method_.level);
      out += ",\n  \"intervals\": {\"level\": " + std::string(level) + ", \"resamples\": " +
             std::to_string(method_.resamples) + ", \"seed\": " + std::to_string(method_.seed) +
             ", \"method\": " + quote_json(interval_description()) + "}";
    }
    out += "\n}\n";
    return out;
  }

 private:
  void add_row(const std::string& dataset, std::vector<double> fractions, int64_t num_queries,
               int64_t lone_queries, APNormalizer normalizer) {
    if (dataset.empty()) throw std::invalid_argument("Report::add: the dataset name is empty");
    for (const auto& row : rows_) {
      if (row.dataset == dataset) {
        throw std::invalid_argument("Report::add: dataset \"" + dataset + "\" is already in the report");
      }
    }
    if (!rows_.empty() && normalizer != ap_normalizer_) {
      throw std::invalid_argument("Report::add(\"" + dataset + "\"): its AP normaliser is " + name(normalizer) +
                                  " but the report's rows use " + name(ap_normalizer_) +
                                  "; evaluate every dataset with the same ap_normalizer");
    }
    for (size_t j = 0; j < fractions.size(); ++j) {
      const double value = fractions[j];
      if (!std::isnan(value) && (value < 0.0 || value > 1.0)) {
        throw std::invalid_argument("Report::add(\"" + dataset + "\"): " + columns_[j] + " = " +
                                    std::to_string(value) + " is not a fraction in [0, 1]");
      }
    }
    ap_normalizer_ = normalizer;
    rows_.push_back(Row{dataset, std::move(fractions), num_queries, lone_queries, {}});
  }

  std::string intervals_json(const std::vector<stats::Interval>& intervals) const {
    std::string out = "{";
    for (size_t j = 0; j < columns_.size() && j < intervals.size(); ++j) {
      out += (j ? ", " : "") + quote_json(columns_[j]) + ": ";
      out += std::isnan(intervals[j].low) ? "null"
                                          : "[" + percent(intervals[j].low) + ", " + percent(intervals[j].high) + "]";
    }
    return out + "}";
  }

  void check_intervals(const std::string& where, const std::vector<stats::Interval>& intervals) const {
    if (intervals.size() != columns_.size()) {
      throw std::invalid_argument(where + ": " + std::to_string(intervals.size()) + " intervals for " +
                                  std::to_string(columns_.size()) + " columns; give one per column (NaN for none)");
    }
    for (size_t j = 0; j < intervals.size(); ++j) {
      const auto& interval = intervals[j];
      if (std::isnan(interval.low) && std::isnan(interval.high)) continue;
      if (!(interval.low >= 0.0 && interval.high <= 1.0 && interval.low <= interval.high)) {
        throw std::invalid_argument(where + ": " + columns_[j] + " interval [" + std::to_string(interval.low) + ", " +
                                    std::to_string(interval.high) + "] is not within [0, 1] with low <= high; give "
                                    "fractions");
      }
    }
  }

  static std::string percent(double fraction, const char* missing = "n/a") {
    if (std::isnan(fraction)) return missing;
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.2f", fraction * 100.0);
    return buffer;
  }

  static std::string escape_markdown(const std::string& text) {
    std::string out;
    for (char c : text) {
      if (c == '|' || c == '\\') out += '\\';
      out += (c == '\n' || c == '\r') ? ' ' : c;
    }
    return out;
  }

  static std::string quote_csv(const std::string& text) {
    if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
    std::string out = "\"";
    for (char c : text) {
      if (c == '"') out += '"';
      out += c;
    }
    return out + "\"";
  }

  static std::string quote_json(const std::string& text) {
    std::string out = "\"";
    for (unsigned char c : text) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          if (c < 0x20) {
            char buffer[8];
            std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
            out += buffer;
          } else {
            out += static_cast<char>(c);
          }
      }
    }
    return out + "\"";
  }

  std::vector<std::string> columns_;
  std::vector<Row> rows_;
  APNormalizer ap_normalizer_ = APNormalizer::min_r_k;
  std::vector<stats::Interval> average_intervals_;
  IntervalMethod method_;
};

}  // namespace pe::metrics
