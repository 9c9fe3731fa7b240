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
// How search works (details in src/retriever/search.cpp and kernels.hpp):
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
// Errors (pe/error.hpp): InvalidArgumentError for bad arguments (naming the
// argument, the value seen and the fix); FileNotFoundError / IoError for files
// that cannot be read or written; CorruptDataError for index and .npy files
// that are damaged or truncated; VersionMismatchError for an index written by a
// newer format version; SearchInterrupted (a CancelledError) when
// SearchOptions::interrupt stops a search. A failed add, remove or load leaves
// the retriever unchanged; a failed save leaves the file on disk unchanged.
// The index file format is described in docs/architecture.md.

#include <Eigen/Core>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pe/error.hpp"

namespace pe {

/// How rows are compared with queries; stored with the index.
enum class Metric {
  inner_product,  ///< score = <query, row>, vectors used as given ("ip")
  cosine,         ///< vectors and queries L2-normalised first; score in [-1, 1]
};

const char* name(Metric metric);
/// "cosine", "ip" or "inner_product"; InvalidArgumentError otherwise.
Metric parse_metric(std::string_view text);

/// Element type the gallery is stored in. Queries are always float32 and
/// scores are accumulated in float32.
enum class Storage {
  float32,
  float16,  ///< IEEE binary16: half the memory and scan time; |values| <= 65504
};

const char* name(Storage storage);
/// "float32" or "float16"; InvalidArgumentError otherwise.
Storage parse_storage(std::string_view text);

/// Instruction set used by the search kernels. `best` = the highest the CPU
/// supports (capped by the environment variable PE_RETRIEVER_SIMD=scalar|avx2|avx512);
/// asking for more than the CPU has gives the highest it has.
enum class Simd { best = 0, scalar = 1, avx2 = 2, avx512 = 3 };

const char* name(Simd simd);
/// "best", "scalar", "avx2" or "avx512"; InvalidArgumentError otherwise.
Simd parse_simd(std::string_view text);

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
  /// Worker threads; 0 = every usable CPU (pe::usable_cpu_count()).
  int threads = 0;
  /// Instruction set for the kernels (testing, benchmarks); best = fastest.
  Simd simd = Simd::best;
  /// Called from the calling thread about every 100 ms while searching; return
  /// true to stop: search then throws pe::SearchInterrupted. Lets bindings
  /// honour Ctrl-C during long searches.
  std::function<bool()> interrupt;
};

/// Thrown when SearchOptions::interrupt asked to stop; outputs are unspecified.
class SearchInterrupted : public CancelledError {
 public:
  SearchInterrupted();
  ~SearchInterrupted() override;
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

  /// The largest vector size a Retriever takes: 2^24 floats, 64 MiB a row. Far
  /// above any embedding, and a bound an index file's header is checked against
  /// even when it holds no rows (so a saved empty gallery always loads back).
  static constexpr int64_t kMaxDim = int64_t{1} << 24;

  /// An empty gallery of `dim`-dimensional vectors (1 <= dim <= kMaxDim).
  explicit Retriever(int64_t dim, Metric metric = Metric::cosine, Storage storage = Storage::float32);
  ~Retriever();
  Retriever(Retriever&& other) noexcept;
  Retriever& operator=(Retriever&& other) noexcept;
  Retriever(const Retriever&) = delete;
  Retriever& operator=(const Retriever&) = delete;

  int64_t dim() const;
  Metric metric() const;
  Storage storage() const;
  /// Rows in the gallery.
  int64_t size() const;
  /// True when the vectors are a read-only view of a file (load with mmap);
  /// the first add/remove copies them into memory.
  bool is_mapped() const;
  /// Makes room for `rows` rows in total, so adds up to that size do not
  /// reallocate (and the gallery never needs twice its memory while growing).
  void reserve(int64_t rows);

