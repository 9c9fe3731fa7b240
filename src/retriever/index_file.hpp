#pragma once
// pe::detail::index_file — the binary format of pe::Retriever::save / load.
//
// Version 1 layout (all integers little-endian; offsets in bytes from the start):
//
//   offset  size  field
//   0       8     magic  89 50 45 52 0D 0A 1A 0A  ("\x89PER\r\n\x1a\n")
//   8       4     u32 format version (1)
//   12      4     u32 header size (128)
//   16      4     u32 dtype of the vectors: 1 = float32, 2 = float16 (IEEE binary16)
//   20      4     u32 metric: 1 = inner product, 2 = cosine (vectors stored L2-normalised)
//   24      8     u64 N, number of rows
//   32      8     u64 D, dimension
//   40      8     u64 ids offset (= 128)
//   48      8     u64 vectors offset (ids end rounded up to a multiple of 64)
//   56      8     u64 metadata offset (0 = no metadata)
//   64      8     u64 metadata size
//   72      8     u64 file size, including the checksum
//   80      48    reserved, zero
//   128           ids: N x i64 (unique)
//                 zero padding to the vectors offset
//                 vectors: N x D row-major, dtype as above
//                 metadata (optional): (N + 1) x u64 end offsets into the text
//                   (first 0, non-decreasing), then the UTF-8 text of all rows
//   size - 8 8    u64 XXH64 (seed 0) of every byte before it
//
// Why this shape: the magic's high byte and CR LF catch 7-bit and text-mode
// transfers (as PNG's does); the version lets a newer writer be refused with a
// clear message instead of being misread; vectors start 64-byte aligned so a
// read-only mmap of the file serves SIMD loads directly; the checksum and the
// recorded file size catch truncated copies and flipped bits before anything
// is trusted. Readers accept versions <= 1.
//
// Thread safety: pure functions over the sources/sinks they are given.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <xxhash.h>

#include "common/file_io.hpp"
#include "pe/error.hpp"

namespace pe::detail::index_file {

/// Streaming XXH64 (seed 0) over libxxhash's state.
class Checksum {
 public:
  Checksum() : state_(XXH64_createState()) {
    if (state_ == nullptr) throw std::bad_alloc();
    XXH64_reset(state_, 0);
  }
  ~Checksum() { XXH64_freeState(state_); }
  Checksum(const Checksum&) = delete;
  Checksum& operator=(const Checksum&) = delete;
  void update(const void* data, size_t size) {
    if (size > 0) XXH64_update(state_, data, size);
  }
  uint64_t digest() const { return XXH64_digest(state_); }

