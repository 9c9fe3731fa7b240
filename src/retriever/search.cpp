// pe::Retriever::search: query batching, per-thread gallery slices, the two
// scan paths and the merge (see include/pe/retriever.hpp for the contract and
// kernels.hpp for the arithmetic).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <limits>
#include <mutex>
#include <shared_mutex>  // std::shared_lock
#include <thread>
#include <utility>
#include <vector>

#include "common/parallel.hpp"
#include "common/topk.hpp"
#include "retriever/kernels.hpp"
#include "retriever/state.hpp"

namespace pe {

namespace {

using detail::kernels::KernelSet;

constexpr int64_t kChunkRows = 128;                   // gallery rows packed at a time, at most ...
constexpr int64_t kChunkBytes = int64_t{512} << 10;   // ... and at most this much: half of L2
constexpr int64_t kStripRows = 64;                    // gallery rows per streaming step
constexpr int64_t kMaxBatch = 4096;                   // queries packed at a time
constexpr int64_t kHeapBudget = int64_t{256} << 20;   // bytes of heaps per batch, all threads

// What one search call needs, shared read-only by its worker threads.
struct Request {
  const float* queries = nullptr;
  int64_t num_queries = 0;
  int64_t k = 0;
  int64_t capacity = 0;                  // heap size per query: min(k, size)
  const float* inverse_norms = nullptr;  // cosine: per query
  const int64_t* excluded = nullptr;     // per query: row to skip or -1
  const char* allowed = nullptr;         // per row: 1 = may be returned
  const SearchOptions* options = nullptr;
};

// Stops all workers once the interrupt callback (polled by the calling
// thread only, where the bindings may take the GIL; at most every 100 ms)
// asks for it.
class StopFlag {
 public:
  explicit StopFlag(const SearchOptions& options) : options_(options), caller_(std::this_thread::get_id()) {}
  bool poll() {
    if (options_.interrupt && std::this_thread::get_id() == caller_) {
      const auto now = std::chrono::steady_clock::now();
      if (now - last_ >= std::chrono::milliseconds(100)) {
        last_ = now;
        if (options_.interrupt()) stop_.store(true, std::memory_order_relaxed);
      }
    }
    return stop_.load(std::memory_order_relaxed);
  }
  bool stopped() const { return stop_.load(std::memory_order_relaxed); }

