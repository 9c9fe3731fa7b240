#pragma once
// The bodies of the libFuzzer harnesses (fuzz_image.cpp, fuzz_index.cpp,
// fuzz_npy.cpp), kept in one header so tests/cpp/test_hardening_fuzz_regressions.cpp
// replays every saved crash input through exactly the same code with the
// normal compiler: a bug found once stays fixed in the plain ctest run and in
// the ASan build (scripts/sanitize.sh).
//
// Each target takes arbitrary bytes. Rejecting them is fine — with the
// exceptions the library documents for bad data (std::runtime_error) and bad
// arguments (std::invalid_argument). Anything else is a bug: a sanitizer
// report, a crash, another exception type (std::out_of_range, std::bad_alloc,
// ...), or an accepted input whose result breaks an invariant the API promises
// (pe::fuzz::Violation, deliberately not derived from std::logic_error so no
// handler for the expected errors swallows it).
//
// Thread safety: the targets use a per-process scratch directory for the file
// paths they exercise; call them from one thread at a time.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include <xxhash.h>

#include "pe/image.hpp"
#include "pe/retriever.hpp"
#include "retriever/npy_format.hpp"  // internal: the harness checks the parser directly

namespace pe::fuzz {

/// An accepted input produced a result that breaks the API's contract.
class Violation : public std::exception {
 public:
  explicit Violation(std::string what) : what_(std::move(what)) {}
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  std::string what_;
};

inline void require(bool condition, const std::string& what) {
  if (!condition) throw Violation("fuzz invariant violated: " + what);
}

/// A scratch directory for this process (TMPDIR or /tmp), removed at a normal
/// exit (scripts/fuzz.sh points TMPDIR into build/fuzz, for the other ends).
inline const std::string& scratch_directory() {
  static const std::string directory = [] {
    const char* base = std::getenv("TMPDIR");
    std::string path = std::string(base && *base ? base : "/tmp") + "/pe_fuzz_" + std::to_string(::getpid());
    ::mkdir(path.c_str(), 0700);
    static std::string remove_at_exit;
    remove_at_exit = path;
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(remove_at_exit, ignored);
    });
    return path;
  }();
  return directory;
}

inline std::string write_scratch(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_directory() + "/" + name;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw Violation("cannot create the scratch file " + path);
  size_t done = 0;
  while (done < size) {
    const ssize_t written = ::write(fd, data + done, size - done);
    if (written <= 0) {
      ::close(fd);
      throw Violation("cannot write the scratch file " + path);
    }
    done += static_cast<size_t>(written);
  }
  ::close(fd);
  return path;
}

// ---------------------------------------------------------------------------
// (a) image decoding + preprocessing