 private:
  XXH64_state_t* state_;
};

constexpr unsigned char kMagic[8] = {0x89, 'P', 'E', 'R', '\r', '\n', 0x1a, '\n'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kHeaderBytes = 128;
/// The largest dim a header may give: Retriever::kMaxDim (retriever.cpp checks they agree).
constexpr uint64_t kMaxDim = uint64_t{1} << 24;
constexpr uint32_t kDtypeFloat32 = 1;
constexpr uint32_t kDtypeFloat16 = 2;
constexpr uint32_t kMetricInnerProduct = 1;
constexpr uint32_t kMetricCosine = 2;

inline uint64_t align64(uint64_t offset) { return (offset + 63) / 64 * 64; }

struct Header {
  uint32_t version = kVersion;
  uint32_t dtype = kDtypeFloat32;
  uint32_t metric = kMetricCosine;
  uint64_t count = 0;
  uint64_t dim = 0;
  uint64_t ids_offset = 0;
  uint64_t vectors_offset = 0;
  uint64_t metadata_offset = 0;
  uint64_t metadata_bytes = 0;
  uint64_t file_bytes = 0;

  uint64_t element_bytes() const { return dtype == kDtypeFloat16 ? 2 : 4; }
  uint64_t vector_bytes() const { return count * dim * element_bytes(); }
};

/// What save writes: views of the retriever's state.
struct Contents {
  uint32_t dtype;
  uint32_t metric;
  uint64_t count;
  uint64_t dim;
  const int64_t* ids;
  const void* vectors;                         ///< count x dim of dtype, contiguous
  const std::vector<std::string>* metadata;    ///< null or empty = none; else count strings
};

/// Fills in the offsets for `contents` (the layout is fully determined by them).
inline Header layout(const Contents& contents) {
  Header header;
  header.dtype = contents.dtype;
  header.metric = contents.metric;
  header.count = contents.count;
  header.dim = contents.dim;
  header.ids_offset = kHeaderBytes;
  header.vectors_offset = align64(header.ids_offset + 8 * contents.count);
  uint64_t end = header.vectors_offset + header.vector_bytes();
  if (contents.metadata && !contents.metadata->empty()) {
    header.metadata_offset = end;
    uint64_t text = 0;
    for (const auto& item : *contents.metadata) text += item.size();
    header.metadata_bytes = 8 * (contents.count + 1) + text;
    end += header.metadata_bytes;
  }
  header.file_bytes = end + 8;
  return header;
}

inline void encode(const Header& header, unsigned char out[kHeaderBytes]) {
  std::memset(out, 0, kHeaderBytes);
  auto put32 = [&](size_t at, uint32_t value) { std::memcpy(out + at, &value, 4); };
  auto put64 = [&](size_t at, uint64_t value) { std::memcpy(out + at, &value, 8); };
  std::memcpy(out, kMagic, 8);
  put32(8, header.version);
  put32(12, kHeaderBytes);
  put32(16, header.dtype);
  put32(20, header.metric);
  put64(24, header.count);
  put64(32, header.dim);
  put64(40, header.ids_offset);
  put64(48, header.vectors_offset);
  put64(56, header.metadata_offset);
  put64(64, header.metadata_bytes);
  put64(72, header.file_bytes);
}

/// Writes the whole file to `sink`, hashing as it goes.
inline void write(ByteSink& sink, const Contents& contents) {
  const Header header = layout(contents);
  Checksum hash;
  auto emit = [&](const void* data, size_t size) {
    hash.update(data, size);
    sink.write(data, size);
  };
  unsigned char encoded[kHeaderBytes];
  encode(header, encoded);
  emit(encoded, kHeaderBytes);
  emit(contents.ids, 8 * contents.count);
  static const unsigned char zeros[64] = {};
  emit(zeros, header.vectors_offset - (header.ids_offset + 8 * contents.count));
  // The vectors are hashed and written in slices so the hash reads each slice
  // while it is still in cache.
  const auto* vectors = static_cast<const unsigned char*>(contents.vectors);
  const uint64_t vector_bytes = header.vector_bytes();
  constexpr uint64_t kSlice = uint64_t{8} << 20;
  for (uint64_t at = 0; at < vector_bytes; at += kSlice) {
    emit(vectors + at, std::min(kSlice, vector_bytes - at));
  }
  if (header.metadata_offset != 0) {
    std::vector<uint64_t> ends(contents.count + 1, 0);
    for (uint64_t i = 0; i < contents.count; ++i) ends[i + 1] = ends[i] + (*contents.metadata)[i].size();
    emit(ends.data(), 8 * ends.size());
    for (const auto& item : *contents.metadata) emit(item.data(), item.size());
  }
  const uint64_t checksum = hash.digest();
  sink.write(&checksum, 8);
}

/// What load produces. The vectors are either owned (`vectors`) or a view into
/// `mapping` (`mapped_vectors`).
struct Loaded {
  Header header;
  std::vector<int64_t> ids;
  AlignedBuffer vectors;
  const void* mapped_vectors = nullptr;
  std::vector<std::string> metadata;
};

/// Reads and verifies a whole index from `source` (`name` is used in errors).
/// With `keep_view` and a source that can lend memory, the vectors are left in
/// place (mapped_vectors); otherwise they are copied into `vectors`.
inline Loaded read(ByteSource& source, bool keep_view, const std::string& name) {
  const uint64_t actual = source.size();
  unsigned char encoded[kHeaderBytes];
  const size_t head = static_cast<size_t>(std::min<uint64_t>(actual, kHeaderBytes));
  source.read(encoded, head);
  if (head < 8 || std::memcmp(encoded, kMagic, 8) != 0) {
    const bool npy = head >= 6 && std::memcmp(encoded, "\x93NUMPY", 6) == 0;
    throw CorruptDataError(name + " is not a perception_retrieval index (wrong magic bytes)" +
                             std::string(npy ? "; it is a .npy array: use Retriever::from_npy / add_npy"
                                             : "; pass a file written by Retriever::save"));
  }
  if (head < 16) throw CorruptDataError(name + " is truncated: only " + std::to_string(actual) + " bytes");
  Header header;
  uint32_t header_bytes = 0;
  auto get32 = [&](size_t at) {
    uint32_t value;
    std::memcpy(&value, encoded + at, 4);
    return value;
  };
  auto get64 = [&](size_t at) {
    uint64_t value;
    std::memcpy(&value, encoded + at, 8);
    return value;
  };
  header.version = get32(8);
  header_bytes = get32(12);
  if (header.version > kVersion) {
    throw VersionMismatchError(name + " uses index format version " + std::to_string(header.version) +
                             ", written by a newer perception_retrieval; this build reads versions up to " +
                             std::to_string(kVersion) + ". Upgrade perception_retrieval to load it");
  }
  if (header.version == 0 || header_bytes != kHeaderBytes) {
    throw CorruptDataError(name + " is corrupted: invalid header (version " + std::to_string(header.version) +
                             ", header size " + std::to_string(header_bytes) + ")");
  }
  if (head < kHeaderBytes) {
    throw CorruptDataError(name + " is truncated: " + std::to_string(actual) + " bytes, less than the header");
  }
  header.dtype = get32(16);
  header.metric = get32(20);
  header.count = get64(24);
  header.dim = get64(32);
  header.ids_offset = get64(40);
  header.vectors_offset = get64(48);
  header.metadata_offset = get64(56);
  header.metadata_bytes = get64(64);
  header.file_bytes = get64(72);
  if (header.file_bytes != actual) {
    throw CorruptDataError(name + (actual < header.file_bytes ? " is truncated: " : " is corrupted: ") +
                             std::to_string(actual) + " bytes, but its header records " +
                             std::to_string(header.file_bytes) + " (an interrupted copy?)");
  }
  // The layout must be the one `layout` produces; sizes are checked against
  // the file size first so a corrupted count cannot make us allocate wildly. dim
  // is bounded by kMaxDim, not by the file size: a gallery with no rows has no
  // vector bytes (an empty 1024-d index is a few hundred bytes), and nothing is
  // allocated per dim until rows come.
  const bool known_dtype = header.dtype == kDtypeFloat32 || header.dtype == kDtypeFloat16;
  const bool known_metric = header.metric == kMetricInnerProduct || header.metric == kMetricCosine;
  const uint64_t limit = actual / 2;
  bool consistent = known_dtype && known_metric && header.dim > 0 && header.dim <= kMaxDim && header.count <= limit &&
                    (header.count == 0 || header.dim <= actual / header.count) &&
                    header.ids_offset == kHeaderBytes &&
                    header.vectors_offset == align64(kHeaderBytes + 8 * header.count);
  if (consistent) {
    uint64_t end = header.vectors_offset + header.vector_bytes();
    if (header.metadata_offset != 0) {
      consistent = header.metadata_offset == end && header.metadata_bytes >= 8 * (header.count + 1) &&
                   header.metadata_bytes <= actual;
      end += header.metadata_bytes;
    } else {
      consistent = header.metadata_bytes == 0;
    }
    consistent = consistent && end + 8 == actual;
  }
  if (!consistent) {
    throw CorruptDataError(name + " is corrupted: its header is inconsistent (N=" + std::to_string(header.count) +
                             ", D=" + std::to_string(header.dim) + ", dtype " + std::to_string(header.dtype) +
                             ", metric " + std::to_string(header.metric) + ")");
  }

  Checksum hash;
  hash.update(encoded, kHeaderBytes);
  Loaded loaded;
  loaded.header = header;
  loaded.ids.resize(header.count);
  source.read(loaded.ids.data(), 8 * header.count);
  hash.update(loaded.ids.data(), 8 * header.count);
  unsigned char padding[64];
  const size_t pad = header.vectors_offset - (kHeaderBytes + 8 * header.count);
  source.read(padding, pad);
  hash.update(padding, pad);

  const uint64_t vector_bytes = header.vector_bytes();
  const uint8_t* view = keep_view ? source.view(vector_bytes) : nullptr;
  if (view) {
    loaded.mapped_vectors = view;
    hash.update(view, vector_bytes);
  } else {
    loaded.vectors = AlignedBuffer(vector_bytes);
    auto* out = static_cast<unsigned char*>(loaded.vectors.data());
    constexpr uint64_t kSlice = uint64_t{8} << 20;
    for (uint64_t at = 0; at < vector_bytes; at += kSlice) {
      const uint64_t size = std::min(kSlice, vector_bytes - at);
      source.read(out + at, size);
      hash.update(out + at, size);
    }
  }
  std::vector<uint64_t> ends;
  std::string text;
  if (header.metadata_offset != 0) {
    ends.resize(header.count + 1);
    source.read(ends.data(), 8 * ends.size());
    hash.update(ends.data(), 8 * ends.size());
    text.resize(header.metadata_bytes - 8 * ends.size());
    source.read(text.data(), text.size());
    hash.update(text.data(), text.size());
  }
  uint64_t stored = 0;
  source.read(&stored, 8);
  if (stored != hash.digest()) {
    throw CorruptDataError(name + " is corrupted: checksum mismatch (the file was modified or damaged after it "
                             "was written); restore it from a good copy or rebuild the index");
  }
  if (header.metadata_offset != 0) {
    if (ends[0] != 0 || ends.back() != text.size()) {
      throw CorruptDataError(name + " is corrupted: metadata offsets do not cover the metadata text");
    }
    loaded.metadata.reserve(header.count);
    for (uint64_t i = 0; i < header.count; ++i) {
      if (ends[i + 1] < ends[i] || ends[i + 1] > text.size()) {
        throw CorruptDataError(name + " is corrupted: metadata offsets decrease at row " + std::to_string(i));
      }
      loaded.metadata.emplace_back(text, ends[i], ends[i + 1] - ends[i]);
    }
  }
  return loaded;
}

}  // namespace pe::detail::index_file
