#pragma once
// pe::Retriever — exact top-k search over an embedding gallery.
//
// The gallery is a row-major N x D matrix (float32, or float16 to halve memory
// and scan time) with one unique int64 id per row and, optionally, one metadata
// string per row (e.g. the image path). Rows keep insertion order; remove()
// closes the gaps without reordering, so "row" below is a stable notion between
// mutations. Metric::cosine L2-normalises every added vector and every query;
// Metric::inner_product uses them as given. The metric is stored with the index.
//
// search(queries, k) returns, per query, the k best rows as (score, id): higher
// score first, equal scores by lower row first. When fewer than k rows qualify
// (k > size, exclusions, a filter) the rest of the row is padded with id -1 and
// score -inf; that is never an error.
//
// How search works (details in pe/detail/retriever_kernels.hpp):
//   * more than kFewQueries (48) queries: blocked GEMM. Queries are packed into
//     MR-row panels once per batch; each thread takes a contiguous slice of the
//     gallery, packs up to 128 rows at a time (an L2-sized chunk) into NR-row
//     panels and runs the MR x NR micro-kernel over the full depth D. The
//     kernel compares the finished tile with each query's current k-th best
//     score while it is still in registers, so the heaps are only touched for
//     the rare scores that beat it.
//   * up to kFewQueries queries: the gallery is streamed once, each thread over
//     its slice, at memory bandwidth, with the queries resident in cache.
//   Both end with a merge of the per-thread heaps. Threads are std::threads
//   (pe::detail::parallel_for): no OpenMP runtime beside LibTorch's.
//
// Thread safety: concurrent const calls (search, save, size, ...) are safe
// with each other. add, remove and reserve take exclusive access: they wait
// for running searches, and searches that start after them wait until they
// are done (an internal writer-priority shared mutex, so writers are not
// starved by a steady stream of searches); calling them from several threads
// is safe. gallery() returns a view that is only valid while nothing mutates
// the retriever. Moving a retriever while another thread uses it is not safe.
//
// Errors: std::invalid_argument for bad arguments (naming the argument, the
// value seen and the fix), std::runtime_error for files. A failed add, remove
// or load leaves the retriever unchanged; a failed save leaves the file on disk
// unchanged (see pe/detail/index_file.hpp for the file format).

#include <Eigen/Core>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <shared_mutex>  // std::shared_lock
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pe/detail/file_io.hpp"
#include "pe/detail/index_file.hpp"
#include "pe/detail/npy.hpp"
#include "pe/detail/parallel.hpp"
#include "pe/detail/retriever_kernels.hpp"
#include "pe/detail/topk.hpp"
#include "pe/detail/writer_priority_mutex.hpp"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pe::Retriever's index files are little-endian; big-endian hosts are not supported"
#endif

namespace pe {

/// How rows are compared with queries; stored with the index.
enum class Metric {
  inner_product,  ///< score = <query, row>, vectors used as given ("ip")
  cosine,         ///< vectors and queries L2-normalised first; score in [-1, 1]
};

inline const char* name(Metric metric) { return metric == Metric::cosine ? "cosine" : "ip"; }

/// "cosine", "ip" or "inner_product".
inline Metric parse_metric(std::string_view text) {
  if (text == "cosine") return Metric::cosine;
  if (text == "ip" || text == "inner_product") return Metric::inner_product;
  throw std::invalid_argument("metric: unknown value '" + std::string(text) +
                              "'; use \"cosine\" (L2-normalise vectors and queries) or \"ip\" (raw inner product)");
}

/// Element type the gallery is stored in. Queries are always float32 and
/// scores are accumulated in float32.
enum class Storage {
  float32,
  float16,  ///< IEEE binary16: half the memory and scan time; |values| <= 65504
};

inline const char* name(Storage storage) { return storage == Storage::float16 ? "float16" : "float32"; }

inline Storage parse_storage(std::string_view text) {
  if (text == "float32") return Storage::float32;
  if (text == "float16") return Storage::float16;
  throw std::invalid_argument("dtype: unknown value '" + std::string(text) +
                              "'; use \"float32\" or \"float16\" (half the memory, scores within ~1e-3)");
}

struct SearchOptions {
  /// Query i skips gallery row i: for searching the gallery with itself.
  /// Needs exactly size() queries.
  bool exclude_self = false;
  /// Optional: one id per query; query i skips the row with id exclude_ids[i]
  /// (an id that is not in the gallery excludes nothing). num_queries entries.
  const int64_t* exclude_ids = nullptr;
  /// Optional filter: only rows whose id is among these `num_allowed_ids` ids
  /// are returned. Ids not in the gallery are ignored. Null = no filter.
  const int64_t* allowed_ids = nullptr;
  int64_t num_allowed_ids = 0;
  /// Worker threads; 0 = every hardware thread.
  int threads = 0;
  /// Instruction set for the kernels (testing, benchmarks); best = fastest.
  Simd simd = Simd::best;
  /// Called from the calling thread about every 100 ms while searching; return
  /// true to stop: search then throws pe::SearchInterrupted. Lets bindings
  /// honour Ctrl-C during long searches.
  std::function<bool()> interrupt;
};

/// Thrown when SearchOptions::interrupt asked to stop; outputs are unspecified.
class SearchInterrupted : public std::runtime_error {
 public:
  SearchInterrupted() : std::runtime_error("search interrupted") {}
};

class Retriever {
 public:
  using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using IdMatrix = Eigen::Matrix<int64_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  struct SearchResult {
    Matrix scores;  ///< num_queries x k, best first; -inf pads
    IdMatrix ids;   ///< num_queries x k user ids; -1 pads
  };

  /// At most this many queries (and at most kFewQueryBytes of them) take the
  /// streaming path: one pass over the gallery with all queries in L2. More
  /// take the blocked GEMM path, whose gallery packing only pays off once
  /// enough query panels share it. Measured crossover at D = 1024 on the
  /// reference machine: ~56 queries.
  static constexpr int64_t kFewQueries = 48;
  static constexpr int64_t kFewQueryBytes = int64_t{256} << 10;

