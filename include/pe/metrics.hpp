#pragma once
// pe::metrics — retrieval scores for image-to-image instance retrieval:
// P@k, R@k, hit-rate@k and AP@k / mAP@k, per query and averaged.
//
// Definitions (docs/retrieval-protocol.md). For query q with its ranked gallery
// list (self excluded when asked), rel_i in {0, 1} at rank i (1-based), and
// R = number of gallery items with q's instance id (all of them, retrieved or not):
//   P@k  = hits(k) / k            always divides by k, even when R < k
//   R@k  = hits(k) / R            IR recall, not the metric-learning "hit rate"
//   HitRate@k = 1 if hits(k) > 0  what the SOP papers call "Recall@K"
//   AP@k = sum_{i<=k} rel_i * P@i / normaliser, normaliser one of
//          min(R, k) (default; the leaderboard's), R (trec_eval, ranx),
//          hits(k) (torchmetrics, pytorch-metric-learning; AP = 0 when no hit)
//   averages are plain means over the queries with R > 0. Queries with R = 0
//   ("lone") cannot score recall or AP: they are excluded and counted.
//   Ranks past the end of a ranking (k larger than the gallery or than the
//   ranking's depth) count as non-relevant.
//
// Inputs are raw row-major buffers (sizes stated per function), so numpy,
// Eigen and std::vector callers all pass their memory without a copy.
//
// Thread safety: every function here is pure. Concurrent calls are safe, also
// on shared inputs. Work is split over std::threads (Options::threads).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "pe/detail/parallel.hpp"

namespace pe::metrics {

/// What AP@k is divided by. Every output names the variant, because libraries
/// disagree and the numbers differ by up to 2x.
enum class APNormalizer {
  min_r_k,  ///< min(R, k): the leaderboard, Google Landmarks v2 (default)
  r,        ///< R: trec_eval map_cut, ranx, VPRC 2023
  hits,     ///< hits in the top k: torchmetrics, pytorch-metric-learning
};

/// Stable identifier used in APIs and files: "min_r_k", "r" or "hits".
inline const char* name(APNormalizer normalizer) {
  switch (normalizer) {
    case APNormalizer::min_r_k: return "min_r_k";
    case APNormalizer::r: return "r";
    case APNormalizer::hits: return "hits";
  }
  return "unknown";
}

/// Human-readable formula, for report footnotes: "min(R, k)", "R", "hits in top k".
inline const char* formula(APNormalizer normalizer) {
  switch (normalizer) {
    case APNormalizer::min_r_k: return "min(R, k)";
    case APNormalizer::r: return "R";
    case APNormalizer::hits: return "hits in top k";
  }
  return "unknown";
}

/// Parses "min_r_k", "r" or "hits"; throws std::invalid_argument otherwise.
inline APNormalizer parse_ap_normalizer(std::string_view text) {
  if (text == "min_r_k") return APNormalizer::min_r_k;
  if (text == "r") return APNormalizer::r;
  if (text == "hits") return APNormalizer::hits;
  throw std::invalid_argument("ap_normalizer: unknown value '" + std::string(text) +
                              "'; use \"min_r_k\" (divide AP@k by min(R, k), the leaderboard's), "
                              "\"r\" (divide by R) or \"hits\" (divide by the hits in the top k)");
}

struct Options {
  std::vector<int> ks{1, 5};      ///< cut-offs for P@k, R@k and HitRate@k
  std::vector<int> map_ks{10};    ///< cut-offs for AP@k / mAP@k
  APNormalizer ap_normalizer = APNormalizer::min_r_k;
  /// Query set == gallery set (by index): query i's own gallery row i is removed
  /// from its ranking and from its R. Needs as many queries as gallery items
  /// and query_ids equal to gallery_ids.
  bool exclude_self = false;
  /// Optional, num_queries entries: query q's own item in the gallery (its
  /// gallery index), or -1 when the query is not in the gallery. That item is
  /// removed from q's ranking and from its R, like exclude_self but for query
  /// sets that only partly overlap the gallery (a manifest's role=both rows).
  /// It must carry the query's instance id. Not combined with exclude_self.
  const int64_t* self_indices = nullptr;
  int threads = 0;  ///< 0 = every hardware thread
};

/// The scores of one evaluation. Averages are over the scored (non-lone) queries;
/// per-query arrays have one row per input query, NaN for lone queries.
struct Evaluation {
  std::vector<int> ks;
  std::vector<int> map_ks;
  APNormalizer ap_normalizer = APNormalizer::min_r_k;
  bool exclude_self = false;