/// Sniffs `data`, reads its header and decodes it as an image file (every
/// reader: JPEG, PNG, WebP, TIFF through their libraries, BMP, GIF, TGA, PNM
/// and PSD through the library's own code) and, if it is one, resizes and
/// preprocesses it to small sizes derived from the bytes (so a mutation of the
/// image also explores target sizes without consuming any of its bytes).
inline void image_target(const uint8_t* data, size_t size) {
  // Small limits keep each run fast; the code paths are the same at any size.
  pe::image::DecodeOptions options;
  options.max_pixels = int64_t{1} << 19;  // refused above 2^20
  const std::string format = pe::image::sniff_format(data, size);
  pe::image::ImageInfo info;
  bool have_info = false;
  try {
    info = pe::image::read_info(data, size, "fuzz input");
    have_info = true;
    require(info.format == format, "read_info names another format than sniff_format");
  } catch (const std::runtime_error&) {
  }
  pe::image::Image image;
  try {
    image = pe::image::decode_memory(data, size, "fuzz input", options);
  } catch (const std::runtime_error&) {
    return;  // not an image, corrupt, too big, unsupported: all reported as such
  }
  require(pe::image::is_supported_format(format), "decoded a format sniff_format calls unsupported");
  require(have_info && info.width == image.width && info.height == image.height,
          "the header reader's size differs from the decoded image's");
  require(image.width > 0 && image.height > 0, "decoded image has a non-positive size");
  require(int64_t{image.width} * image.height <= 2 * options.max_pixels, "decoded image exceeds 2 x max_pixels");
  require(image.pixels.size() == static_cast<size_t>(image.width) * image.height * 3,
          "decoded pixel buffer does not hold width x height x 3 bytes");

  // The same bytes with a pixel limit below the image (PIL's rule: refused
  // above twice max_pixels) must be refused, never decoded.
  const int64_t pixels = int64_t{image.width} * image.height;
  pe::image::DecodeOptions tiny;
  tiny.max_pixels = std::max<int64_t>(1, (pixels - 1) / 2);
  bool refused = false;
  try {
    pe::image::decode_memory(data, size, "fuzz input", tiny);
  } catch (const std::runtime_error&) {
    refused = true;
  }
  require(refused || pixels <= 2, "an image over 2 x max_pixels was decoded");

  uint32_t seed = static_cast<uint32_t>(size);
  for (size_t i = 0; i < size; i += std::max<size_t>(1, size / 16)) seed = seed * 31 + data[i];
  const int out_width = 1 + static_cast<int>(seed % 40);
  const int out_height = 1 + static_cast<int>((seed / 40) % 40);
  std::vector<uint8_t> resized(static_cast<size_t>(out_width) * out_height * 3);
  pe::image::resize_bilinear(image.pixels.data(), image.width, image.height, out_width, out_height, resized.data());
  // An image of one colour stays that colour at any size (weights sum to one).
  const uint8_t* first = image.pixels.data();
  bool uniform = true;
  for (size_t i = 0; i < image.pixels.size() && uniform; i += 3) uniform = std::memcmp(first, first + i, 3) == 0;
  if (uniform) {
    for (size_t i = 0; i < resized.size(); i += 3) {
      require(std::memcmp(first, resized.data() + i, 3) == 0, "resizing a uniform image changed its colour");
    }
  }
  const int model_size = 1 + static_cast<int>((seed / 1600) % 24);
  std::vector<float> planar(static_cast<size_t>(3) * model_size * model_size);
  pe::image::preprocess(image.pixels.data(), image.width, image.height, model_size, pe::image::Normalization{},
                        planar.data());
  for (float value : planar) require(value >= -1.0f && value <= 1.0f, "preprocessed value outside [-1, 1]");
}

// ---------------------------------------------------------------------------
// (b) index files

inline void check_search_results(const pe::Retriever& retriever, const pe::Retriever::SearchResult& result,
                                 int64_t k) {
  const std::vector<int64_t> ids = retriever.ids();
  const std::unordered_set<int64_t> known(ids.begin(), ids.end());
  require(result.ids.cols() == k && result.scores.cols() == k, "search returned the wrong number of columns");
  // -1 pads rows with fewer than k results; a gallery may use -1 as an id
  // too, and then the two cannot be told apart.
  const bool ambiguous = known.count(-1) != 0;
  for (int64_t q = 0; q < result.ids.rows(); ++q) {
    std::unordered_set<int64_t> seen;
    bool padding = false;
    for (int64_t i = 0; i < k; ++i) {
      const int64_t id = result.ids(q, i);
      const float score = result.scores(q, i);
      if (id == -1 && ambiguous) continue;
      if (id == -1) {
        padding = true;
        require(score == -std::numeric_limits<float>::infinity(), "a padded result has a score other than -inf");
        continue;
      }
      require(!padding, "a real result follows padding");
      require(known.count(id) == 1, "search returned an id that is not in the gallery");
      require(seen.insert(id).second, "search returned the same id twice for one query");
      if (i > 0 && !std::isnan(score) && !std::isnan(result.scores(q, i - 1))) {
        require(score <= result.scores(q, i - 1), "search results are not sorted best first");
      }
    }
  }
}