  /// An empty gallery of `dim`-dimensional vectors.
  explicit Retriever(int64_t dim, Metric metric = Metric::cosine, Storage storage = Storage::float32)
      : dim_(dim), metric_(metric), storage_(storage) {
    if (dim <= 0) {
      throw std::invalid_argument("dim must be >= 1, got " + std::to_string(dim) +
                                  "; pass the embedding size (e.g. 1024 for PE-Core L)");
    }
  }

  Retriever(Retriever&& other) noexcept { move_from(other); }
  Retriever& operator=(Retriever&& other) noexcept {
    if (this != &other) move_from(other);
    return *this;
  }
  Retriever(const Retriever&) = delete;
  Retriever& operator=(const Retriever&) = delete;

  int64_t dim() const { return dim_; }
  Metric metric() const { return metric_; }
  Storage storage() const { return storage_; }
  int64_t size() const {
    std::shared_lock lock(mutex_);
    return size_;
  }
  /// True when the vectors are a read-only view of a file (load with mmap);
  /// the first add/remove copies them into memory.
  bool is_mapped() const {
    std::shared_lock lock(mutex_);
    return mapping_ != nullptr;
  }
  /// Makes room for `rows` rows in total, so adds up to that size do not
  /// reallocate (and the gallery never needs twice its memory while growing).
  void reserve(int64_t rows) {
    if (rows < 0) throw std::invalid_argument("reserve: rows must be >= 0, got " + std::to_string(rows));
    std::unique_lock lock(mutex_);
    if (rows <= capacity_ && !mapping_) return;
    detail::AlignedBuffer grown = copy_rows(std::max(rows, size_));
    ids_.reserve(static_cast<size_t>(rows));
    rows_by_id_.reserve(static_cast<size_t>(rows));
    adopt(std::move(grown), std::max(rows, size_));
  }

  /// Appends `n` rows (row-major n x dim floats, contiguous) with their ids and,
  /// optionally, `n` metadata strings. Throws std::invalid_argument — and adds
  /// nothing — on a NaN/Inf value, a zero vector under cosine, a value float16
  /// storage cannot hold, an id already present or repeated in `ids`.
  void add(const float* vectors, int64_t n, const int64_t* ids, const std::string* metadata = nullptr) {
    if (n < 0) throw std::invalid_argument("add: n must be >= 0, got " + std::to_string(n));
    if (n == 0) return;
    if (vectors == nullptr) throw std::invalid_argument("add: vectors is null");
    if (ids == nullptr) throw std::invalid_argument("add: ids is null");
    check_finite(vectors, n, dim_, dim_, "vectors");
    std::vector<float> inverse_norms;
    if (metric_ == Metric::cosine) inverse_norms = inverse_l2_norms(vectors, n, dim_, "vectors");
    if (storage_ == Storage::float16) check_half_range(vectors, n, inverse_norms);
    check_unique(ids, n, "ids");

    std::unique_lock lock(mutex_);
    for (int64_t i = 0; i < n; ++i) {
      if (rows_by_id_.count(ids[i])) {
        throw std::invalid_argument("add: id " + std::to_string(ids[i]) + " (ids[" + std::to_string(i) +
                                    "]) is already in the gallery; ids must be unique. remove() it first "
                                    "to replace its vector");
      }
    }
    const int64_t new_size = size_ + n;
    // Everything that can throw happens before the first visible change.
    detail::AlignedBuffer grown;
    int64_t grown_capacity = capacity_;
    if (new_size > capacity_ || mapping_) {
      grown_capacity = std::max(new_size, capacity_ + capacity_ / 2);
      grown = copy_rows(grown_capacity);
    }
    grow(ids_, new_size);
    const bool keep_metadata = metadata != nullptr || !metadata_.empty();
    std::vector<std::string> new_metadata;
    if (keep_metadata) {
      grow(metadata_, new_size);
      new_metadata.resize(static_cast<size_t>(n));
      if (metadata) {
        for (int64_t i = 0; i < n; ++i) new_metadata[static_cast<size_t>(i)] = metadata[i];
      }
    }
    // reserve() only when the table must grow, and geometrically: libstdc++
    // may otherwise rehash (even shrink) on every call, making adds O(N).
    if (static_cast<float>(new_size) > static_cast<float>(rows_by_id_.bucket_count()) * rows_by_id_.max_load_factor()) {
      rows_by_id_.reserve(static_cast<size_t>(std::max(new_size, 2 * size_)));
    }
    void* destination = grown.data() ? grown.data() : owned_.data();
    write_rows(vectors, n, inverse_norms, destination, size_);
    int64_t inserted = 0;
    try {
      for (; inserted < n; ++inserted) rows_by_id_.emplace(ids[inserted], size_ + inserted);
    } catch (...) {
      for (int64_t i = 0; i < inserted; ++i) rows_by_id_.erase(ids[i]);
      throw;
    }
    // Commit: nothing below allocates.
    if (grown.data()) adopt(std::move(grown), grown_capacity);
    ids_.insert(ids_.end(), ids, ids + n);
    if (keep_metadata) {
      metadata_.resize(static_cast<size_t>(size_));
      for (auto& item : new_metadata) metadata_.push_back(std::move(item));
    }
    size_ = new_size;
  }

  /// Eigen overload: `vectors` is n x dim, `ids` n entries, `metadata` empty or n.
  void add(const Eigen::Ref<const Matrix>& vectors, const std::vector<int64_t>& ids,
           const std::vector<std::string>& metadata = {}) {
    if (vectors.cols() != dim_) {
      throw std::invalid_argument("add: vectors has " + std::to_string(vectors.cols()) +
                                  " columns but the retriever's dim is " + std::to_string(dim_));
    }
    if (static_cast<int64_t>(ids.size()) != vectors.rows()) {
      throw std::invalid_argument("add: " + std::to_string(ids.size()) + " ids for " +
                                  std::to_string(vectors.rows()) + " vectors; pass one id per row");
    }
    if (!metadata.empty() && metadata.size() != ids.size()) {
      throw std::invalid_argument("add: " + std::to_string(metadata.size()) + " metadata strings for " +
                                  std::to_string(ids.size()) + " vectors; pass one per row or none");
    }
    if (vectors.rows() == 0) return;
    if (vectors.outerStride() == dim_) {
      add(vectors.data(), vectors.rows(), ids.data(), metadata.empty() ? nullptr : metadata.data());
    } else {
      const Matrix contiguous = vectors;
      add(contiguous.data(), contiguous.rows(), ids.data(), metadata.empty() ? nullptr : metadata.data());
    }
  }