 private:
  const SearchOptions& options_;
  std::thread::id caller_;
  std::chrono::steady_clock::time_point last_{};  // the first poll asks at once
  std::atomic<bool> stop_{false};
};

// Offers a candidate that passed the vector threshold test.
void offer(detail::TopK& top, const Request& request, int64_t batch_start, int64_t q, float score, int64_t row) {
  if (request.excluded && request.excluded[batch_start + q] == row) return;
  if (request.allowed && !request.allowed[row]) return;
  top.push(q, score, row);
}

void pack_gallery(const KernelSet& kernels, const float* rows, int64_t count, int64_t dim, float* out) {
  kernels.pack_gallery_f32(rows, count, dim, out);
}
void pack_gallery(const KernelSet& kernels, const uint16_t* rows, int64_t count, int64_t dim, float* out) {
  kernels.pack_gallery_f16(rows, count, dim, out);
}
void score_strip(const KernelSet& kernels, const float* rows, int64_t count, int64_t dim, const float* queries,
                 int64_t nq, float* out) {
  kernels.score_strip_f32(rows, count, dim, queries, nq, dim, out);
}
void score_strip(const KernelSet& kernels, const uint16_t* rows, int64_t count, int64_t dim, const float* queries,
                 int64_t nq, float* out) {
  kernels.score_strip_f16(rows, count, dim, queries, nq, dim, out);
}

// GEMM path: gallery rows [begin, end) against `count` packed queries.
template <class G>
void scan_blocked(const KernelSet& kernels, const G* gallery, int64_t dim, int64_t begin, int64_t end,
                  const float* packed_queries, int64_t count, const Request& request, int64_t batch_start,
                  detail::TopK& top, StopFlag& stop) {
  const int64_t mr = kernels.mr;
  const int64_t nr = kernels.nr;
  const int64_t panels = (count + mr - 1) / mr;
  // The packed chunk is re-read once per query panel, so it must stay in L2.
  const int64_t chunk_rows = std::max<int64_t>(nr, std::min(kChunkRows, kChunkBytes / (dim * 4)) / nr * nr);
  detail::AlignedBuffer packed_buffer(static_cast<size_t>(chunk_rows * dim) * sizeof(float));
  auto* packed = static_cast<float*>(packed_buffer.data());
  alignas(64) float tile[detail::kernels::kMaxMr * detail::kernels::kMaxNr];
  uint32_t masks[detail::kernels::kMaxMr];
  for (int64_t chunk = begin; chunk < end; chunk += chunk_rows) {
    if (stop.poll()) return;
    const int64_t rows = std::min(chunk_rows, end - chunk);
    const int64_t row_panels = (rows + nr - 1) / nr;
    for (int64_t g = 0; g < row_panels; ++g) {
      pack_gallery(kernels, gallery + (chunk + g * nr) * dim, std::min<int64_t>(nr, rows - g * nr), dim,
                   packed + g * nr * dim);
    }
    for (int64_t p = 0; p < panels; ++p) {
      const float* a = packed_queries + p * mr * dim;
      for (int64_t g = 0; g < row_panels; ++g) {
        const uint32_t valid = detail::kernels::low_lanes(std::min<int64_t>(nr, rows - g * nr));
        if (!kernels.tile(a, packed + g * nr * dim, dim, top.thresholds() + p * mr, valid, tile, masks)) continue;
        for (int64_t i = 0; i < mr; ++i) {
          for (uint32_t mask = masks[i]; mask != 0; mask &= mask - 1) {
            const int j = __builtin_ctz(mask);
            offer(top, request, batch_start, p * mr + i, tile[i * nr + j], chunk + g * nr + j);
          }
        }
      }
    }
  }
}

// Few-queries path: one pass over gallery rows [begin, end).
template <class G>
void scan_streaming(const KernelSet& kernels, const G* gallery, int64_t dim, int64_t begin, int64_t end,
                    const float* queries, int64_t count, const Request& request, int64_t batch_start,
                    detail::TopK& top, StopFlag& stop) {
  std::vector<float> strip_scores(static_cast<size_t>(count * kStripRows));
  int64_t steps = 0;
  for (int64_t strip = begin; strip < end; strip += kStripRows) {
    if ((steps++ & 63) == 0 && stop.poll()) return;
    const int64_t rows = std::min(kStripRows, end - strip);
    score_strip(kernels, gallery + strip * dim, rows, dim, queries, count, strip_scores.data());
    for (int64_t q = 0; q < count; ++q) {
      const float* s = strip_scores.data() + q * rows;
      float threshold = top.threshold(q);
      for (int64_t r = 0; r < rows; ++r) {
        if (s[r] >= threshold) {
          offer(top, request, batch_start, q, s[r], strip + r);
          threshold = top.threshold(q);
        }
      }
    }
  }
}

template <class G>
void run_search(const KernelSet& kernels, const Retriever::State& state, const G* gallery, const Request& request,
                float* out_scores, int64_t* out_ids) {
  const SearchOptions& options = *request.options;
  const int64_t dim = state.dim;
  const int64_t size = state.size;
  const int64_t nq = request.num_queries;
  const bool few = nq <= std::min(Retriever::kFewQueries, std::max<int64_t>(4, Retriever::kFewQueryBytes / (dim * 4)));
  // Threads: each gets at least ~4M multiply-adds (starting one costs tens of
  // microseconds) and at least 64 gallery rows.
  const int64_t work_rows = std::max<int64_t>(64, (int64_t{1} << 22) / (dim * std::min<int64_t>(nq, 64)));
  const int64_t threads =
      std::max<int64_t>(1, std::min<int64_t>(detail::resolve_threads(options.threads), size / work_rows));
  // Query batches bound the heaps' memory (threads x batch x capacity).
  const int64_t per_query = threads * request.capacity * static_cast<int64_t>(sizeof(float) + sizeof(int64_t));
  int64_t batch = std::min<int64_t>(nq, few ? nq : kMaxBatch);
  batch = std::max<int64_t>(1, std::min<int64_t>(batch, kHeapBudget / std::max<int64_t>(1, per_query)));

  StopFlag stop(options);
  std::vector<float> normalised;         // few-queries path under cosine
  detail::AlignedBuffer packed_queries;  // GEMM path
  std::vector<detail::TopK> parts;
  for (int64_t start = 0; start < nq; start += batch) {
    const int64_t count = std::min(batch, nq - start);
    const float* queries = request.queries + start * dim;
    if (few) {
      if (request.inverse_norms) {
        normalised.resize(static_cast<size_t>(count * dim));
        for (int64_t q = 0; q < count; ++q) {
          for (int64_t c = 0; c < dim; ++c) {
            normalised[static_cast<size_t>(q * dim + c)] = queries[q * dim + c] * request.inverse_norms[start + q];
          }
        }
        queries = normalised.data();
      }
    } else {
      const int64_t panels = (count + kernels.mr - 1) / kernels.mr;
      packed_queries = detail::AlignedBuffer(static_cast<size_t>(panels * kernels.mr * dim) * sizeof(float));
      detail::kernels::pack_query_panels(kernels.mr, queries, count, dim, dim,
                                         request.inverse_norms ? request.inverse_norms + start : nullptr,
                                         static_cast<float*>(packed_queries.data()));
    }
    const int64_t padded = (count + kernels.mr - 1) / kernels.mr * kernels.mr;
    parts.clear();
    for (int64_t t = 0; t < threads; ++t) parts.emplace_back(count, request.capacity, padded);

    detail::parallel_for(threads, static_cast<int>(threads), 1, [&](int64_t first, int64_t last) {
      for (int64_t t = first; t < last; ++t) {
        const int64_t begin = size * t / threads;
        const int64_t end = size * (t + 1) / threads;
        if (few) {
          scan_streaming(kernels, gallery, dim, begin, end, queries, count, request, start,
                         parts[static_cast<size_t>(t)], stop);
        } else {
          scan_blocked(kernels, gallery, dim, begin, end, static_cast<const float*>(packed_queries.data()), count,
                       request, start, parts[static_cast<size_t>(t)], stop);
        }
      }
    });
    if (stop.stopped()) throw SearchInterrupted();

    // Merge per query; parallel because k x threads entries per query add up
    // for large batches.
    const int64_t k = request.k;
    const int merge_threads = static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(1, count / 256)));
    detail::parallel_for(count, merge_threads, 256, [&](int64_t first, int64_t last) {
      std::vector<std::pair<float, int64_t>> scratch;
      for (int64_t q = first; q < last; ++q) {
        float* row_scores = out_scores + (start + q) * k;
        int64_t* row_ids = out_ids + (start + q) * k;
        detail::merge_top_k(parts, q, k, row_scores, row_ids, scratch);
        for (int64_t i = 0; i < k; ++i) {
          if (row_ids[i] >= 0) row_ids[i] = state.ids[static_cast<size_t>(row_ids[i])];
        }
      }
    });
  }
}

}  // namespace

