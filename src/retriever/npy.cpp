// pe::Retriever's .npy import and export, for numpy and FAISS users (format:
// src/retriever/npy_format.hpp).

#include <cstring>
#include <mutex>
#include <shared_mutex>  // std::shared_lock
#include <string>
#include <vector>

#include "retriever/kernels.hpp"
#include "retriever/npy_format.hpp"
#include "retriever/state.hpp"

namespace pe {

using detail::retriever::live;

void Retriever::export_npy(const std::string& vectors_path, const std::string& ids_path) const {
  const State& s = live(state_);
  std::shared_lock lock(s.mutex);
  detail::write_file_atomically(vectors_path, [&](detail::ByteSink& sink) {
    detail::npy::write_header(sink, "<f4", {s.size, s.dim});
    if (s.storage == Storage::float32) {
      sink.write(s.vectors, static_cast<size_t>(s.size) * s.row_bytes());
    } else {
      std::vector<float> row(static_cast<size_t>(s.dim));
      const auto* half = static_cast<const uint16_t*>(s.vectors);
      for (int64_t r = 0; r < s.size; ++r) {
        for (int64_t c = 0; c < s.dim; ++c) row[static_cast<size_t>(c)] = detail::kernels::half_to_float(half[r * s.dim + c]);
        sink.write(row.data(), row.size() * sizeof(float));
      }
    }
  });
  detail::write_file_atomically(ids_path, [&](detail::ByteSink& sink) {
    detail::npy::write_header(sink, "<i8", {s.size});
    sink.write(s.ids.data(), s.ids.size() * sizeof(int64_t));
  });
}

// Adds the rows of a float32 (N, D) .npy file with the ids of an integer
// (N,) .npy file (int64 or int32), e.g. written by np.save. Both are mapped,
// not read into a temporary copy.
void Retriever::add_npy(const std::string& vectors_path, const std::string& ids_path) {
  const int64_t dim_ = dim();
  const detail::MappedFile vector_file(vectors_path);
  const detail::MappedFile id_file(ids_path);
  const auto vector_header = detail::npy::parse_header(vector_file.data(), vector_file.size(), vectors_path);
  const auto id_header = detail::npy::parse_header(id_file.data(), id_file.size(), ids_path);
  if (vector_header.descr != "<f4") {
    throw InvalidArgumentError(vectors_path + " holds dtype '" + vector_header.descr +
                                "'; save float32 vectors: np.save(path, x.astype(np.float32))");
  }
  if (vector_header.fortran_order || vector_header.shape.size() != 2) {
    throw InvalidArgumentError(vectors_path + " must hold a C-order 2-D array (N, D), got shape " +
                                detail::npy::shape_text(vector_header.shape) +
                                (vector_header.fortran_order ? " in Fortran order; save np.ascontiguousarray(x)" : ""));
  }
  if (vector_header.shape[1] != dim_) {
    throw InvalidArgumentError(vectors_path + " has D = " + std::to_string(vector_header.shape[1]) +
                                " but the retriever's dim is " + std::to_string(dim_));
  }
  const int64_t n = vector_header.shape[0];
  if (id_header.shape.size() != 1 || id_header.shape[0] != n) {
    throw InvalidArgumentError(ids_path + " must hold " + std::to_string(n) + " ids (shape (" +
                                std::to_string(n) + ",)), got shape " + detail::npy::shape_text(id_header.shape));
  }
  const bool ids64 = id_header.descr == "<i8";
  if (!ids64 && id_header.descr != "<i4") {
    throw InvalidArgumentError(ids_path + " holds dtype '" + id_header.descr +
                                "'; save integer ids: np.save(path, ids.astype(np.int64))");
  }
  // Sizes are compared by division: a header may claim 2^62 rows, whose byte
  // count would wrap around 64 bits and pass a multiplied check.
  const uint64_t vector_data = vector_file.size() - vector_header.data_offset;
  const uint64_t id_data = id_file.size() - id_header.data_offset;
  const auto rows = static_cast<uint64_t>(n), dim = static_cast<uint64_t>(dim_);
  if (rows > 0 && (dim > vector_data / 4 || rows > vector_data / 4 / dim)) {
    throw CorruptDataError(vectors_path + " is truncated: shape " + detail::npy::shape_text(vector_header.shape) +
                             " needs " + std::to_string(n) + " x " + std::to_string(dim_) +
                             " float32 values, the file holds " + std::to_string(vector_data) + " bytes of data");
  }
  if (rows > id_data / (ids64 ? 8 : 4)) {
    throw CorruptDataError(ids_path + " is truncated: shape " + detail::npy::shape_text(id_header.shape) +
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

// A new retriever holding the rows of two .npy files (see add_npy).
Retriever Retriever::from_npy(const std::string& vectors_path, const std::string& ids_path, Metric metric,
                              Storage storage) {
  int64_t dim = 0;
  {
    const detail::MappedFile file(vectors_path);
    const auto header = detail::npy::parse_header(file.data(), file.size(), vectors_path);
    if (header.shape.size() != 2) {
      throw InvalidArgumentError(vectors_path + " must hold a 2-D array (N, D), got shape " +
                                  detail::npy::shape_text(header.shape));
    }
    dim = header.shape[1];
    if (dim <= 0) {
      throw InvalidArgumentError(vectors_path + " holds shape " + detail::npy::shape_text(header.shape) +
                                  ": rows of 0 values cannot be searched; save (N, D) embeddings with D >= 1");
    }
  }
  Retriever retriever(dim, metric, storage);
  retriever.add_npy(vectors_path, ids_path);
  return retriever;
}


}  // namespace pe