  /// Removes the rows with these ids; the other rows keep their order. Throws
  /// std::invalid_argument — and removes nothing — if an id is not in the
  /// gallery or is listed twice.
  void remove(const int64_t* ids, int64_t n) {
    if (n < 0) throw std::invalid_argument("remove: n must be >= 0, got " + std::to_string(n));
    if (n == 0) return;
    if (ids == nullptr) throw std::invalid_argument("remove: ids is null");
    check_unique(ids, n, "ids");
    std::unique_lock lock(mutex_);
    std::vector<char> removed(static_cast<size_t>(size_), 0);
    int64_t missing = 0;
    int64_t first_missing = 0;
    for (int64_t i = 0; i < n; ++i) {
      const auto found = rows_by_id_.find(ids[i]);
      if (found == rows_by_id_.end()) {
        if (missing++ == 0) first_missing = i;
        continue;
      }
      removed[static_cast<size_t>(found->second)] = 1;
    }
    if (missing > 0) {
      throw std::invalid_argument("remove: id " + std::to_string(ids[first_missing]) + " (ids[" +
                                  std::to_string(first_missing) + "]) is not in the gallery" +
                                  (missing > 1 ? " (" + std::to_string(missing) + " ids are unknown)" : "") +
                                  "; nothing was removed");
    }
    // A mapped gallery is read-only: compact into a new owned buffer instead.
    const bool copy_out = mapping_ != nullptr;
    detail::AlignedBuffer own;
    if (copy_out) own = detail::AlignedBuffer(static_cast<size_t>(size_ - n) * row_bytes());
    // Commit: compaction moves bytes and existing strings; nothing allocates.
    const auto* source = static_cast<const unsigned char*>(vectors_);
    auto* target = static_cast<unsigned char*>(copy_out ? own.data() : owned_.data());
    const size_t row = row_bytes();
    int64_t kept = 0;
    for (int64_t r = 0; r < size_; ++r) {
      const auto from = static_cast<size_t>(r);
      if (removed[from]) {
        rows_by_id_.erase(ids_[from]);
        continue;
      }
      const auto to = static_cast<size_t>(kept);
      if (copy_out || kept != r) std::memmove(target + to * row, source + from * row, row);
      if (kept != r) {
        ids_[to] = ids_[from];
        rows_by_id_.find(ids_[to])->second = kept;
        if (!metadata_.empty()) metadata_[to] = std::move(metadata_[from]);
      }
      ++kept;
    }
    ids_.resize(static_cast<size_t>(kept));
    if (!metadata_.empty()) metadata_.resize(static_cast<size_t>(kept));
    if (copy_out) adopt(std::move(own), kept);
    size_ = kept;
  }

  void remove(const std::vector<int64_t>& ids) { remove(ids.data(), static_cast<int64_t>(ids.size())); }

  bool contains(int64_t id) const {
    std::shared_lock lock(mutex_);
    return rows_by_id_.count(id) != 0;
  }

  /// Exact top-k. `queries` is num_queries x dim float32, row-major and
  /// contiguous (used in place; copied only when the metric is cosine).
  /// `scores` (float32) and `ids` (int64) are caller-owned, num_queries x k.
  /// Throws std::invalid_argument for k <= 0, NaN/Inf in queries, a zero query
  /// under cosine, or inconsistent options; never for k > size().
  void search(const float* queries, int64_t num_queries, int64_t k, float* scores, int64_t* ids,
              const SearchOptions& options = {}) const {
    check_k(k);
    if (num_queries < 0) throw std::invalid_argument("num_queries must be >= 0, got " + std::to_string(num_queries));
    if (num_queries == 0) return;
    if (queries == nullptr) throw std::invalid_argument("search: queries is null");
    if (scores == nullptr || ids == nullptr) throw std::invalid_argument("search: the scores/ids outputs are null");
    if (options.threads < 0) {
      throw std::invalid_argument("threads must be >= 0 (0 = every core), got " + std::to_string(options.threads));
    }
    if (options.exclude_self && options.exclude_ids) {
      throw std::invalid_argument("search: pass exclude_self or exclude_ids, not both");
    }
    if (options.allowed_ids == nullptr && options.num_allowed_ids != 0) {
      throw std::invalid_argument("search: num_allowed_ids is " + std::to_string(options.num_allowed_ids) +
                                  " but allowed_ids is null");
    }
    check_finite(queries, num_queries, dim_, dim_, "queries");
    std::vector<float> inverse_norms;
    if (metric_ == Metric::cosine) inverse_norms = inverse_l2_norms(queries, num_queries, dim_, "queries");

    std::shared_lock lock(mutex_);
    if (options.exclude_self && num_queries != size_) {
      throw std::invalid_argument("exclude_self needs the queries to be the gallery, row for row: got " +
                                  std::to_string(num_queries) + " queries for a gallery of " +
                                  std::to_string(size_) + "; use exclude_ids to skip a given id per query");
    }
    Request request;
    request.queries = queries;
    request.num_queries = num_queries;
    request.k = k;
    request.capacity = std::min<int64_t>(k, size_);
    request.inverse_norms = inverse_norms.empty() ? nullptr : inverse_norms.data();
    request.options = &options;
    std::vector<int64_t> excluded;
    if (options.exclude_self || options.exclude_ids) {
      excluded.resize(static_cast<size_t>(num_queries));
      for (int64_t q = 0; q < num_queries; ++q) {
        if (options.exclude_self) {
          excluded[static_cast<size_t>(q)] = q;
        } else {
          const auto found = rows_by_id_.find(options.exclude_ids[q]);
          excluded[static_cast<size_t>(q)] = found == rows_by_id_.end() ? -1 : found->second;
        }
      }
      request.excluded = excluded.data();
    }
    std::vector<char> allowed;
    if (options.allowed_ids) {
      allowed.assign(static_cast<size_t>(size_), 0);
      for (int64_t i = 0; i < options.num_allowed_ids; ++i) {
        const auto found = rows_by_id_.find(options.allowed_ids[i]);
        if (found != rows_by_id_.end()) allowed[static_cast<size_t>(found->second)] = 1;
      }
      request.allowed = allowed.data();
    }
    if (size_ == 0) {
      for (int64_t i = 0; i < num_queries * k; ++i) {
        scores[i] = -std::numeric_limits<float>::infinity();
        ids[i] = -1;
      }
      return;
    }
    const Simd simd = detail::retriever::resolve_simd(options.simd);
    detail::retriever::with_kernel(simd, [&](auto kernel) {
      if (storage_ == Storage::float16) {
        run_search(kernel, static_cast<const uint16_t*>(vectors_), request, scores, ids);
      } else {
        run_search(kernel, static_cast<const float*>(vectors_), request, scores, ids);
      }
    });
  }

