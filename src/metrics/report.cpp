// pe::metrics::Report's table formats (see include/pe/report.hpp).

#include "pe/report.hpp"

#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace pe::metrics {

namespace {

std::string percent(double fraction, const char* missing = "n/a") {
  if (std::isnan(fraction)) return missing;
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f", fraction * 100.0);
  return buffer;
}

std::string escape_markdown(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|' || c == '\\') out += '\\';
    out += (c == '\n' || c == '\r') ? ' ' : c;
  }
  return out;
}

std::string quote_csv(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string quote_json(const std::string& text) {
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

}  // namespace

std::vector<std::string> leaderboard_columns() { return {"P@1", "P@5", "R@1", "R@5", "mAP@10"}; }


Report::Report(std::vector<std::string> columns) : columns_(std::move(columns)) {
  if (columns_.empty()) throw InvalidArgumentError("Report: columns is empty; name at least one metric");
}

void Report::add(const std::string& dataset, const Evaluation& evaluation) {
  std::vector<double> fractions;
  fractions.reserve(columns_.size());
  for (const auto& column : columns_) fractions.push_back(evaluation.value(column));
  add_row(dataset, std::move(fractions), evaluation.num_queries, evaluation.lone_queries,
          evaluation.ap_normalizer);
}

void Report::add(const std::string& dataset, const std::map<std::string, double>& fractions, int64_t num_queries,
                 int64_t lone_queries, APNormalizer ap_normalizer) {
  std::vector<double> values;
  values.reserve(columns_.size());
  for (const auto& column : columns_) {
    const auto found = fractions.find(column);
    if (found == fractions.end()) {
      throw InvalidArgumentError("Report::add(\"" + dataset + "\"): no value for column " + column);
    }
    values.push_back(found->second);
  }
  add_row(dataset, std::move(values), num_queries, lone_queries, ap_normalizer);
}

void Report::set_intervals(const std::string& dataset, std::vector<stats::Interval> intervals) {
  check_intervals("Report::set_intervals(\"" + dataset + "\")", intervals);
  for (auto& row : rows_) {
    if (row.dataset == dataset) {
      row.intervals = std::move(intervals);
      return;
    }
  }
  throw InvalidArgumentError("Report::set_intervals: no dataset \"" + dataset + "\" in the report; add() it first");
}

void Report::set_average_intervals(std::vector<stats::Interval> intervals) {
  check_intervals("Report::set_average_intervals", intervals);
  average_intervals_ = std::move(intervals);
}

void Report::set_interval_method(const IntervalMethod& method) {
  if (!(method.level > 0.0 && method.level < 1.0) || method.resamples < 0) {
    throw InvalidArgumentError("Report::set_interval_method: level must lie in (0, 1) and resamples be >= 0, got "
                                "level " + std::to_string(method.level) + ", resamples " +
                                std::to_string(method.resamples));
  }
  method_ = method;
}

bool Report::has_intervals() const {
  if (!average_intervals_.empty()) return true;
  for (const auto& row : rows_) {
    if (!row.intervals.empty()) return true;
  }
  return false;
}

std::vector<double> Report::average() const {
  std::vector<double> means(columns_.size(), rows_.empty() ? std::nan("") : 0.0);
  for (const auto& row : rows_) {
    for (size_t j = 0; j < columns_.size(); ++j) means[j] += row.fractions[j];
  }
  for (double& mean : means) mean /= static_cast<double>(rows_.size());
  return means;
}

std::string Report::to_markdown() const {
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

std::string Report::interval_description() const {
  std::string out = std::to_string(static_cast<int>(std::lround(method_.level * 100))) +
                    "% bootstrap intervals over queries (percentile method";
  if (method_.resamples > 0) {
    out += ", " + std::to_string(method_.resamples) + " resamples, seed " + std::to_string(method_.seed);
  }
  return out + "; the Average row resamples every dataset independently)";
}

std::string Report::to_csv() const {
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

std::string Report::to_json() const {
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

void Report::add_row(const std::string& dataset, std::vector<double> fractions, int64_t num_queries,
                     int64_t lone_queries, APNormalizer normalizer) {
  if (dataset.empty()) throw InvalidArgumentError("Report::add: the dataset name is empty");
  for (const auto& row : rows_) {
    if (row.dataset == dataset) {
      throw InvalidArgumentError("Report::add: dataset \"" + dataset + "\" is already in the report");
    }
  }
  if (!rows_.empty() && normalizer != ap_normalizer_) {
    throw InvalidArgumentError("Report::add(\"" + dataset + "\"): its AP normaliser is " + name(normalizer) +
                                " but the report's rows use " + name(ap_normalizer_) +
                                "; evaluate every dataset with the same ap_normalizer");
  }
  for (size_t j = 0; j < fractions.size(); ++j) {
    const double value = fractions[j];
    if (!std::isnan(value) && (value < 0.0 || value > 1.0)) {
      throw InvalidArgumentError("Report::add(\"" + dataset + "\"): " + columns_[j] + " = " +
                                  std::to_string(value) + " is not a fraction in [0, 1]");
    }
  }
  ap_normalizer_ = normalizer;
  rows_.push_back(Row{dataset, std::move(fractions), num_queries, lone_queries, {}});
}

std::string Report::intervals_json(const std::vector<stats::Interval>& intervals) const {
  std::string out = "{";
  for (size_t j = 0; j < columns_.size() && j < intervals.size(); ++j) {
    out += (j ? ", " : "") + quote_json(columns_[j]) + ": ";
    out += std::isnan(intervals[j].low) ? "null"
                                        : "[" + percent(intervals[j].low) + ", " + percent(intervals[j].high) + "]";
  }
  return out + "}";
}

void Report::check_intervals(const std::string& where, const std::vector<stats::Interval>& intervals) const {
  if (intervals.size() != columns_.size()) {
    throw InvalidArgumentError(where + ": " + std::to_string(intervals.size()) + " intervals for " +
                                std::to_string(columns_.size()) + " columns; give one per column (NaN for none)");
  }
  for (size_t j = 0; j < intervals.size(); ++j) {
    const auto& interval = intervals[j];
    if (std::isnan(interval.low) && std::isnan(interval.high)) continue;
    if (!(interval.low >= 0.0 && interval.high <= 1.0 && interval.low <= interval.high)) {
      throw InvalidArgumentError(where + ": " + columns_[j] + " interval [" + std::to_string(interval.low) + ", " +
                                  std::to_string(interval.high) + "] is not within [0, 1] with low <= high; give "
                                  "fractions");
    }
  }
}

}  // namespace pe::metrics
