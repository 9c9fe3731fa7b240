// pe::Retriever's index files: save, load (copied or memory-mapped) and the
// byte-string forms used for pickling (format: src/retriever/index_file.hpp).

#include <memory>
#include <mutex>
#include <shared_mutex>  // std::shared_lock
#include <string>
#include <utility>

#include "retriever/state.hpp"

namespace pe {

using detail::retriever::live;

detail::index_file::Contents Retriever::State::file_contents() const {
  detail::index_file::Contents contents{};
  contents.dtype = storage == Storage::float16 ? detail::index_file::kDtypeFloat16 : detail::index_file::kDtypeFloat32;
  contents.metric = metric == Metric::cosine ? detail::index_file::kMetricCosine
                                             : detail::index_file::kMetricInnerProduct;
  contents.count = static_cast<uint64_t>(size);
  contents.dim = static_cast<uint64_t>(dim);
  contents.ids = ids.data();
  contents.vectors = vectors;
  contents.metadata = &metadata;
  return contents;
}

// A loaded file as a retriever; the mapping (if any) stays alive as long as it.
class Retriever::Loader {
 public:
  static Retriever build(detail::index_file::Loaded loaded, std::shared_ptr<detail::MappedFile> mapping,
                         const std::string& name) {
    const auto& header = loaded.header;
    auto state = std::make_unique<State>(
        static_cast<int64_t>(header.dim),
        header.metric == detail::index_file::kMetricCosine ? Metric::cosine : Metric::inner_product,
        header.dtype == detail::index_file::kDtypeFloat16 ? Storage::float16 : Storage::float32);
    const auto count = static_cast<int64_t>(header.count);
    state->rows_by_id.reserve(static_cast<size_t>(count));
    for (int64_t r = 0; r < count; ++r) {
      if (!state->rows_by_id.emplace(loaded.ids[static_cast<size_t>(r)], r).second) {
        throw CorruptDataError(name + " is corrupted: id " + std::to_string(loaded.ids[static_cast<size_t>(r)]) +
                               " appears twice");
      }
    }
    state->ids = std::move(loaded.ids);
    state->metadata = std::move(loaded.metadata);
    state->size = count;
    if (loaded.mapped_vectors) {
      state->mapping = std::move(mapping);
      state->vectors = loaded.mapped_vectors;
      state->capacity = 0;  // not writable: the first add/remove copies
    } else {
      state->adopt(std::move(loaded.vectors), count);
    }
    return Retriever(std::move(state));
  }
};

void Retriever::save(const std::string& path) const {
  const State& s = live(state_);
  std::shared_lock lock(s.mutex);
  const auto contents = s.file_contents();
  detail::write_file_atomically(path, [&](detail::ByteSink& sink) { detail::index_file::write(sink, contents); });
}

std::string Retriever::to_bytes() const {
  const State& s = live(state_);
  std::shared_lock lock(s.mutex);
  detail::StringSink sink;
  detail::index_file::write(sink, s.file_contents());
  return std::move(sink.bytes);
}

Retriever Retriever::load(const std::string& path, bool mmap) {
  if (mmap) {
    auto mapping = std::make_shared<detail::MappedFile>(path);
    detail::MemorySource source(mapping->data(), mapping->size(), path);
    return Loader::build(detail::index_file::read(source, true, path), std::move(mapping), path);
  }
  detail::FileSource source(path);
  return Loader::build(detail::index_file::read(source, false, path), nullptr, path);
}

Retriever Retriever::from_bytes(const void* data, size_t size) {
  const std::string name = "serialised retriever";
  detail::MemorySource source(static_cast<const uint8_t*>(data), size, name);
  return Loader::build(detail::index_file::read(source, false, name), nullptr, name);
}

}  // namespace pe