  /// Eigen overload: queries is num_queries x dim (any row stride).
  SearchResult search(const Eigen::Ref<const Matrix>& queries, int64_t k, const SearchOptions& options = {}) const {
    if (queries.cols() != dim_) {
      throw std::invalid_argument("search: queries has " + std::to_string(queries.cols()) +
                                  " columns but the retriever's dim is " + std::to_string(dim_));
    }
    check_k(k);
    SearchResult result;
    result.scores.resize(queries.rows(), k);
    result.ids.resize(queries.rows(), k);
    if (queries.outerStride() == dim_ || queries.rows() <= 1) {
      search(queries.data(), queries.rows(), k, result.scores.data(), result.ids.data(), options);
    } else {
      const Matrix contiguous = queries;
      search(contiguous.data(), contiguous.rows(), k, result.scores.data(), result.ids.data(), options);
    }
    return result;
  }

  /// Ids in row order (a copy).
  std::vector<int64_t> ids() const {
    std::shared_lock lock(mutex_);
    return ids_;
  }

  /// The gallery as float32 (a copy; normalised rows under cosine).
  Matrix vectors() const {
    std::shared_lock lock(mutex_);
    Matrix out(size_, dim_);
    if (storage_ == Storage::float32) {
      if (size_ > 0) std::memcpy(out.data(), vectors_, static_cast<size_t>(size_) * row_bytes());
    } else {
      const auto* half = static_cast<const uint16_t*>(vectors_);
      for (int64_t i = 0; i < size_ * dim_; ++i) out.data()[i] = detail::retriever::half_to_float(half[i]);
    }
    return out;
  }

  /// Zero-copy view of a float32 gallery, valid until the next add/remove/
  /// reserve or move. Throws for float16 storage (use vectors()).
  Eigen::Map<const Matrix> gallery() const {
    std::shared_lock lock(mutex_);
    if (storage_ != Storage::float32) {
      throw std::invalid_argument("gallery(): this retriever stores float16; use vectors() for a float32 copy");
    }
    return Eigen::Map<const Matrix>(static_cast<const float*>(vectors_), size_, dim_);
  }

  /// The metadata string of `id` ("" when none was given).
  std::string metadata(int64_t id) const {
    std::shared_lock lock(mutex_);
    const auto found = rows_by_id_.find(id);
    if (found == rows_by_id_.end()) {
      throw std::invalid_argument("metadata: id " + std::to_string(id) + " is not in the gallery");
    }
    return metadata_.empty() ? std::string() : metadata_[static_cast<size_t>(found->second)];
  }

  bool has_metadata() const {
    std::shared_lock lock(mutex_);
    return !metadata_.empty();
  }

  // -------------------------------------------------------------------------
  // Persistence (format: pe/detail/index_file.hpp)

  /// Writes the index to `path` atomically (temporary file, fsync, rename).
  void save(const std::string& path) const {
    std::shared_lock lock(mutex_);
    const auto contents = file_contents();
    detail::write_file_atomically(path, [&](detail::ByteSink& sink) { detail::index_file::write(sink, contents); });
  }

  /// The saved file's bytes (for pickling and transport).
  std::string to_bytes() const {
    std::shared_lock lock(mutex_);
    detail::StringSink sink;
    detail::index_file::write(sink, file_contents());
    return std::move(sink.bytes);
  }

  /// Reads an index written by save(). With mmap the vectors stay in the file's
  /// read-only mapping (no copy; pages load on first use) until the first
  /// add/remove copies them. The whole file is checksummed either way.
  static Retriever load(const std::string& path, bool mmap = false) {
    if (mmap) {
      auto mapping = std::make_shared<detail::MappedFile>(path);
      detail::MemorySource source(mapping->data(), mapping->size(), path);
      return from_loaded(detail::index_file::read(source, true, path), std::move(mapping), path);
    }
    detail::FileSource source(path);
    return from_loaded(detail::index_file::read(source, false, path), nullptr, path);
  }

  static Retriever from_bytes(const void* data, size_t size) {
    detail::MemorySource source(static_cast<const uint8_t*>(data), size, "serialised retriever");
    return from_loaded(detail::index_file::read(source, false, "serialised retriever"), nullptr,
                       "serialised retriever");
  }