void Retriever::search(const float* queries, int64_t num_queries, int64_t k, float* scores, int64_t* ids,
                       const SearchOptions& options) const {
  const State& s = detail::retriever::live(state_);
  detail::retriever::check_k(k);
  if (num_queries < 0) throw InvalidArgumentError("num_queries must be >= 0, got " + std::to_string(num_queries));
  if (num_queries == 0) return;
  if (queries == nullptr) throw InvalidArgumentError("search: queries is null");
  if (scores == nullptr || ids == nullptr) throw InvalidArgumentError("search: the scores/ids outputs are null");
  if (options.threads < 0) {
    throw InvalidArgumentError("threads must be >= 0 (0 = every core), got " + std::to_string(options.threads));
  }
  if (options.exclude_self && options.exclude_ids) {
    throw InvalidArgumentError("search: pass exclude_self or exclude_ids, not both");
  }
  if (options.allowed_ids == nullptr && options.num_allowed_ids != 0) {
    throw InvalidArgumentError("search: num_allowed_ids is " + std::to_string(options.num_allowed_ids) +
                               " but allowed_ids is null");
  }
  detail::retriever::check_finite(queries, num_queries, s.dim, s.dim, "queries");
  std::vector<float> inverse_norms;
  if (s.metric == Metric::cosine) inverse_norms = detail::retriever::inverse_l2_norms(queries, num_queries, s.dim, "queries");

  std::shared_lock lock(s.mutex);
  if (options.exclude_self && num_queries != s.size) {
    throw InvalidArgumentError("exclude_self needs the queries to be the gallery, row for row: got " +
                               std::to_string(num_queries) + " queries for a gallery of " + std::to_string(s.size) +
                               "; use exclude_ids to skip a given id per query");
  }
  Request request;
  request.queries = queries;
  request.num_queries = num_queries;
  request.k = k;
  request.capacity = std::min<int64_t>(k, s.size);
  request.inverse_norms = inverse_norms.empty() ? nullptr : inverse_norms.data();
  request.options = &options;
  std::vector<int64_t> excluded;
  if (options.exclude_self || options.exclude_ids) {
    excluded.resize(static_cast<size_t>(num_queries));
    for (int64_t q = 0; q < num_queries; ++q) {
      if (options.exclude_self) {
        excluded[static_cast<size_t>(q)] = q;
      } else {
        const auto found = s.rows_by_id.find(options.exclude_ids[q]);
        excluded[static_cast<size_t>(q)] = found == s.rows_by_id.end() ? -1 : found->second;
      }
    }
    request.excluded = excluded.data();
  }
  std::vector<char> allowed;
  if (options.allowed_ids) {
    allowed.assign(static_cast<size_t>(s.size), 0);
    for (int64_t i = 0; i < options.num_allowed_ids; ++i) {
      const auto found = s.rows_by_id.find(options.allowed_ids[i]);
      if (found != s.rows_by_id.end()) allowed[static_cast<size_t>(found->second)] = 1;
    }
    request.allowed = allowed.data();
  }
  if (s.size == 0) {
    for (int64_t i = 0; i < num_queries * k; ++i) {
      scores[i] = -std::numeric_limits<float>::infinity();
      ids[i] = -1;
    }
    return;
  }
  const KernelSet& kernels = detail::kernels::kernels_for(detail::kernels::resolve_simd(options.simd));
  if (s.storage == Storage::float16) {
    run_search(kernels, s, static_cast<const uint16_t*>(s.vectors), request, scores, ids);
  } else {
    run_search(kernels, s, static_cast<const float*>(s.vectors), request, scores, ids);
  }
}

