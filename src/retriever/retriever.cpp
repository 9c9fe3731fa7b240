// pe::Retriever: construction, add, remove and the accessors (see
// include/pe/retriever.hpp for the contract, state.hpp for the layout).

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <shared_mutex>  // std::shared_lock
#include <string>
#include <utility>
#include <vector>

#include "retriever/kernels.hpp"
#include "retriever/state.hpp"

namespace pe {

const char* name(Metric metric) { return metric == Metric::cosine ? "cosine" : "ip"; }

Metric parse_metric(std::string_view text) {
  if (text == "cosine") return Metric::cosine;
  if (text == "ip" || text == "inner_product") return Metric::inner_product;
  throw InvalidArgumentError("metric: unknown value '" + std::string(text) +
                             "'; use \"cosine\" (L2-normalise vectors and queries) or \"ip\" (raw inner product)");
}

const char* name(Storage storage) { return storage == Storage::float16 ? "float16" : "float32"; }

Storage parse_storage(std::string_view text) {
  if (text == "float32") return Storage::float32;
  if (text == "float16") return Storage::float16;
  throw InvalidArgumentError("dtype: unknown value '" + std::string(text) +
                             "'; use \"float32\" or \"float16\" (half the memory, scores within ~1e-3)");
}

const char* name(Simd simd) {
  switch (simd) {
    case Simd::best: return "best";
    case Simd::scalar: return "scalar";
    case Simd::avx2: return "avx2";
    case Simd::avx512: return "avx512";
  }
  return "unknown";
}

Simd parse_simd(std::string_view text) {
  for (Simd simd : {Simd::best, Simd::scalar, Simd::avx2, Simd::avx512}) {
    if (text == name(simd)) return simd;
  }
  throw InvalidArgumentError("simd: unknown value '" + std::string(text) + "'; use best, scalar, avx2 or avx512");
}

SearchInterrupted::SearchInterrupted() : CancelledError("search interrupted") {}
SearchInterrupted::~SearchInterrupted() = default;

// ---------------------------------------------------------------------------
// Validation shared with search.cpp

namespace detail::retriever {

void check_k(int64_t k) {
  if (k <= 0) {
    throw InvalidArgumentError("k must be >= 1, got " + std::to_string(k) +
                               "; ask for at least one result per query (k larger than the gallery is fine)");
  }
}

void check_finite(const float* values, int64_t rows, int64_t dim, int64_t stride, const char* argument) {
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
        throw InvalidArgumentError(std::string(argument) + "[" + std::to_string(r) + ", " + std::to_string(c) +
                                   "] is " + (std::isnan(row[c]) ? "NaN" : "Inf") +
                                   "; check the embeddings (e.g. np.isfinite(x).all()) before adding/searching");
      }
    }
  }
}

std::vector<float> inverse_l2_norms(const float* values, int64_t rows, int64_t dim, const char* argument) {
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
      throw InvalidArgumentError(std::string(argument) + " row " + std::to_string(r) +
                                 " is all zeros; cosine similarity is undefined for it. Drop it, or use "
                                 "metric \"ip\"");
    }
    inverse[static_cast<size_t>(r)] = static_cast<float>(1.0 / std::sqrt(sum));
  }
  return inverse;
}

}  // namespace detail::retriever