  /// Writes the vectors as float32 (N, D) and the ids as int64 (N,) .npy files
  /// (np.load / faiss index.add(np.load(...)) read them); each atomically.
  void export_npy(const std::string& vectors_path, const std::string& ids_path) const {
    std::shared_lock lock(mutex_);
    detail::write_file_atomically(vectors_path, [&](detail::ByteSink& sink) {
      detail::npy::write_header(sink, "<f4", {size_, dim_});
      if (storage_ == Storage::float32) {
        sink.write(vectors_, static_cast<size_t>(size_) * row_bytes());
      } else {
        std::vector<float> row(static_cast<size_t>(dim_));
        const auto* half = static_cast<const uint16_t*>(vectors_);
        for (int64_t r = 0; r < size_; ++r) {
          for (int64_t c = 0; c < dim_; ++c) row[static_cast<size_t>(c)] = detail::retriever::half_to_float(half[r * dim_ + c]);
          sink.write(row.data(), row.size() * sizeof(float));
        }
      }
    });
    detail::write_file_atomically(ids_path, [&](detail::ByteSink& sink) {
      detail::npy::write_header(sink, "<i8", {size_});
      sink.write(ids_.data(), ids_.size() * sizeof(int64_t));
    });
  }

  /// Adds the rows of a float32 (N, D) .npy file with the ids of an integer
  /// (N,) .npy file (int64 or int32), e.g. written by np.save. Both are mapped,
  /// not read into a temporary copy.
  void add_npy(const std::string& vectors_path, const std::string& ids_path) {
    const detail::MappedFile vector_file(vectors_path);
    const detail::MappedFile id_file(ids_path);
    const auto vector_header = detail::npy::parse_header(vector_file.data(), vector_file.size(), vectors_path);
    const auto id_header = detail::npy::parse_header(id_file.data(), id_file.size(), ids_path);
    if (vector_header.descr != "<f4") {
      throw std::invalid_argument(vectors_path + " holds dtype '" + vector_header.descr +
                                  "'; save float32 vectors: np.save(path, x.astype(np.float32))");
    }
    if (vector_header.fortran_order || vector_header.shape.size() != 2) {
      throw std::invalid_argument(vectors_path + " must hold a C-order 2-D array (N, D), got shape " +
                                  detail::npy::shape_text(vector_header.shape) +
                                  (vector_header.fortran_order ? " in Fortran order; save np.ascontiguousarray(x)" : ""));
    }
    if (vector_header.shape[1] != dim_) {
      throw std::invalid_argument(vectors_path + " has D = " + std::to_string(vector_header.shape[1]) +
                                  " but the retriever's dim is " + std::to_string(dim_));
    }
    const int64_t n = vector_header.shape[0];
    if (id_header.shape.size() != 1 || id_header.shape[0] != n) {
      throw std::invalid_argument(ids_path + " must hold " + std::to_string(n) + " ids (shape (" +
                                  std::to_string(n) + ",)), got shape " + detail::npy::shape_text(id_header.shape));
    }
    const bool ids64 = id_header.descr == "<i8";
    if (!ids64 && id_header.descr != "<i4") {
      throw std::invalid_argument(ids_path + " holds dtype '" + id_header.descr +
                                  "'; save integer ids: np.save(path, ids.astype(np.int64))");
    }
    // Sizes are compared by division: a header may claim 2^62 rows, whose byte
    // count would wrap around 64 bits and pass a multiplied check.
    const uint64_t vector_data = vector_file.size() - vector_header.data_offset;
    const uint64_t id_data = id_file.size() - id_header.data_offset;
    const auto rows = static_cast<uint64_t>(n), dim = static_cast<uint64_t>(dim_);
    if (rows > 0 && (dim > vector_data / 4 || rows > vector_data / 4 / dim)) {
      throw std::runtime_error(vectors_path + " is truncated: shape " + detail::npy::shape_text(vector_header.shape) +
                               " needs " + std::to_string(n) + " x " + std::to_string(dim_) +
                               " float32 values, the file holds " + std::to_string(vector_data) + " bytes of data");
    }
    if (rows > id_data / (ids64 ? 8 : 4)) {
      throw std::runtime_error(ids_path + " is truncated: shape " + detail::npy::shape_text(id_header.shape) +
                               " needs " + std::to_string(n) + " ids, the file holds " + std::to_string(id_data) +
                               " bytes of data");
    }
    // np.save aligns the data to 64 bytes; a header of another length leaves
    // it misaligned for its type, and then it is copied rather than cast.
    const uint8_t* vector_bytes = vector_file.data() + vector_header.data_offset;
    const auto* vectors = reinterpret_cast<const float*>(vector_bytes);
    std::vector<float> aligned;
    if (reinterpret_cast<uintptr_t>(vector_bytes) % alignof(float) != 0) {
      aligned.resize(static_cast<size_t>(rows * dim));
      if (!aligned.empty()) std::memcpy(aligned.data(), vector_bytes, aligned.size() * sizeof(float));
      vectors = aligned.data();
    }
    const uint8_t* id_bytes = id_file.data() + id_header.data_offset;
    std::vector<int64_t> widened;
    const int64_t* ids = nullptr;
    if (ids64 && reinterpret_cast<uintptr_t>(id_bytes) % alignof(int64_t) == 0) {
      ids = reinterpret_cast<const int64_t*>(id_bytes);
    } else {
      widened.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        if (ids64) {
          std::memcpy(&widened[static_cast<size_t>(i)], id_bytes + 8 * i, 8);
        } else {
          int32_t narrow = 0;
          std::memcpy(&narrow, id_bytes + 4 * i, 4);
          widened[static_cast<size_t>(i)] = narrow;
        }
      }
      ids = widened.data();
    }
    add(vectors, n, ids);
  }

  /// A new retriever holding the rows of two .npy files (see add_npy).
  static Retriever from_npy(const std::string& vectors_path, const std::string& ids_path,
                            Metric metric = Metric::cosine, Storage storage = Storage::float32) {
    int64_t dim = 0;
    {
      const detail::MappedFile file(vectors_path);
      const auto header = detail::npy::parse_header(file.data(), file.size(), vectors_path);
      if (header.shape.size() != 2) {
        throw std::invalid_argument(vectors_path + " must hold a 2-D array (N, D), got shape " +
                                    detail::npy::shape_text(header.shape));
      }
      dim = header.shape[1];
      if (dim <= 0) {
        throw std::invalid_argument(vectors_path + " holds shape " + detail::npy::shape_text(header.shape) +
                                    ": rows of 0 values cannot be searched; save (N, D) embeddings with D >= 1");
      }
    }
    Retriever retriever(dim, metric, storage);
    retriever.add_npy(vectors_path, ids_path);
    return retriever;
  }

