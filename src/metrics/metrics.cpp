// pe::metrics (see include/pe/metrics.hpp for the definitions and contracts).

#include "pe/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "common/parallel.hpp"
#include "common/topk.hpp"

namespace pe::metrics {

const char* name(APNormalizer normalizer) {
  switch (normalizer) {
    case APNormalizer::min_r_k: return "min_r_k";
    case APNormalizer::r: return "r";
    case APNormalizer::hits: return "hits";
  }
  return "unknown";
}

const char* formula(APNormalizer normalizer) {
  switch (normalizer) {
    case APNormalizer::min_r_k: return "min(R, k)";
    case APNormalizer::r: return "R";
    case APNormalizer::hits: return "hits in top k";
  }
  return "unknown";
}

APNormalizer parse_ap_normalizer(std::string_view text) {
  if (text == "min_r_k") return APNormalizer::min_r_k;
  if (text == "r") return APNormalizer::r;
  if (text == "hits") return APNormalizer::hits;
  throw InvalidArgumentError("ap_normalizer: unknown value '" + std::string(text) +
                             "'; use \"min_r_k\" (divide AP@k by min(R, k), the leaderboard's), "
                             "\"r\" (divide by R) or \"hits\" (divide by the hits in the top k)");
}

std::vector<std::string> Evaluation::metric_names() const {
  std::vector<std::string> names;
  for (const char* prefix : {"P@", "R@", "HitRate@"}) {
    for (int k : ks) names.push_back(prefix + std::to_string(k));
  }
  for (int k : map_ks) names.push_back("mAP@" + std::to_string(k));
  return names;
}

double Evaluation::value(std::string_view metric) const {
  auto find = [&](std::string_view prefix, const std::vector<int>& cutoffs, const std::vector<double>& values,
                  double* out) {
    if (metric.substr(0, prefix.size()) != prefix) return false;
    const std::string_view number = metric.substr(prefix.size());
    for (size_t j = 0; j < cutoffs.size(); ++j) {
      if (number == std::to_string(cutoffs[j])) {
        *out = values[j];
        return true;
      }
    }
    return false;
  };
  double out = 0;
  if (find("P@", ks, precision, &out) || find("R@", ks, recall, &out) || find("HitRate@", ks, hit_rate, &out) ||
      find("mAP@", map_ks, mean_average_precision, &out)) {
    return out;
  }
  std::string known;
  for (const auto& candidate : metric_names()) known += (known.empty() ? "" : ", ") + candidate;
  throw InvalidArgumentError("metric '" + std::string(metric) + "' was not computed; this evaluation has " + known);
}

namespace detail {
namespace {

void validate_cutoffs(const std::vector<int>& cutoffs, const char* argument) {
  for (size_t j = 0; j < cutoffs.size(); ++j) {
    if (cutoffs[j] <= 0) {
      throw InvalidArgumentError(std::string(argument) + " contains " + std::to_string(cutoffs[j]) +
                                  "; every k must be >= 1");
    }
    for (size_t i = 0; i < j; ++i) {
      if (cutoffs[i] == cutoffs[j]) {
        throw InvalidArgumentError(std::string(argument) + " lists k = " +
                                    std::to_string(cutoffs[j]) + " twice; give each k once");
      }
    }
  }
}

int max_cutoff(const Options& options) {
  int deepest = 0;
  for (int k : options.ks) deepest = std::max(deepest, k);
  for (int k : options.map_ks) deepest = std::max(deepest, k);
  return deepest;
}

void validate_common(int64_t num_queries, const int64_t* query_ids, const int64_t* gallery_ids,
                            int64_t gallery_size, const Options& options) {
  if (num_queries <= 0) {
    throw InvalidArgumentError("the query set is empty (" + std::to_string(num_queries) +
                                " queries); pass at least one query");
  }
  if (gallery_size <= 0) {
    throw InvalidArgumentError("the gallery is empty (" + std::to_string(gallery_size) +
                                " items); every query would be lone");
  }
  if (query_ids == nullptr) throw InvalidArgumentError("query_ids is null");
  if (gallery_ids == nullptr) throw InvalidArgumentError("gallery_ids is null");
  validate_cutoffs(options.ks, "ks");
  validate_cutoffs(options.map_ks, "map_ks");
  if (options.ks.empty() && options.map_ks.empty()) {
    throw InvalidArgumentError("ks and map_ks are both empty; ask for at least one metric");
  }
  if (options.exclude_self && options.self_indices != nullptr) {
    throw InvalidArgumentError("pass exclude_self or self_indices, not both (exclude_self means self_indices[q] = q)");
  }
  if (options.self_indices != nullptr) {
    for (int64_t q = 0; q < num_queries; ++q) {
      const int64_t self = options.self_indices[q];
      if (self < -1 || self >= gallery_size) {
        throw InvalidArgumentError("self_indices[" + std::to_string(q) + "] = " + std::to_string(self) +
                                    " is out of range: use a gallery index in 0.." +
                                    std::to_string(gallery_size - 1) + ", or -1 when the query is not in the gallery");
      }
      if (self >= 0 && gallery_ids[self] != query_ids[q]) {
        throw InvalidArgumentError("self_indices[" + std::to_string(q) + "] = " + std::to_string(self) +
                                    " names a gallery item of instance " + std::to_string(gallery_ids[self]) +
                                    " but query " + std::to_string(q) + " is instance " +
                                    std::to_string(query_ids[q]) + "; a query's own item has its instance id");
      }
    }
  }
  if (options.exclude_self) {
    if (num_queries != gallery_size) {
      throw InvalidArgumentError(
          "exclude_self needs the query set to be the gallery: got " + std::to_string(num_queries) +
          " queries and " + std::to_string(gallery_size) + " gallery items");
    }
    for (int64_t q = 0; q < num_queries; ++q) {
      if (query_ids[q] != gallery_ids[q]) {
        throw InvalidArgumentError(
            "exclude_self needs query_ids == gallery_ids, but query_ids[" + std::to_string(q) +
            "] = " + std::to_string(query_ids[q]) + " and gallery_ids[" + std::to_string(q) +
            "] = " + std::to_string(gallery_ids[q]));
      }
    }
  }
}

/// The gallery index query q must not retrieve (itself), or -1.
int64_t self_index(const Options& options, int64_t q) {
  if (options.exclude_self) return q;
  return options.self_indices != nullptr ? options.self_indices[q] : -1;
}

/// R for every query: gallery items sharing its id, minus the query's own item.
std::vector<int64_t> count_relevant(int64_t num_queries, const int64_t* query_ids,
                                           const int64_t* gallery_ids, int64_t gallery_size,
                                           const Options& options) {
  std::vector<int64_t> sorted_ids(gallery_ids, gallery_ids + gallery_size);
  std::sort(sorted_ids.begin(), sorted_ids.end());
  std::vector<int64_t> relevant(static_cast<size_t>(num_queries));
  for (int64_t q = 0; q < num_queries; ++q) {
    const auto range = std::equal_range(sorted_ids.begin(), sorted_ids.end(), query_ids[q]);
    relevant[q] = (range.second - range.first) - (self_index(options, q) >= 0 ? 1 : 0);
  }
  return relevant;
}

/// Scores query q from its ranked list of gallery indices (best first), writing
/// the per-query slots of `out`. Validates the list as it walks it: indices in
/// [0, gallery_size), -1 only as trailing "no result" padding, no repeats.
/// `seen` has gallery_size entries and is stamped with q + 1 (no clearing needed).
class QueryScorer {
 public:
  QueryScorer(const Options& options, const int64_t* gallery_ids, int64_t gallery_size,
              const char* list_name)
      : options_(options),
        gallery_ids_(gallery_ids),
        gallery_size_(gallery_size),
        list_name_(list_name),
        depth_needed_(max_cutoff(options)),
        hits_at_(static_cast<size_t>(depth_needed_) + 1),
        ap_sum_at_(static_cast<size_t>(depth_needed_) + 1),
        seen_(static_cast<size_t>(gallery_size), 0) {}

