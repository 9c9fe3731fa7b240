#pragma once
// pe::metrics — retrieval scores for image-to-image instance retrieval:
// P@k, R@k, hit-rate@k and AP@k / mAP@k, per query and averaged.
//
// Definitions (docs/metrics.md). For query q with its ranked gallery
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

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pe/error.hpp"

namespace pe::metrics {

/// What AP@k is divided by. Every output names the variant, because libraries
/// disagree and the numbers differ by up to 2x.
enum class APNormalizer {
  min_r_k,  ///< min(R, k): the leaderboard, Google Landmarks v2 (default)
  r,        ///< R: trec_eval map_cut, ranx, VPRC 2023
  hits,     ///< hits in the top k: torchmetrics, pytorch-metric-learning
};

/// Stable identifier used in APIs and files: "min_r_k", "r" or "hits".
const char* name(APNormalizer normalizer);
/// Human-readable formula, for report footnotes: "min(R, k)", "R", "hits in top k".
const char* formula(APNormalizer normalizer);
/// Parses "min_r_k", "r" or "hits"; throws InvalidArgumentError otherwise.
APNormalizer parse_ap_normalizer(std::string_view text);

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
  int threads = 0;  ///< 0 = every usable CPU (pe::usable_cpu_count())
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
  std::vector<std::string> metric_names() const;
  /// The average named like "P@5", "R@1", "HitRate@10" or "mAP@10";
  /// InvalidArgumentError naming the metrics computed when it was not.
  double value(std::string_view metric) const;
};

// Both scoring functions take the same arguments in the same order: the
// matrix, its shape (and the gallery size where the matrix does not imply it),
// the query and gallery instance ids, the options.

/// Scores rankings given as gallery indices.
///   ranking      num_queries x depth, row-major: gallery indices, best first.
///                -1 pads a row that has fewer results (as pe::Retriever and
///                FAISS return); padding and ranks past `depth` are non-relevant.
///   gallery_size items in the gallery (indices 0..gallery_size-1)
///   query_ids    num_queries instance ids; gallery_ids: gallery_size instance ids.
/// Throws InvalidArgumentError on an empty query set or gallery, bad options,
/// indices out of range, a repeated index within a row, (exclude_self) query
/// and gallery sets that differ, or self_indices out of range / of another instance.
Evaluation evaluate(const int64_t* ranking, int64_t num_queries, int64_t depth, int64_t gallery_size,
                    const int64_t* query_ids, const int64_t* gallery_ids, const Options& options = {});

/// Convenience overload: `ranking` holds query_ids.size() rows of equal depth.
Evaluation evaluate(const std::vector<int64_t>& ranking, const std::vector<int64_t>& query_ids,
                    const std::vector<int64_t>& gallery_ids, const Options& options = {});

/// Scores a similarity matrix: scores is num_queries x gallery_size, row-major,
/// higher = more similar. Each row is ranked inside down to the deepest k asked
/// for, by the same top-k selection and tie rule as pe::Retriever (score
/// descending, then gallery index ascending). NaN scores are an error (±inf
/// are allowed). Errors as evaluate().
Evaluation evaluate_scores(const float* scores, int64_t num_queries, int64_t gallery_size, const int64_t* query_ids,
                           const int64_t* gallery_ids, const Options& options = {});
Evaluation evaluate_scores(const double* scores, int64_t num_queries, int64_t gallery_size,
                           const int64_t* query_ids, const int64_t* gallery_ids, const Options& options = {});

}  // namespace pe::metrics