  /// The instruction set a request for `simd` runs with on this machine.
  static Simd resolve_simd(Simd simd = Simd::best) { return detail::retriever::resolve_simd(simd); }

 private:
  // What one search call needs, shared read-only by its worker threads.
  struct Request {
    const float* queries = nullptr;
    int64_t num_queries = 0;
    int64_t k = 0;
    int64_t capacity = 0;                 // heap size per query: min(k, size)
    const float* inverse_norms = nullptr; // cosine: per query
    const int64_t* excluded = nullptr;    // per query: row to skip or -1
    const char* allowed = nullptr;        // per row: 1 = may be returned
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

  static constexpr int64_t kChunkRows = 128;  // gallery rows packed at a time, at most ...
  static constexpr int64_t kChunkBytes = int64_t{512} << 10;  // ... and at most this much: half of L2
  static constexpr int64_t kStripRows = 64;   // gallery rows per streaming step
  static constexpr int64_t kMaxBatch = 4096;  // queries packed at a time
  static constexpr int64_t kHeapBudget = int64_t{256} << 20;  // bytes of heaps per batch, all threads

  // Capacity growth for a vector that must not reallocate during commit.
  template <class T>
  static void grow(std::vector<T>& values, int64_t size) {
    if (static_cast<size_t>(size) > values.capacity()) {
      values.reserve(std::max(static_cast<size_t>(size), 2 * values.capacity()));
    }
  }

  size_t row_bytes() const { return static_cast<size_t>(dim_) * (storage_ == Storage::float16 ? 2 : 4); }

  // ---- mutation helpers ---------------------------------------------------

  void move_from(Retriever& other) {
    std::unique_lock lock(other.mutex_);
    dim_ = other.dim_;
    metric_ = other.metric_;
    storage_ = other.storage_;
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
    owned_ = std::move(other.owned_);
    mapping_ = std::move(other.mapping_);
    vectors_ = std::exchange(other.vectors_, nullptr);
    ids_ = std::move(other.ids_);
    rows_by_id_ = std::move(other.rows_by_id_);
    metadata_ = std::move(other.metadata_);
    other.ids_.clear();
    other.rows_by_id_.clear();
    other.metadata_.clear();
  }

  // A new owned buffer of `capacity` rows holding the current rows.
  detail::AlignedBuffer copy_rows(int64_t capacity) const {
    detail::AlignedBuffer buffer(static_cast<size_t>(capacity) * row_bytes());
    if (size_ > 0) std::memcpy(buffer.data(), vectors_, static_cast<size_t>(size_) * row_bytes());
    return buffer;
  }

  void adopt(detail::AlignedBuffer buffer, int64_t capacity) {
    owned_ = std::move(buffer);
    capacity_ = capacity;
    vectors_ = owned_.data();
    mapping_.reset();
  }

  static void check_k(int64_t k) {
    if (k <= 0) {
      throw std::invalid_argument("k must be >= 1, got " + std::to_string(k) +
                                  "; ask for at least one result per query (k larger than the gallery is fine)");
    }
  }