  void score(int64_t q, int64_t query_id, int64_t relevant, const int64_t* list, int64_t length,
             Evaluation& out) {
    int64_t rank = 0;  // ranks given so far (self skipped)
    int64_t hits = 0;
    double ap_sum = 0;
    bool padding_started = false;
    const int64_t own_item = self_index(options_, q);
    for (int64_t j = 0; j < length; ++j) {
      const int64_t g = list[j];
      if (g == -1) {
        padding_started = true;
        continue;
      }
      if (g < 0 || g >= gallery_size_) {
        throw InvalidArgumentError(position(q, j) + " = " + std::to_string(g) +
                                    " is out of range: the gallery has " + std::to_string(gallery_size_) +
                                    " items (valid indices 0.." + std::to_string(gallery_size_ - 1) +
                                    ", or -1 as 'no result' padding at the end of a row)");
      }
      if (padding_started) {
        throw InvalidArgumentError(position(q, j) + " = " + std::to_string(g) +
                                    " follows a -1; -1 means 'no result' and may only pad the end of a row");
      }
      if (seen_[g] == q + 1) {
        throw InvalidArgumentError(position(q, j) + " = " + std::to_string(g) +
                                    " repeats a gallery index already ranked for this query; "
                                    "each gallery item may appear once per row");
      }
      seen_[g] = q + 1;
      if (g == own_item) continue;
      if (rank >= depth_needed_) continue;  // keep validating the rest of the row
      ++rank;
      if (gallery_ids_[g] == query_id) {
        ++hits;
        ap_sum += static_cast<double>(hits) / static_cast<double>(rank);
      }
      hits_at_[rank] = hits;
      ap_sum_at_[rank] = ap_sum;
    }
    // Ranks past the end of the list are non-relevant.
    for (int64_t r = rank + 1; r <= depth_needed_; ++r) {
      hits_at_[r] = hits;
      ap_sum_at_[r] = ap_sum;
    }
    hits_at_[0] = 0;
    ap_sum_at_[0] = 0;

    const size_t nk = options_.ks.size();
    const size_t nm = options_.map_ks.size();
    out.num_relevant[q] = relevant;
    if (relevant <= 0) {
      const double nan = std::numeric_limits<double>::quiet_NaN();
      for (size_t j = 0; j < nk; ++j) {
        out.per_query_precision[q * nk + j] = nan;
        out.per_query_recall[q * nk + j] = nan;
        out.per_query_hit_rate[q * nk + j] = nan;
      }
      for (size_t j = 0; j < nm; ++j) out.per_query_average_precision[q * nm + j] = nan;
      return;
    }
    for (size_t j = 0; j < nk; ++j) {
      const int k = options_.ks[j];
      const auto h = static_cast<double>(hits_at_[k]);
      out.per_query_precision[q * nk + j] = h / k;
      out.per_query_recall[q * nk + j] = h / static_cast<double>(relevant);
      out.per_query_hit_rate[q * nk + j] = hits_at_[k] > 0 ? 1.0 : 0.0;
    }
    for (size_t j = 0; j < nm; ++j) {
      const int k = options_.map_ks[j];
      double normaliser = 0;
      switch (options_.ap_normalizer) {
        case APNormalizer::min_r_k: normaliser = static_cast<double>(std::min<int64_t>(relevant, k)); break;
        case APNormalizer::r: normaliser = static_cast<double>(relevant); break;
        case APNormalizer::hits: normaliser = static_cast<double>(hits_at_[k]); break;
      }
      out.per_query_average_precision[q * nm + j] = normaliser > 0 ? ap_sum_at_[k] / normaliser : 0.0;
    }
  }