namespace {

using detail::retriever::check_finite;
using detail::retriever::inverse_l2_norms;

void check_unique(const int64_t* ids, int64_t n, const char* argument) {
  std::vector<int64_t> sorted(ids, ids + n);
  std::sort(sorted.begin(), sorted.end());
  const auto repeated = std::adjacent_find(sorted.begin(), sorted.end());
  if (repeated != sorted.end()) {
    throw InvalidArgumentError(std::string(argument) + " lists id " + std::to_string(*repeated) +
                               " more than once; ids must be unique");
  }
}

void check_half_range(const float* vectors, int64_t n, int64_t dim, const std::vector<float>& inverse_norms) {
  for (int64_t r = 0; r < n; ++r) {
    const float scale = inverse_norms.empty() ? 1.0f : inverse_norms[static_cast<size_t>(r)];
    for (int64_t c = 0; c < dim; ++c) {
      const float value = vectors[r * dim + c] * scale;
      if (std::fabs(value) > detail::kernels::kHalfMax) {
        throw InvalidArgumentError("vectors[" + std::to_string(r) + ", " + std::to_string(c) + "] = " +
                                   std::to_string(value) + " does not fit float16 storage (|x| <= 65504); "
                                   "scale the vectors or use dtype float32");
      }
    }
  }
}

// Capacity growth for a vector that must not reallocate during commit.
template <class T>
void grow(std::vector<T>& values, int64_t size) {
  if (static_cast<size_t>(size) > values.capacity()) {
    values.reserve(std::max(static_cast<size_t>(size), 2 * values.capacity()));
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// State helpers

detail::AlignedBuffer Retriever::State::copy_rows(int64_t rows) const {
  detail::AlignedBuffer buffer(static_cast<size_t>(rows) * row_bytes());
  if (size > 0) std::memcpy(buffer.data(), vectors, static_cast<size_t>(size) * row_bytes());
  return buffer;
}

void Retriever::State::adopt(detail::AlignedBuffer buffer, int64_t rows) {
  owned = std::move(buffer);
  capacity = rows;
  vectors = owned.data();
  mapping.reset();
}

void Retriever::State::write_rows(const float* rows, int64_t n, const std::vector<float>& inverse_norms,
                                  void* destination, int64_t first) const {
  const auto& kernels = detail::kernels::kernels_for(detail::kernels::supported_simd());
  std::vector<float> scaled(inverse_norms.empty() ? 0 : static_cast<size_t>(dim));
  for (int64_t r = 0; r < n; ++r) {
    const float* row = rows + r * dim;
    if (!inverse_norms.empty()) {
      const float scale = inverse_norms[static_cast<size_t>(r)];
      for (int64_t c = 0; c < dim; ++c) scaled[static_cast<size_t>(c)] = row[c] * scale;
      row = scaled.data();
    }
    if (storage == Storage::float32) {
      std::memcpy(static_cast<float*>(destination) + (first + r) * dim, row, row_bytes());
    } else {
      kernels.to_half(row, dim, static_cast<uint16_t*>(destination) + (first + r) * dim);
    }
  }
}

// ---------------------------------------------------------------------------

static_assert(static_cast<uint64_t>(Retriever::kMaxDim) == detail::index_file::kMaxDim,
              "a Retriever the file format cannot hold, or a file no Retriever can");

Retriever::Retriever(int64_t dim, Metric metric, Storage storage) {
  if (dim <= 0) {
    throw InvalidArgumentError("dim must be >= 1, got " + std::to_string(dim) +
                               "; pass the embedding size (e.g. 1024 for PE-Core L)");
  }
  if (dim > kMaxDim) {
    throw InvalidArgumentError("dim must be <= " + std::to_string(kMaxDim) + " (Retriever::kMaxDim), got " +
                               std::to_string(dim) + "; pass the embedding size (e.g. 1024 for PE-Core L)");
  }
  state_ = std::make_unique<State>(dim, metric, storage);
}

Retriever::Retriever(std::unique_ptr<State> state) : state_(std::move(state)) {}
Retriever::~Retriever() = default;
// A moved-from retriever holds no state: its methods throw (see live()).
Retriever::Retriever(Retriever&& other) noexcept : state_(std::move(other.state_)) {}
Retriever& Retriever::operator=(Retriever&& other) noexcept {
  if (this != &other) state_ = std::move(other.state_);
  return *this;
}

using detail::retriever::live;

int64_t Retriever::dim() const { return live(state_).dim; }
Metric Retriever::metric() const { return live(state_).metric; }
Storage Retriever::storage() const { return live(state_).storage; }

int64_t Retriever::size() const {
  const State& s = live(state_);
  std::shared_lock lock(s.mutex);
  return s.size;
}

bool Retriever::is_mapped() const {
  const State& s = live(state_);
  std::shared_lock lock(s.mutex);
  return s.mapping != nullptr;
}

void Retriever::reserve(int64_t rows) {
  State& s = live(state_);
  if (rows < 0) throw InvalidArgumentError("reserve: rows must be >= 0, got " + std::to_string(rows));
  std::unique_lock lock(s.mutex);
  if (rows <= s.capacity && !s.mapping) return;
  detail::AlignedBuffer grown = s.copy_rows(std::max(rows, s.size));
  s.ids.reserve(static_cast<size_t>(rows));
  s.rows_by_id.reserve(static_cast<size_t>(rows));
  s.adopt(std::move(grown), std::max(rows, s.size));
}

void Retriever::add(const float* vectors, int64_t n, const int64_t* ids, const std::string* metadata) {
  State& s = live(state_);
  if (n < 0) throw InvalidArgumentError("add: n must be >= 0, got " + std::to_string(n));
  if (n == 0) return;
  if (vectors == nullptr) throw InvalidArgumentError("add: vectors is null");
  if (ids == nullptr) throw InvalidArgumentError("add: ids is null");
  check_finite(vectors, n, s.dim, s.dim, "vectors");
  std::vector<float> inverse_norms;
  if (s.metric == Metric::cosine) inverse_norms = inverse_l2_norms(vectors, n, s.dim, "vectors");
  if (s.storage == Storage::float16) check_half_range(vectors, n, s.dim, inverse_norms);
  check_unique(ids, n, "ids");

  std::unique_lock lock(s.mutex);
  for (int64_t i = 0; i < n; ++i) {
    if (s.rows_by_id.count(ids[i])) {
      throw InvalidArgumentError("add: id " + std::to_string(ids[i]) + " (ids[" + std::to_string(i) +
                                 "]) is already in the gallery; ids must be unique. remove() it first "
                                 "to replace its vector");
    }
  }
  const int64_t new_size = s.size + n;
  // Everything that can throw happens before the first visible change.
  detail::AlignedBuffer grown;
  int64_t grown_capacity = s.capacity;
  if (new_size > s.capacity || s.mapping) {
    grown_capacity = std::max(new_size, s.capacity + s.capacity / 2);
    grown = s.copy_rows(grown_capacity);
  }
  grow(s.ids, new_size);
  const bool keep_metadata = metadata != nullptr || !s.metadata.empty();
  std::vector<std::string> new_metadata;
  if (keep_metadata) {
    grow(s.metadata, new_size);
    new_metadata.resize(static_cast<size_t>(n));
    if (metadata) {
      for (int64_t i = 0; i < n; ++i) new_metadata[static_cast<size_t>(i)] = metadata[i];
    }
  }
  // reserve() only when the table must grow, and geometrically: libstdc++
  // may otherwise rehash (even shrink) on every call, making adds O(N).
  if (static_cast<float>(new_size) >
      static_cast<float>(s.rows_by_id.bucket_count()) * s.rows_by_id.max_load_factor()) {
    s.rows_by_id.reserve(static_cast<size_t>(std::max(new_size, 2 * s.size)));
  }
  void* destination = grown.data() ? grown.data() : s.owned.data();
  s.write_rows(vectors, n, inverse_norms, destination, s.size);
  int64_t inserted = 0;
  try {
    for (; inserted < n; ++inserted) s.rows_by_id.emplace(ids[inserted], s.size + inserted);
  } catch (...) {
    for (int64_t i = 0; i < inserted; ++i) s.rows_by_id.erase(ids[i]);
    throw;
  }
  // Commit: nothing below allocates.
  if (grown.data()) s.adopt(std::move(grown), grown_capacity);
  s.ids.insert(s.ids.end(), ids, ids + n);
  if (keep_metadata) {
    s.metadata.resize(static_cast<size_t>(s.size));
    for (auto& item : new_metadata) s.metadata.push_back(std::move(item));
  }
  s.size = new_size;
}

void Retriever::add(const Eigen::Ref<const Matrix>& vectors, const std::vector<int64_t>& ids,
                    const std::vector<std::string>& metadata) {
  const int64_t dim = live(state_).dim;
  if (vectors.cols() != dim) {
    throw InvalidArgumentError("add: vectors has " + std::to_string(vectors.cols()) +
                               " columns but the retriever's dim is " + std::to_string(dim));
  }
  if (static_cast<int64_t>(ids.size()) != vectors.rows()) {
    throw InvalidArgumentError("add: " + std::to_string(ids.size()) + " ids for " + std::to_string(vectors.rows()) +
                               " vectors; pass one id per row");
  }
  if (!metadata.empty() && metadata.size() != ids.size()) {
    throw InvalidArgumentError("add: " + std::to_string(metadata.size()) + " metadata strings for " +
                               std::to_string(ids.size()) + " vectors; pass one per row or none");
  }
  if (vectors.rows() == 0) return;
  if (vectors.outerStride() == dim) {
    add(vectors.data(), vectors.rows(), ids.data(), metadata.empty() ? nullptr : metadata.data());
  } else {
    const Matrix contiguous = vectors;
    add(contiguous.data(), contiguous.rows(), ids.data(), metadata.empty() ? nullptr : metadata.data());
  }
}

void Retriever::remove(const int64_t* ids, int64_t n) {
  State& s = live(state_);
  if (n < 0) throw InvalidArgumentError("remove: n must be >= 0, got " + std::to_string(n));
  if (n == 0) return;
  if (ids == nullptr) throw InvalidArgumentError("remove: ids is null");
  check_unique(ids, n, "ids");
  std::unique_lock lock(s.mutex);
  std::vector<char> removed(static_cast<size_t>(s.size), 0);
  int64_t missing = 0;
  int64_t first_missing = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto found = s.rows_by_id.find(ids[i]);
    if (found == s.rows_by_id.end()) {
      if (missing++ == 0) first_missing = i;
      continue;
    }
    removed[static_cast<size_t>(found->second)] = 1;
  }
  if (missing > 0) {
    throw InvalidArgumentError("remove: id " + std::to_string(ids[first_missing]) + " (ids[" +
                               std::to_string(first_missing) + "]) is not in the gallery" +
                               (missing > 1 ? " (" + std::to_string(missing) + " ids are unknown)" : "") +
                               "; nothing was removed");
  }
  // A mapped gallery is read-only: compact into a new owned buffer instead.
  const bool copy_out = s.mapping != nullptr;
  detail::AlignedBuffer own;
  if (copy_out) own = detail::AlignedBuffer(static_cast<size_t>(s.size - n) * s.row_bytes());
  // Commit: compaction moves bytes and existing strings; nothing allocates.
  const auto* source = static_cast<const unsigned char*>(s.vectors);
  auto* target = static_cast<unsigned char*>(copy_out ? own.data() : s.owned.data());
  const size_t row = s.row_bytes();
  int64_t kept = 0;
  for (int64_t r = 0; r < s.size; ++r) {
    const auto from = static_cast<size_t>(r);
    if (removed[from]) {
      s.rows_by_id.erase(s.ids[from]);
      continue;
    }
    const auto to = static_cast<size_t>(kept);
    if (copy_out || kept != r) std::memmove(target + to * row, source + from * row, row);
    if (kept != r) {
      s.ids[to] = s.ids[from];
      s.rows_by_id.find(s.ids[to])->second = kept;
      if (!s.metadata.empty()) s.metadata[to] = std::move(s.metadata[from]);
    }
    ++kept;
  }
  s.ids.resize(static_cast<size_t>(kept));
  if (!s.metadata.empty()) s.metadata.resize(static_cast<size_t>(kept));
  if (copy_out) s.adopt(std::move(own), kept);
  s.size = kept;
}

bool Retriever::contains(int64_t id) const {
  const State& s = live(state_);
  std::shared_lock lock(s.mutex);
  return s.rows_by_id.count(id) != 0;
}

std::vector<int64_t> Retriever::ids() const {
  const State& s = live(state_);
  std::shared_lock lock(s.mutex);
  return s.ids;
}

Retriever::Matrix Retriever::vectors() const {
  const State& s = live(state_);
  std::shared_lock lock(s.mutex);
  Matrix out(s.size, s.dim);
  if (s.storage == Storage::float32) {
    if (s.size > 0) std::memcpy(out.data(), s.vectors, static_cast<size_t>(s.size) * s.row_bytes());
  } else {
    const auto* half = static_cast<const uint16_t*>(s.vectors);
    for (int64_t i = 0; i < s.size * s.dim; ++i) out.data()[i] = detail::kernels::half_to_float(half[i]);
  }
  return out;
}

Eigen::Map<const Retriever::Matrix> Retriever::gallery() const {
  const State& s = live(state_);
  std::shared_lock lock(s.mutex);
  if (s.storage != Storage::float32) {
    throw InvalidArgumentError("gallery(): this retriever stores float16; use vectors() for a float32 copy");
  }
  return Eigen::Map<const Matrix>(static_cast<const float*>(s.vectors), s.size, s.dim);
}

std::string Retriever::metadata(int64_t id) const {
  const State& s = live(state_);
  std::shared_lock lock(s.mutex);
  const auto found = s.rows_by_id.find(id);
  if (found == s.rows_by_id.end()) {
    throw InvalidArgumentError("metadata: id " + std::to_string(id) + " is not in the gallery");
  }
  return s.metadata.empty() ? std::string() : s.metadata[static_cast<size_t>(found->second)];
}

bool Retriever::has_metadata() const {
  const State& s = live(state_);
  std::shared_lock lock(s.mutex);
  return !s.metadata.empty();
}

Simd Retriever::resolve_simd(Simd simd) { return detail::kernels::resolve_simd(simd); }

}  // namespace pe