  /// Appends `n` rows (row-major n x dim floats, contiguous) with their ids and,
  /// optionally, `n` metadata strings. Throws InvalidArgumentError — and adds
  /// nothing — on a NaN/Inf value, a zero vector under cosine, a value float16
  /// storage cannot hold, an id already present or repeated in `ids`.
  void add(const float* vectors, int64_t n, const int64_t* ids, const std::string* metadata = nullptr);
  /// Eigen overload: `vectors` is n x dim (any row stride), `ids` n entries,
  /// `metadata` empty or n.
  void add(const Eigen::Ref<const Matrix>& vectors, const std::vector<int64_t>& ids,
           const std::vector<std::string>& metadata = {});

  /// Removes the rows with these ids; the other rows keep their order. Throws
  /// InvalidArgumentError — and removes nothing — if an id is not in the
  /// gallery or is listed twice.
  void remove(const int64_t* ids, int64_t n);
  void remove(const std::vector<int64_t>& ids) { remove(ids.data(), static_cast<int64_t>(ids.size())); }

  bool contains(int64_t id) const;

  /// Exact top-k. `queries` is num_queries x dim float32, row-major and
  /// contiguous (used in place; copied only when the metric is cosine).
  /// `scores` (float32) and `ids` (int64) are caller-owned, num_queries x k.
  /// Throws InvalidArgumentError for k <= 0, NaN/Inf in queries, a zero query
  /// under cosine, or inconsistent options; never for k > size().
  void search(const float* queries, int64_t num_queries, int64_t k, float* scores, int64_t* ids,
              const SearchOptions& options = {}) const;
  /// Eigen overload: queries is num_queries x dim (any row stride).
  SearchResult search(const Eigen::Ref<const Matrix>& queries, int64_t k, const SearchOptions& options = {}) const;

  /// Ids in row order (a copy).
  std::vector<int64_t> ids() const;
  /// The gallery as float32 (a copy; normalised rows under cosine).
  Matrix vectors() const;
  /// Zero-copy view of a float32 gallery, valid until the next add/remove/
  /// reserve or move. Throws InvalidArgumentError for float16 storage (use vectors()).
  Eigen::Map<const Matrix> gallery() const;
  /// The metadata string of `id` ("" when none was given).
  std::string metadata(int64_t id) const;
  bool has_metadata() const;

  // -------------------------------------------------------------------------
  // Persistence (the file format: docs/architecture.md)

  /// Writes the index to `path` atomically (temporary file, fsync, rename).
  void save(const std::string& path) const;
  /// The saved file's bytes (for pickling and transport).
  std::string to_bytes() const;
  /// Reads an index written by save(). With mmap the vectors stay in the file's
  /// read-only mapping (no copy; pages load on first use) until the first
  /// add/remove copies them. The whole file is checksummed either way.
  static Retriever load(const std::string& path, bool mmap = false);
  static Retriever from_bytes(const void* data, size_t size);

  /// Writes the vectors as float32 (N, D) and the ids as int64 (N,) .npy files
  /// (np.load / faiss index.add(np.load(...)) read them); each atomically.
  void export_npy(const std::string& vectors_path, const std::string& ids_path) const;
  /// Adds the rows of a float32 (N, D) .npy file with the ids of an integer
  /// (N,) .npy file (int64 or int32), e.g. written by np.save. Both are mapped,
  /// not read into a temporary copy.
  void add_npy(const std::string& vectors_path, const std::string& ids_path);
  /// A new retriever holding the rows of two .npy files (see add_npy).
  static Retriever from_npy(const std::string& vectors_path, const std::string& ids_path,
                            Metric metric = Metric::cosine, Storage storage = Storage::float32);

  /// The instruction set a request for `simd` runs with on this machine.
  static Simd resolve_simd(Simd simd = Simd::best);

  struct State;  // the gallery and its index (src/retriever/state.hpp)

 private:
  class Loader;  // builds retrievers from loaded index files (persistence.cpp)
  explicit Retriever(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

/// Read bandwidth in bytes/s: the best of `repeats` passes summing `n` floats
/// with `threads` threads (the same slicing as a search). The yardstick for
/// the streaming path, which cannot go faster than reading the gallery once
/// (benchmarks/bench_retriever.py).
double measure_read_bandwidth(const float* data, int64_t n, int threads, int repeats);

}  // namespace pe