/// Searches, mutates and re-serialises a retriever that loaded successfully.
inline void exercise_loaded(pe::Retriever& retriever) {
  const int64_t size = retriever.size();
  const int64_t dim = retriever.dim();
  require(dim > 0 && size >= 0, "loaded retriever has a bad shape");
  const std::vector<int64_t> ids = retriever.ids();
  require(static_cast<int64_t>(ids.size()) == size, "ids() does not have size() entries");
  require(std::unordered_set<int64_t>(ids.begin(), ids.end()).size() == ids.size(), "loaded ids are not unique");
  for (int64_t id : ids) {
    require(retriever.contains(id), "contains() is false for a loaded id");
    (void)retriever.metadata(id);
  }
  // Bounded work: the file holds size x dim values, so this is at most a few
  // passes over the input.
  pe::SearchOptions options;
  options.threads = 1;
  for (int64_t num_queries : {int64_t{1}, int64_t{3}, pe::Retriever::kFewQueries + 1}) {
    if (num_queries * dim > (int64_t{1} << 16)) break;
    pe::Retriever::Matrix queries(num_queries, dim);
    for (int64_t q = 0; q < num_queries; ++q) {
      for (int64_t c = 0; c < dim; ++c) queries(q, c) = static_cast<float>(((q + 1) * 7 + c * 3) % 11) - 5.0f;
      queries(q, q % dim) = 1.0f + static_cast<float>(q);  // never an all-zero row
    }
    const int64_t k = std::min<int64_t>(size + 2, 5);
    check_search_results(retriever, retriever.search(queries, k, options), k);
  }
  // Round trip through the serialised form.
  const std::string bytes = retriever.to_bytes();
  const pe::Retriever again = pe::Retriever::from_bytes(bytes.data(), bytes.size());
  require(again.ids() == ids, "ids changed in a to_bytes/from_bytes round trip");
  const pe::Retriever::Matrix before = retriever.vectors(), after = again.vectors();
  require(before.size() == after.size() &&
              (before.size() == 0 || std::memcmp(before.data(), after.data(), sizeof(float) * before.size()) == 0),
          "vectors changed in a to_bytes/from_bytes round trip");
  // Mutations copy a mapped gallery first; both must keep the other rows.
  if (size > 0) {
    retriever.remove(&ids[0], 1);
    require(retriever.size() == size - 1 && !retriever.contains(ids[0]), "remove() did not remove the row");
  }
  std::vector<float> row(static_cast<size_t>(dim), 0.0f);
  row[0] = 1.0f;
  int64_t fresh = std::numeric_limits<int64_t>::min();
  while (retriever.contains(fresh)) ++fresh;
  retriever.add(row.data(), 1, &fresh);
  require(retriever.contains(fresh), "add() after load lost the row");
}

/// Loads `data` as an index file: from memory, from a file and from a mapped
/// file; and again with its checksum recomputed, so mutations get past the
/// checksum and reach the structure checks behind it.
inline void index_target(const uint8_t* data, size_t size) {
  std::vector<uint8_t> fixed(data, data + size);
  if (fixed.size() >= 8) {
    const uint64_t checksum = XXH64(fixed.data(), fixed.size() - 8, 0);
    std::memcpy(fixed.data() + fixed.size() - 8, &checksum, 8);
  }
  const std::vector<uint8_t>* const variants[] = {nullptr, &fixed};
  for (const std::vector<uint8_t>* bytes : variants) {
    const uint8_t* input = bytes ? bytes->data() : data;
    const size_t length = bytes ? bytes->size() : size;
    if (bytes && (length < 8 || std::memcmp(data + length - 8, bytes->data() + length - 8, 8) == 0)) continue;
    try {
      pe::Retriever loaded = pe::Retriever::from_bytes(input, length);
      exercise_loaded(loaded);
    } catch (const std::runtime_error&) {
    } catch (const std::invalid_argument&) {
    }
    const std::string path = write_scratch("input.bin", input, length);
    for (bool mmap : {false, true}) {
      try {
        pe::Retriever loaded = pe::Retriever::load(path, mmap);
        require(loaded.is_mapped() == mmap, "load(path, mmap) did not honour mmap");
        exercise_loaded(loaded);
      } catch (const std::runtime_error&) {
      } catch (const std::invalid_argument&) {
      }
    }
  }
}