  static void check_finite(const float* values, int64_t rows, int64_t dim, int64_t stride, const char* argument) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = values + r * stride;
      // Exponent all ones = Inf or NaN. Integer OR-reduction vectorises and is
      // immune to -ffast-math.
      uint32_t bad = 0;
      for (int64_t c = 0; c < dim; ++c) {
        uint32_t bits;
        std::memcpy(&bits, row + c, sizeof(bits));
        bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
      }
      if (!bad) continue;
      for (int64_t c = 0; c < dim; ++c) {
        if (!std::isfinite(row[c])) {
          throw std::invalid_argument(std::string(argument) + "[" + std::to_string(r) + ", " + std::to_string(c) +
                                      "] is " + (std::isnan(row[c]) ? "NaN" : "Inf") +
                                      "; check the embeddings (e.g. np.isfinite(x).all()) before adding/searching");
        }
      }
    }
  }

  // 1 / ||row|| per row, accumulated in double so normalised rows are
  // accurate to float rounding whatever D is.
  static std::vector<float> inverse_l2_norms(const float* values, int64_t rows, int64_t dim, const char* argument) {
    std::vector<float> inverse(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = values + r * dim;
      double partial[4] = {0, 0, 0, 0};
      int64_t c = 0;
      for (; c + 4 <= dim; c += 4) {
        for (int l = 0; l < 4; ++l) partial[l] += static_cast<double>(row[c + l]) * row[c + l];
      }
      double sum = (partial[0] + partial[1]) + (partial[2] + partial[3]);
      for (; c < dim; ++c) sum += static_cast<double>(row[c]) * row[c];
      if (!(sum > 0)) {
        throw std::invalid_argument(std::string(argument) + " row " + std::to_string(r) +
                                    " is all zeros; cosine similarity is undefined for it. Drop it, or use "
                                    "metric \"ip\"");
      }
      inverse[static_cast<size_t>(r)] = static_cast<float>(1.0 / std::sqrt(sum));
    }
    return inverse;
  }

  void check_half_range(const float* vectors, int64_t n, const std::vector<float>& inverse_norms) const {
    for (int64_t r = 0; r < n; ++r) {
      const float scale = inverse_norms.empty() ? 1.0f : inverse_norms[static_cast<size_t>(r)];
      for (int64_t c = 0; c < dim_; ++c) {
        const float value = vectors[r * dim_ + c] * scale;
        if (std::fabs(value) > detail::retriever::kHalfMax) {
          throw std::invalid_argument("vectors[" + std::to_string(r) + ", " + std::to_string(c) + "] = " +
                                      std::to_string(value) + " does not fit float16 storage (|x| <= 65504); "
                                      "scale the vectors or use dtype float32");
        }
      }
    }
  }

  static void check_unique(const int64_t* ids, int64_t n, const char* argument) {
    std::vector<int64_t> sorted(ids, ids + n);
    std::sort(sorted.begin(), sorted.end());
    const auto repeated = std::adjacent_find(sorted.begin(), sorted.end());
    if (repeated != sorted.end()) {
      throw std::invalid_argument(std::string(argument) + " lists id " + std::to_string(*repeated) +
                                  " more than once; ids must be unique");
    }
  }

  // Writes n rows (normalised / converted as stored) at row `first` of `destination`.
  void write_rows(const float* vectors, int64_t n, const std::vector<float>& inverse_norms, void* destination,
                  int64_t first) const {
    const Simd simd = detail::retriever::supported_simd();
    std::vector<float> scaled(inverse_norms.empty() ? 0 : static_cast<size_t>(dim_));
    for (int64_t r = 0; r < n; ++r) {
      const float* row = vectors + r * dim_;
      if (!inverse_norms.empty()) {
        const float scale = inverse_norms[static_cast<size_t>(r)];
        for (int64_t c = 0; c < dim_; ++c) scaled[static_cast<size_t>(c)] = row[c] * scale;
        row = scaled.data();
      }
      if (storage_ == Storage::float32) {
        std::memcpy(static_cast<float*>(destination) + (first + r) * dim_, row, row_bytes());
      } else {
        uint16_t* out = static_cast<uint16_t*>(destination) + (first + r) * dim_;
        detail::retriever::with_kernel(simd, [&](auto kernel) { kernel.to_half(row, dim_, out); });
      }
    }
  }

  detail::index_file::Contents file_contents() const {
    detail::index_file::Contents contents{};
    contents.dtype = storage_ == Storage::float16 ? detail::index_file::kDtypeFloat16 : detail::index_file::kDtypeFloat32;
    contents.metric = metric_ == Metric::cosine ? detail::index_file::kMetricCosine
                                                : detail::index_file::kMetricInnerProduct;
    contents.count = static_cast<uint64_t>(size_);
    contents.dim = static_cast<uint64_t>(dim_);
    contents.ids = ids_.data();
    contents.vectors = vectors_;
    contents.metadata = &metadata_;
    return contents;
  }

  static Retriever from_loaded(detail::index_file::Loaded loaded, std::shared_ptr<detail::MappedFile> mapping,
                               const std::string& name) {
    const auto& header = loaded.header;
    Retriever retriever(static_cast<int64_t>(header.dim),
                        header.metric == detail::index_file::kMetricCosine ? Metric::cosine : Metric::inner_product,
                        header.dtype == detail::index_file::kDtypeFloat16 ? Storage::float16 : Storage::float32);
    const auto count = static_cast<int64_t>(header.count);
    retriever.rows_by_id_.reserve(static_cast<size_t>(count));
    for (int64_t r = 0; r < count; ++r) {
      if (!retriever.rows_by_id_.emplace(loaded.ids[static_cast<size_t>(r)], r).second) {
        throw std::runtime_error(name + " is corrupted: id " + std::to_string(loaded.ids[static_cast<size_t>(r)]) +
                                 " appears twice");
      }
    }
    retriever.ids_ = std::move(loaded.ids);
    retriever.metadata_ = std::move(loaded.metadata);
    retriever.size_ = count;
    if (loaded.mapped_vectors) {
      retriever.mapping_ = std::move(mapping);
      retriever.vectors_ = loaded.mapped_vectors;
      retriever.capacity_ = 0;  // not writable: the first add/remove copies
    } else {
      retriever.adopt(std::move(loaded.vectors), count);
    }
    return retriever;
  }

  // ---- search ---------------------------------------------------------------

  // Offers a candidate that passed the vector threshold test.
  static void offer(detail::TopK& top, const Request& request, int64_t batch_start, int64_t q, float score,
                    int64_t row) {
    if (request.excluded && request.excluded[batch_start + q] == row) return;
    if (request.allowed && !request.allowed[row]) return;
    top.push(q, score, row);
  }

  template <class Kernel, class G>
  void run_search(Kernel, const G* gallery, const Request& request, float* out_scores, int64_t* out_ids) const {
    const SearchOptions& options = *request.options;
    const int64_t nq = request.num_queries;
    const bool few = nq <= std::min(kFewQueries, std::max<int64_t>(4, kFewQueryBytes / (dim_ * 4)));
    // Threads: each gets at least ~4M multiply-adds (starting one costs tens of
    // microseconds) and at least 64 gallery rows.
    const int64_t work_rows = std::max<int64_t>(64, (int64_t{1} << 22) / (dim_ * std::min<int64_t>(nq, 64)));
    const int64_t threads =
        std::max<int64_t>(1, std::min<int64_t>(detail::resolve_threads(options.threads), size_ / work_rows));
    // Query batches bound the heaps' memory (threads x batch x capacity).
    const int64_t per_query = threads * request.capacity * static_cast<int64_t>(sizeof(float) + sizeof(int64_t));
    int64_t batch = std::min<int64_t>(nq, few ? nq : kMaxBatch);
    batch = std::max<int64_t>(1, std::min<int64_t>(batch, kHeapBudget / std::max<int64_t>(1, per_query)));

    StopFlag stop(options);
    std::vector<float> normalised;        // few-queries path under cosine
    detail::AlignedBuffer packed_queries; // GEMM path
    std::vector<detail::TopK> parts;
    for (int64_t start = 0; start < nq; start += batch) {
      const int64_t count = std::min(batch, nq - start);
      const float* queries = request.queries + start * dim_;
      if (few) {
        if (request.inverse_norms) {
          normalised.resize(static_cast<size_t>(count * dim_));
          for (int64_t q = 0; q < count; ++q) {
            for (int64_t c = 0; c < dim_; ++c) {
              normalised[static_cast<size_t>(q * dim_ + c)] = queries[q * dim_ + c] * request.inverse_norms[start + q];
            }
          }
          queries = normalised.data();
        }
      } else {
        const int64_t panels = (count + Kernel::MR - 1) / Kernel::MR;
        packed_queries = detail::AlignedBuffer(static_cast<size_t>(panels * Kernel::MR * dim_) * sizeof(float));
        detail::retriever::pack_query_panels<Kernel::MR>(
            queries, count, dim_, dim_, request.inverse_norms ? request.inverse_norms + start : nullptr,
            static_cast<float*>(packed_queries.data()));
      }
      const int64_t padded = (count + Kernel::MR - 1) / Kernel::MR * Kernel::MR;
      parts.clear();
      for (int64_t t = 0; t < threads; ++t) parts.emplace_back(count, request.capacity, padded);

      detail::parallel_for(threads, static_cast<int>(threads), 1, [&](int64_t first, int64_t last) {
        for (int64_t t = first; t < last; ++t) {
          const int64_t begin = size_ * t / threads;
          const int64_t end = size_ * (t + 1) / threads;
          if (few) {
            scan_streaming<Kernel>(gallery, begin, end, queries, count, request, start, parts[static_cast<size_t>(t)],
                                   stop);
          } else {
            scan_blocked<Kernel>(gallery, begin, end, static_cast<const float*>(packed_queries.data()), count,
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
            if (row_ids[i] >= 0) row_ids[i] = ids_[static_cast<size_t>(row_ids[i])];
          }
        }
      });
    }
  }

  // GEMM path: gallery rows [begin, end) against `count` packed queries.
  template <class Kernel, class G>
  void scan_blocked(const G* gallery, int64_t begin, int64_t end, const float* packed_queries, int64_t count,
                    const Request& request, int64_t batch_start, detail::TopK& top, StopFlag& stop) const {
    constexpr int MR = Kernel::MR;
    constexpr int NR = Kernel::NR;
    const int64_t dim = dim_;
    const int64_t panels = (count + MR - 1) / MR;
    // The packed chunk is re-read once per query panel, so it must stay in L2.
    const int64_t chunk_rows = std::max<int64_t>(NR, std::min(kChunkRows, kChunkBytes / (dim * 4)) / NR * NR);
    detail::AlignedBuffer packed_buffer(static_cast<size_t>(chunk_rows * dim) * sizeof(float));
    auto* packed = static_cast<float*>(packed_buffer.data());
    alignas(64) float tile[MR * NR];
    uint32_t masks[MR];
    for (int64_t chunk = begin; chunk < end; chunk += chunk_rows) {
      if (stop.poll()) return;
      const int64_t rows = std::min(chunk_rows, end - chunk);
      const int64_t row_panels = (rows + NR - 1) / NR;
      for (int64_t g = 0; g < row_panels; ++g) {
        Kernel::pack_gallery(gallery + (chunk + g * NR) * dim, std::min<int64_t>(NR, rows - g * NR), dim,
                             packed + g * NR * dim);
      }
      for (int64_t p = 0; p < panels; ++p) {
        const float* a = packed_queries + p * MR * dim;
        for (int64_t g = 0; g < row_panels; ++g) {
          const uint32_t valid = detail::retriever::low_lanes(std::min<int64_t>(NR, rows - g * NR));
          if (!Kernel::tile(a, packed + g * NR * dim, dim, top.thresholds() + p * MR, valid, tile, masks)) continue;
          for (int i = 0; i < MR; ++i) {
            for (uint32_t mask = masks[i]; mask != 0; mask &= mask - 1) {
              const int j = __builtin_ctz(mask);
              offer(top, request, batch_start, p * MR + i, tile[i * NR + j], chunk + g * NR + j);
            }
          }
        }
      }
    }
  }

  // Few-queries path: one pass over gallery rows [begin, end).
  template <class Kernel, class G>
  void scan_streaming(const G* gallery, int64_t begin, int64_t end, const float* queries, int64_t count,
                      const Request& request, int64_t batch_start, detail::TopK& top, StopFlag& stop) const {
    std::vector<float> strip_scores(static_cast<size_t>(count * kStripRows));
    int64_t steps = 0;
    for (int64_t strip = begin; strip < end; strip += kStripRows) {
      if ((steps++ & 63) == 0 && stop.poll()) return;
      const int64_t rows = std::min(kStripRows, end - strip);
      Kernel::score_strip(gallery + strip * dim_, rows, dim_, queries, count, dim_, strip_scores.data());
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

  int64_t dim_ = 0;
  Metric metric_ = Metric::cosine;
  Storage storage_ = Storage::float32;
  int64_t size_ = 0;
  int64_t capacity_ = 0;                          // rows owned_ can hold
  detail::AlignedBuffer owned_;                   // the vectors, when held in memory
  std::shared_ptr<detail::MappedFile> mapping_;   // the file, when loaded with mmap
  const void* vectors_ = nullptr;                 // owned_.data() or inside mapping_
  std::vector<int64_t> ids_;                      // per row
  std::unordered_map<int64_t, int64_t> rows_by_id_;
  std::vector<std::string> metadata_;             // empty, or per row
  mutable detail::WriterPriorityMutex mutex_;  // shared: readers; exclusive: add/remove/reserve
};

namespace detail::retriever {

/// Read bandwidth in bytes/s: the best of `repeats` passes summing `n` floats
/// with `threads` threads (the same slicing as a search). The yardstick for
/// the streaming path, which cannot go faster than reading the gallery once.
inline double measure_read_bandwidth(const float* data, int64_t n, int threads, int repeats) {
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(resolve_threads(threads), n / 4096));
  std::vector<float> sink(static_cast<size_t>(workers));
  double best = 0;
  const Simd simd = supported_simd();
  for (int rep = 0; rep < std::max(1, repeats); ++rep) {
    const auto start = std::chrono::steady_clock::now();
    parallel_for(workers, static_cast<int>(workers), 1, [&](int64_t first, int64_t last) {
      for (int64_t t = first; t < last; ++t) {
        const int64_t begin = n * t / workers;
        const int64_t end = n * (t + 1) / workers;
        sink[static_cast<size_t>(t)] =
            with_kernel(simd, [&](auto kernel) { return kernel.read_sum(data + begin, end - begin); });
      }
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, static_cast<double>(n) * sizeof(float) / seconds);
  }
  volatile float keep = sink[0];
  (void)keep;
  return best;
}

}  // namespace detail::retriever
}  // namespace pe
