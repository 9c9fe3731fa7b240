#pragma once
// pe::detail::TopK — bounded per-query heaps of (score, row) for exact top-k
// (internal). The one ranker of the library: pe::Retriever's search and
// pe::metrics::evaluate_scores both select with it, so both break ties the
// same way.
//
// Order: higher score first; equal scores by lower gallery row first. The order
// is total, so the result does not depend on the order rows were scanned in,
// which lets threads scan gallery slices independently and merge afterwards.
//
// Each heap keeps its *worst* entry at the root, and `thresholds()` exposes that
// worst score per query (-inf while the heap is not full). Kernels compare
// whole vectors of scores against it and only call push() for the rare lanes
// with score >= threshold, so the heaps are touched a few times per query and
// gallery slice instead of once per score.
//
// Thread safety: one TopK per thread; not safe to share while pushing.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace pe::detail {

/// a ranks before b: higher score, then lower row.
template <class Score>
inline bool ranks_before(Score score_a, int64_t row_a, Score score_b, int64_t row_b) {
  return score_a > score_b || (score_a == score_b && row_a < row_b);
}

/// Scores are float (the retriever) or double (metrics on float64 score matrices).
template <class Score>
class BasicTopK {
 public:
  /// `num_queries` heaps of capacity `k` (>= 1). thresholds() has
  /// `padded_queries` >= num_queries entries; the padding is +inf so padded
  /// query lanes of a micro-tile never pass the threshold test.
  BasicTopK(int64_t num_queries, int64_t k, int64_t padded_queries)
      : k_(k),
        scores_(static_cast<size_t>(num_queries * k)),
        rows_(static_cast<size_t>(num_queries * k)),
        sizes_(static_cast<size_t>(num_queries), 0),
        thresholds_(static_cast<size_t>(std::max(padded_queries, num_queries)),
                    std::numeric_limits<Score>::infinity()) {
    std::fill(thresholds_.begin(), thresholds_.begin() + num_queries, -std::numeric_limits<Score>::infinity());
  }

  /// Empties every heap, keeping the memory.
  void clear() {
    std::fill(sizes_.begin(), sizes_.end(), 0);
    std::fill(thresholds_.begin(), thresholds_.begin() + static_cast<int64_t>(sizes_.size()),
              -std::numeric_limits<Score>::infinity());
  }

  int64_t k() const { return k_; }
  const Score* thresholds() const { return thresholds_.data(); }
  Score threshold(int64_t q) const { return thresholds_[static_cast<size_t>(q)]; }

  /// Offers (score, row) to query q's heap; kept if the heap is not full or it
  /// ranks before the current worst entry.
  void push(int64_t q, Score score, int64_t row) {
    Score* s = scores_.data() + q * k_;
    int64_t* r = rows_.data() + q * k_;
    int64_t& n = sizes_[static_cast<size_t>(q)];
    if (n < k_) {
      // Sift up: a parent must not rank before its children (worst at root).
      int64_t i = n++;
      while (i > 0) {
        const int64_t parent = (i - 1) / 2;
        if (!ranks_before(s[parent], r[parent], score, row)) break;
        s[i] = s[parent];
        r[i] = r[parent];
        i = parent;
      }
      s[i] = score;
      r[i] = row;
      if (n == k_) thresholds_[static_cast<size_t>(q)] = s[0];
      return;
    }
    if (!ranks_before(score, row, s[0], r[0])) return;
    int64_t i = 0;
    for (;;) {
      const int64_t left = 2 * i + 1;
      if (left >= n) break;
      int64_t worst = left;
      if (left + 1 < n && ranks_before(s[left], r[left], s[left + 1], r[left + 1])) worst = left + 1;
      if (!ranks_before(score, row, s[worst], r[worst])) break;
      s[i] = s[worst];
      r[i] = r[worst];
      i = worst;
    }
    s[i] = score;
    r[i] = row;
    thresholds_[static_cast<size_t>(q)] = s[0];
  }

  int64_t size(int64_t q) const { return sizes_[static_cast<size_t>(q)]; }
  const Score* scores(int64_t q) const { return scores_.data() + q * k_; }
  const int64_t* rows(int64_t q) const { return rows_.data() + q * k_; }

  /// Query q's rows, best first, into out[0, size(q)); returns size(q).
  int64_t sorted_rows(int64_t q, int64_t* out) {
    Score* s = scores_.data() + q * k_;
    int64_t* r = rows_.data() + q * k_;
    const int64_t n = sizes_[static_cast<size_t>(q)];
    std::vector<std::pair<Score, int64_t>> entries(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) entries[static_cast<size_t>(i)] = {s[i], r[i]};
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
      return ranks_before(a.first, a.second, b.first, b.second);
    });
    for (int64_t i = 0; i < n; ++i) out[i] = entries[static_cast<size_t>(i)].second;
    return n;
  }

 private:
  int64_t k_;
  std::vector<Score> scores_;
  std::vector<int64_t> rows_;
  std::vector<int64_t> sizes_;
  std::vector<Score> thresholds_;
};

using TopK = BasicTopK<float>;

/// Merges query q's entries of every heap into the best `k` (ranked), writing
/// `out_scores[0..k)` / `out_rows[0..k)`; positions past the available entries
/// get -inf / -1. `scratch` is reused between calls.
inline void merge_top_k(const std::vector<TopK>& parts, int64_t q, int64_t k, float* out_scores, int64_t* out_rows,
                        std::vector<std::pair<float, int64_t>>& scratch) {
  scratch.clear();
  for (const TopK& part : parts) {
    const float* s = part.scores(q);
    const int64_t* r = part.rows(q);
    for (int64_t i = 0; i < part.size(q); ++i) scratch.emplace_back(s[i], r[i]);
  }
  const auto keep = std::min<int64_t>(k, static_cast<int64_t>(scratch.size()));
  auto order = [](const std::pair<float, int64_t>& a, const std::pair<float, int64_t>& b) {
    return ranks_before(a.first, a.second, b.first, b.second);
  };
  std::partial_sort(scratch.begin(), scratch.begin() + keep, scratch.end(), order);
  for (int64_t i = 0; i < keep; ++i) {
    out_scores[i] = scratch[static_cast<size_t>(i)].first;
    out_rows[i] = scratch[static_cast<size_t>(i)].second;
  }
  for (int64_t i = keep; i < k; ++i) {
    out_scores[i] = -std::numeric_limits<float>::infinity();
    out_rows[i] = -1;
  }
}

}  // namespace pe::detail