  int64_t total_queries = 0;  ///< rows given
  int64_t num_queries = 0;    ///< queries scored (R > 0)
  int64_t lone_queries = 0;   ///< queries with R = 0, excluded from every average

  // Averages, fractions in [0, 1]; NaN when no query could be scored.
  std::vector<double> precision;               ///< P@ks[j]
  std::vector<double> recall;                  ///< R@ks[j]
  std::vector<double> hit_rate;                ///< HitRate@ks[j]
  std::vector<double> mean_average_precision;  ///< mAP@map_ks[j]

  // Per query, row-major: total_queries x ks.size() (or x map_ks.size()).
  std::vector<double> per_query_precision;
  std::vector<double> per_query_recall;
  std::vector<double> per_query_hit_rate;
  std::vector<double> per_query_average_precision;
  std::vector<int64_t> num_relevant;  ///< R per query (self excluded)

  /// Metric names in output order: P@k..., R@k..., HitRate@k..., mAP@k...
  std::vector<std::string> metric_names() const {
    std::vector<std::string> names;
    for (const char* prefix : {"P@", "R@", "HitRate@"}) {
      for (int k : ks) names.push_back(prefix + std::to_string(k));
    }
    for (int k : map_ks) names.push_back("mAP@" + std::to_string(k));
    return names;
  }