// ---------------------------------------------------------------------------
// (c) .npy files

/// The input is a vectors .npy file, optionally followed by an ids .npy file
/// (split at the second "\x93NUMPY"). Both are parsed, imported with add_npy
/// and from_npy, and an accepted import must hold exactly the file's values.
inline void npy_target(const uint8_t* data, size_t size) {
  static const char kMagic[] = "\x93NUMPY";
  size_t split = size;
  for (size_t i = 1; i + 6 <= size; ++i) {
    if (std::memcmp(data + i, kMagic, 6) == 0) {
      split = i;
      break;
    }
  }
  pe::detail::npy::Header vectors_header;
  bool vectors_parsed = false;
  for (const auto& [begin, length] : {std::pair<size_t, size_t>{0, split}, {split, size - split}}) {
    try {
      const auto header = pe::detail::npy::parse_header(data + begin, length, "fuzz.npy");
      require(header.data_offset <= length, "npy data offset past the end of the file");
      for (int64_t extent : header.shape) require(extent >= 0, "npy shape with a negative extent");
      if (begin == 0) {
        vectors_header = header;
        vectors_parsed = true;
      }
    } catch (const std::runtime_error&) {
    } catch (const std::invalid_argument&) {
    }
  }
  const std::string vectors_path = write_scratch("vectors.npy", data, split);
  const std::string ids_path = write_scratch("ids.npy", data + split, size - split);
  try {
    pe::Retriever retriever = pe::Retriever::from_npy(vectors_path, ids_path, pe::Metric::inner_product);
    require(vectors_parsed && vectors_header.shape.size() == 2, "from_npy accepted a file parse_header refuses");
    const int64_t n = retriever.size(), dim = retriever.dim();
    require(n == vectors_header.shape[0] && dim == vectors_header.shape[1], "from_npy changed the shape");
    // Under "ip" with float32 storage the rows are stored exactly as in the file.
    const uint64_t data_bytes = split - vectors_header.data_offset;
    require(n == 0 || (static_cast<uint64_t>(dim) <= data_bytes / 4 &&
                       static_cast<uint64_t>(n) <= data_bytes / 4 / static_cast<uint64_t>(dim)),
            "from_npy accepted more rows than the file holds");
    const pe::Retriever::Matrix vectors = retriever.vectors();
    require(n == 0 || std::memcmp(vectors.data(), data + vectors_header.data_offset, sizeof(float) * n * dim) == 0,
            "from_npy changed the vectors");
    retriever.export_npy(scratch_directory() + "/out_vectors.npy", scratch_directory() + "/out_ids.npy");
    pe::Retriever again(dim, pe::Metric::inner_product);
    again.add_npy(scratch_directory() + "/out_vectors.npy", scratch_directory() + "/out_ids.npy");
    // Compared by size and bytes, not with Eigen's ==, which walks every column even of
    // an empty matrix: a file may declare (0, 2^61), which holds nothing and is valid.
    const pe::Retriever::Matrix round_trip = again.vectors();
    require(again.ids() == retriever.ids() && round_trip.rows() == n && round_trip.cols() == dim &&
                (n == 0 || std::memcmp(round_trip.data(), vectors.data(), sizeof(float) * n * dim) == 0),
            "export_npy/add_npy round trip differs");
  } catch (const std::runtime_error&) {
  } catch (const std::invalid_argument&) {
  }
}

}  // namespace pe::fuzz