 private:
  std::string position(int64_t q, int64_t j) const {
    return std::string(list_name_) + "[" + std::to_string(q) + ", " + std::to_string(j) + "]";
  }

  const Options& options_;
  const int64_t* gallery_ids_;
  int64_t gallery_size_;
  const char* list_name_;
  int64_t depth_needed_;
  std::vector<int64_t> hits_at_;  // hits_at_[r] = hits in ranks 1..r
  std::vector<double> ap_sum_at_; // sum of P@i over relevant i <= r
  std::vector<int64_t> seen_;
};

Evaluation prepare(int64_t num_queries, const Options& options) {
  Evaluation out;
  out.ks = options.ks;
  out.map_ks = options.map_ks;
  out.ap_normalizer = options.ap_normalizer;
  out.exclude_self = options.exclude_self;
  out.total_queries = num_queries;
  const auto rows = static_cast<size_t>(num_queries);
  out.per_query_precision.resize(rows * options.ks.size());
  out.per_query_recall.resize(rows * options.ks.size());
  out.per_query_hit_rate.resize(rows * options.ks.size());
  out.per_query_average_precision.resize(rows * options.map_ks.size());
  out.num_relevant.resize(rows);
  return out;
}

/// Means over the scored queries, summed in query order so the result does
/// not depend on the thread count.
void average(Evaluation& out) {
  int64_t scored = 0;
  for (int64_t relevant : out.num_relevant) scored += relevant > 0 ? 1 : 0;
  out.num_queries = scored;
  out.lone_queries = out.total_queries - scored;
  auto mean_columns = [&](const std::vector<double>& per_query, size_t columns) {
    std::vector<double> sums(columns, 0.0);
    for (int64_t q = 0; q < out.total_queries; ++q) {
      if (out.num_relevant[q] <= 0) continue;
      for (size_t j = 0; j < columns; ++j) sums[j] += per_query[q * columns + j];
    }
    for (double& sum : sums) {
      sum = scored > 0 ? sum / static_cast<double>(scored) : std::numeric_limits<double>::quiet_NaN();
    }
    return sums;
  };
  out.precision = mean_columns(out.per_query_precision, out.ks.size());
  out.recall = mean_columns(out.per_query_recall, out.ks.size());
  out.hit_rate = mean_columns(out.per_query_hit_rate, out.ks.size());
  out.mean_average_precision = mean_columns(out.per_query_average_precision, out.map_ks.size());
}

// Below this many queries per thread, starting threads costs more than it saves.
constexpr int64_t kMinQueriesPerThread = 2048;

}  // namespace
}  // namespace detail

Evaluation evaluate(const int64_t* ranking, int64_t num_queries, int64_t depth, int64_t gallery_size,
                    const int64_t* query_ids, const int64_t* gallery_ids, const Options& options) {
  detail::validate_common(num_queries, query_ids, gallery_ids, gallery_size, options);
  if (depth < 0) throw InvalidArgumentError("ranking depth is negative (" + std::to_string(depth) + ")");
  if (ranking == nullptr && depth > 0) throw InvalidArgumentError("ranking is null");
  Evaluation out = detail::prepare(num_queries, options);
  const std::vector<int64_t> relevant =
      detail::count_relevant(num_queries, query_ids, gallery_ids, gallery_size, options);
  pe::detail::parallel_for(num_queries, options.threads, detail::kMinQueriesPerThread,
                           [&](int64_t begin, int64_t end) {
                             detail::QueryScorer scorer(options, gallery_ids, gallery_size, "ranking");
                             for (int64_t q = begin; q < end; ++q) {
                               scorer.score(q, query_ids[q], relevant[q], ranking + q * depth, depth, out);
                             }
                           });
  detail::average(out);
  return out;
}

Evaluation evaluate(const std::vector<int64_t>& ranking, const std::vector<int64_t>& query_ids,
                    const std::vector<int64_t>& gallery_ids, const Options& options) {
  const auto num_queries = static_cast<int64_t>(query_ids.size());
  if (num_queries > 0 && ranking.size() % query_ids.size() != 0) {
    throw InvalidArgumentError("ranking has " + std::to_string(ranking.size()) + " entries, not a multiple of the " +
                               std::to_string(num_queries) + " queries; pass num_queries rows of equal depth");
  }
  const int64_t depth = num_queries > 0 ? static_cast<int64_t>(ranking.size()) / num_queries : 0;
  return evaluate(ranking.data(), num_queries, depth, static_cast<int64_t>(gallery_ids.size()), query_ids.data(),
                  gallery_ids.data(), options);
}

namespace {

// Ranks each row with the retriever's heap (pe::detail::BasicTopK: one tie
// rule for both), then scores the ranking like evaluate().
template <class Score>
Evaluation evaluate_score_matrix(const Score* scores, int64_t num_queries, int64_t gallery_size,
                                 const int64_t* query_ids, const int64_t* gallery_ids, const Options& options) {
  detail::validate_common(num_queries, query_ids, gallery_ids, gallery_size, options);
  if (scores == nullptr) throw InvalidArgumentError("scores is null");
  Evaluation out = detail::prepare(num_queries, options);
  const std::vector<int64_t> relevant =
      detail::count_relevant(num_queries, query_ids, gallery_ids, gallery_size, options);
  const int64_t depth = std::min<int64_t>(detail::max_cutoff(options), gallery_size);
  pe::detail::parallel_for(
      num_queries, options.threads, std::max<int64_t>(1, detail::kMinQueriesPerThread * 100 / gallery_size),
      [&](int64_t begin, int64_t end) {
        detail::QueryScorer scorer(options, gallery_ids, gallery_size, "ranking of scores");
        pe::detail::BasicTopK<Score> top(1, std::max<int64_t>(1, depth), 1);
        std::vector<int64_t> ranked(static_cast<size_t>(depth));
        for (int64_t q = begin; q < end; ++q) {
          const Score* row = scores + q * gallery_size;
          const int64_t own_item = detail::self_index(options, q);
          top.clear();
          for (int64_t g = 0; g < gallery_size; ++g) {
            if (std::isnan(row[g])) {
              throw InvalidArgumentError("scores[" + std::to_string(q) + ", " + std::to_string(g) +
                                         "] is NaN; check the embeddings for NaN before scoring");
            }
            if (g != own_item && row[g] >= top.threshold(0)) top.push(0, row[g], g);
          }
          const int64_t kept = top.sorted_rows(0, ranked.data());
          scorer.score(q, query_ids[q], relevant[q], ranked.data(), kept, out);
        }
      });
  detail::average(out);
  return out;
}

}  // namespace

Evaluation evaluate_scores(const float* scores, int64_t num_queries, int64_t gallery_size, const int64_t* query_ids,
                           const int64_t* gallery_ids, const Options& options) {
  return evaluate_score_matrix(scores, num_queries, gallery_size, query_ids, gallery_ids, options);
}

Evaluation evaluate_scores(const double* scores, int64_t num_queries, int64_t gallery_size,
                           const int64_t* query_ids, const int64_t* gallery_ids, const Options& options) {
  return evaluate_score_matrix(scores, num_queries, gallery_size, query_ids, gallery_ids, options);
}

}  // namespace pe::metrics