Retriever::SearchResult Retriever::search(const Eigen::Ref<const Matrix>& queries, int64_t k,
                                          const SearchOptions& options) const {
  const int64_t dim = this->dim();
  if (queries.cols() != dim) {
    throw InvalidArgumentError("search: queries has " + std::to_string(queries.cols()) +
                               " columns but the retriever's dim is " + std::to_string(dim));
  }
  detail::retriever::check_k(k);
  SearchResult result;
  result.scores.resize(queries.rows(), k);
  result.ids.resize(queries.rows(), k);
  if (queries.outerStride() == dim || queries.rows() <= 1) {
    search(queries.data(), queries.rows(), k, result.scores.data(), result.ids.data(), options);
  } else {
    const Matrix contiguous = queries;
    search(contiguous.data(), contiguous.rows(), k, result.scores.data(), result.ids.data(), options);
  }
  return result;
}

double measure_read_bandwidth(const float* data, int64_t n, int threads, int repeats) {
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(detail::resolve_threads(threads), n / 4096));
  std::vector<float> sink(static_cast<size_t>(workers));
  double best = 0;
  const KernelSet& kernels = detail::kernels::kernels_for(detail::kernels::supported_simd());
  for (int rep = 0; rep < std::max(1, repeats); ++rep) {
    const auto start = std::chrono::steady_clock::now();
    detail::parallel_for(workers, static_cast<int>(workers), 1, [&](int64_t first, int64_t last) {
      for (int64_t t = first; t < last; ++t) {
        const int64_t begin = n * t / workers;
        const int64_t end = n * (t + 1) / workers;
        sink[static_cast<size_t>(t)] = kernels.read_sum(data + begin, end - begin);
      }
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, static_cast<double>(n) * sizeof(float) / seconds);
  }
  volatile float keep = sink[0];
  (void)keep;
  return best;
}

}  // namespace pe