  /// The average named like "P@5", "R@1", "HitRate@10" or "mAP@10".
  double value(std::string_view metric) const {
    auto find = [&](std::string_view prefix, const std::vector<int>& cutoffs,
                    const std::vector<double>& values, double* out) {
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
    if (find("P@", ks, precision, &out) || find("R@", ks, recall, &out) ||
        find("HitRate@", ks, hit_rate, &out) ||
        find("mAP@", map_ks, mean_average_precision, &out)) {
      return out;
    }
    std::string known;
    for (const auto& candidate : metric_names()) known += (known.empty() ? "" : ", ") + candidate;
    throw std::invalid_argument("metric '" + std::string(metric) +
                                "' was not computed; this evaluation has " + known);
  }
};

namespace detail {

inline void validate_cutoffs(const std::vector<int>& cutoffs, const char* argument) {
  for (size_t j = 0; j < cutoffs.size(); ++j) {
    if (cutoffs[j] <= 0) {
      throw std::invalid_argument(std::string(argument) + " contains " + std::to_string(cutoffs[j]) +
                                  "; every k must be >= 1");
    }
    for (size_t i = 0; i < j; ++i) {
      if (cutoffs[i] == cutoffs[j]) {
        throw std::invalid_argument(std::string(argument) + " lists k = " +
                                    std::to_string(cutoffs[j]) + " twice; give each k once");
      }
    }
  }
}

inline int max_cutoff(const Options& options) {
  int deepest = 0;
  for (int k : options.ks) deepest = std::max(deepest, k);
  for (int k : options.map_ks) deepest = std::max(deepest, k);
  return deepest;
}

inline void validate_common(int64_t num_queries, const int64_t* query_ids, const int64_t* gallery_ids,
                            int64_t gallery_size, const Options& options) {
  if (num_queries <= 0) {
    throw std::invalid_argument("the query set is empty (" + std::to_string(num_queries) +
                                " queries); pass at least one query");
  }
  if (gallery_size <= 0) {
    throw std::invalid_argument("the gallery is empty (" + std::to_string(gallery_size) +
                                " items); every query would be lone");
  }
  if (query_ids == nullptr) throw std::invalid_argument("query_ids is null");
  if (gallery_ids == nullptr) throw std::invalid_argument("gallery_ids is null");
  validate_cutoffs(options.ks, "ks");
  validate_cutoffs(options.map_ks, "map_ks");
  if (options.ks.empty() && options.map_ks.empty()) {
    throw std::invalid_argument("ks and map_ks are both empty; ask for at least one metric");
  }
  if (options.exclude_self && options.self_indices != nullptr) {
    throw std::invalid_argument("pass exclude_self or self_indices, not both (exclude_self means self_indices[q] = q)");
  }
  if (options.self_indices != nullptr) {
    for (int64_t q = 0; q < num_queries; ++q) {
      const int64_t self = options.self_indices[q];
      if (self < -1 || self >= gallery_size) {
        throw std::invalid_argument("self_indices[" + std::to_string(q) + "] = " + std::to_string(self) +
                                    " is out of range: use a gallery index in 0.." +
                                    std::to_string(gallery_size - 1) + ", or -1 when the query is not in the gallery");
      }
      if (self >= 0 && gallery_ids[self] != query_ids[q]) {
        throw std::invalid_argument("self_indices[" + std::to_string(q) + "] = " + std::to_string(self) +
                                    " names a gallery item of instance " + std::to_string(gallery_ids[self]) +
                                    " but query " + std::to_string(q) + " is instance " +
                                    std::to_string(query_ids[q]) + "; a query's own item has its instance id");
      }
    }
  }
  if (options.exclude_self) {
    if (num_queries != gallery_size) {
      throw std::invalid_argument(
          "exclude_self needs the query set to be the gallery: got " + std::to_string(num_queries) +
          " queries and " + std::to_string(gallery_size) + " gallery items");
    }
    for (int64_t q = 0; q < num_queries; ++q) {
      if (query_ids[q] != gallery_ids[q]) {
        throw std::invalid_argument(
            "exclude_self needs query_ids == gallery_ids, but query_ids[" + std::to_string(q) +
            "] = " + std::to_string(query_ids[q]) + " and gallery_ids[" + std::to_string(q) +
            "] = " + std::to_string(gallery_ids[q]));
      }
    }
  }
}

/// The gallery index query q must not retrieve (itself), or -1.
inline int64_t self_index(const Options& options, int64_t q) {
  if (options.exclude_self) return q;
  return options.self_indices != nullptr ? options.self_indices[q] : -1;
}

/// R for every query: gallery items sharing its id, minus the query's own item.
inline std::vector<int64_t> count_relevant(int64_t num_queries, const int64_t* query_ids,
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
        throw std::invalid_argument(position(q, j) + " = " + std::to_string(g) +
                                    " is out of range: the gallery has " + std::to_string(gallery_size_) +
                                    " items (valid indices 0.." + std::to_string(gallery_size_ - 1) +
                                    ", or -1 as 'no result' padding at the end of a row)");
      }
      if (padding_started) {
        throw std::invalid_argument(position(q, j) + " = " + std::to_string(g) +
                                    " follows a -1; -1 means 'no result' and may only pad the end of a row");
      }
      if (seen_[g] == q + 1) {
        throw std::invalid_argument(position(q, j) + " = " + std::to_string(g) +
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

inline Evaluation prepare(int64_t num_queries, const Options& options) {
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
inline void average(Evaluation& out) {
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

}  // namespace detail

/// Scores rankings given as gallery indices.
///   ranking      num_queries x depth, row-major: gallery indices, best first.
///                -1 pads a row that has fewer results (as pe::Retriever and
///                FAISS return); padding and ranks past `depth` are non-relevant.
///   query_ids    num_queries instance ids; gallery_ids: gallery_size instance ids.
/// Throws std::invalid_argument on an empty query set or gallery, bad options,
/// indices out of range, a repeated index within a row, (exclude_self) query
/// and gallery sets that differ, or self_indices out of range / of another instance.
inline Evaluation evaluate(const int64_t* ranking, int64_t num_queries, int64_t depth,
                           const int64_t* query_ids, const int64_t* gallery_ids, int64_t gallery_size,
                           const Options& options = {}) {
  detail::validate_common(num_queries, query_ids, gallery_ids, gallery_size, options);
  if (depth < 0) throw std::invalid_argument("ranking depth is negative (" + std::to_string(depth) + ")");
  if (ranking == nullptr && depth > 0) throw std::invalid_argument("ranking is null");
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

/// Convenience overload: `ranking` holds query_ids.size() rows of equal depth.
inline Evaluation evaluate(const std::vector<int64_t>& ranking, const std::vector<int64_t>& query_ids,
                           const std::vector<int64_t>& gallery_ids, const Options& options = {}) {
  const auto num_queries = static_cast<int64_t>(query_ids.size());
  if (num_queries > 0 && ranking.size() % query_ids.size() != 0) {
    throw std::invalid_argument("ranking has " + std::to_string(ranking.size()) +
                                " entries, not a multiple of the " + std::to_string(num_queries) +
                                " queries; pass num_queries rows of equal depth");
  }
  const int64_t depth = num_queries > 0 ? static_cast<int64_t>(ranking.size()) / num_queries : 0;
  return evaluate(ranking.data(), num_queries, depth, query_ids.data(), gallery_ids.data(),
                  static_cast<int64_t>(gallery_ids.size()), options);
}

/// Scores a similarity matrix: scores is num_queries x gallery_size, row-major,
/// higher = more similar. Each row is ranked inside (score descending, then
/// gallery index ascending for ties) down to the deepest k asked for.
/// Score is float or double; NaN scores are an error (±inf are allowed).
template <class Score>
Evaluation evaluate_scores(const Score* scores, int64_t num_queries, int64_t gallery_size,
                           const int64_t* query_ids, const int64_t* gallery_ids,
                           const Options& options = {}) {
  static_assert(std::is_floating_point<Score>::value, "scores must be float or double");
  detail::validate_common(num_queries, query_ids, gallery_ids, gallery_size, options);
  if (scores == nullptr) throw std::invalid_argument("scores is null");
  Evaluation out = detail::prepare(num_queries, options);
  const std::vector<int64_t> relevant =
      detail::count_relevant(num_queries, query_ids, gallery_ids, gallery_size, options);
  const int64_t depth_needed = detail::max_cutoff(options);
  pe::detail::parallel_for(
      num_queries, options.threads, std::max<int64_t>(1, detail::kMinQueriesPerThread * 100 / gallery_size),
      [&](int64_t begin, int64_t end) {
        detail::QueryScorer scorer(options, gallery_ids, gallery_size, "ranking of scores");
        std::vector<int64_t> candidates;
        candidates.reserve(static_cast<size_t>(gallery_size));
        for (int64_t q = begin; q < end; ++q) {
          const Score* row = scores + q * gallery_size;
          candidates.clear();
          const int64_t own_item = detail::self_index(options, q);
          for (int64_t g = 0; g < gallery_size; ++g) {
            if (std::isnan(row[g])) {
              throw std::invalid_argument("scores[" + std::to_string(q) + ", " + std::to_string(g) +
                                          "] is NaN; check the embeddings for NaN before scoring");
            }
            if (g != own_item) candidates.push_back(g);
          }
          const auto keep = std::min<int64_t>(depth_needed, static_cast<int64_t>(candidates.size()));
          std::partial_sort(candidates.begin(), candidates.begin() + keep, candidates.end(),
                            [row](int64_t a, int64_t b) {
                              return row[a] > row[b] || (row[a] == row[b] && a < b);
                            });
          scorer.score(q, query_ids[q], relevant[q], candidates.data(), keep, out);
        }
      });
  detail::average(out);
  return out;
}

}  // namespace pe::metrics
