#pragma once
// pe::Retriever's state and the helpers its source files share (internal).
// retriever.cpp: construction, add, remove, accessors; search.cpp: search;
// persistence.cpp: save / load; npy.cpp: .npy import and export.

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/file_io.hpp"
#include "pe/retriever.hpp"
#include "retriever/index_file.hpp"
#include "retriever/writer_priority_mutex.hpp"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pe::Retriever's index files are little-endian; big-endian hosts are not supported"
#endif

namespace pe {

struct Retriever::State {
  State(int64_t dim, Metric metric, Storage storage) : dim(dim), metric(metric), storage(storage) {}

  int64_t dim = 0;
  Metric metric = Metric::cosine;
  Storage storage = Storage::float32;
  int64_t size = 0;
  int64_t capacity = 0;                          // rows `owned` can hold
  detail::AlignedBuffer owned;                   // the vectors, when held in memory
  std::shared_ptr<detail::MappedFile> mapping;   // the file, when loaded with mmap
  const void* vectors = nullptr;                 // owned.data() or inside mapping
  std::vector<int64_t> ids;                      // per row
  std::unordered_map<int64_t, int64_t> rows_by_id;
  std::vector<std::string> metadata;             // empty, or per row
  mutable detail::WriterPriorityMutex mutex;     // shared: readers; exclusive: add/remove/reserve

  size_t row_bytes() const { return static_cast<size_t>(dim) * (storage == Storage::float16 ? 2 : 4); }
  /// A new owned buffer of `rows` rows holding the current rows.
  detail::AlignedBuffer copy_rows(int64_t rows) const;
  /// Makes `buffer` (room for `rows` rows) the gallery's memory.
  void adopt(detail::AlignedBuffer buffer, int64_t rows);
  /// Writes n rows (normalised / converted as stored) at row `first` of `destination`.
  void write_rows(const float* vectors, int64_t n, const std::vector<float>& inverse_norms, void* destination,
                  int64_t first) const;
  /// What save writes: views of this state (persistence.cpp).
  detail::index_file::Contents file_contents() const;
};

namespace detail::retriever {
/// The state; InvalidArgumentError for a moved-from retriever, whose methods
/// must fail clearly rather than crash.
inline Retriever::State& live(const std::unique_ptr<Retriever::State>& state) {
  if (!state) throw InvalidArgumentError("this Retriever was moved from; use the one it was moved to");
  return *state;
}
/// InvalidArgumentError unless k >= 1.
void check_k(int64_t k);
/// InvalidArgumentError naming `argument`[r, c] for the first NaN or Inf.
void check_finite(const float* values, int64_t rows, int64_t dim, int64_t stride, const char* argument);
/// 1 / ||row|| per row (in double, so exact to float rounding whatever D is);
/// InvalidArgumentError for an all-zero row.
std::vector<float> inverse_l2_norms(const float* values, int64_t rows, int64_t dim, const char* argument);
}  // namespace detail::retriever

}  // namespace pe
