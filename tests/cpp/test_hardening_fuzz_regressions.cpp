// Replays every input the fuzzers ever crashed on (tests/data/fuzz_regressions/
// <harness>/) through the harness bodies in fuzz/targets.hpp, so each bug stays
// fixed in the plain build and under ASan/UBSan (scripts/sanitize.sh). Then
// pins down what each fix promises, with the error a user sees.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "../../fuzz/targets.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;

const fs::path kRegressions = fs::path(PE_TEST_DATA_DIR) / "fuzz_regressions";

using pe::test::read_bytes;

std::vector<fs::path> inputs_of(const std::string& harness) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(kRegressions / harness)) {
    // Dot files (.keep holds an empty folder in git) are not inputs.
    if (entry.is_regular_file() && entry.path().filename().string()[0] != '.') files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

void replay(const std::string& harness, void (*target)(const uint8_t*, size_t)) {
  ASSERT_TRUE(fs::is_directory(kRegressions / harness)) << (kRegressions / harness) << " is missing";
  const auto files = inputs_of(harness);
  if (files.empty()) GTEST_SKIP() << "no crash input saved for " << harness << " yet";
  for (const auto& file : files) {
    const auto data = read_bytes(file);
    try {
      target(data.data(), data.size());
    } catch (const std::exception& error) {
      ADD_FAILURE() << file << ": " << error.what();
    }
  }
}

TEST(FuzzRegressions, ImageInputsReplayCleanly) { replay("fuzz_image", pe::fuzz::image_target); }
TEST(FuzzRegressions, IndexInputsReplayCleanly) { replay("fuzz_index", pe::fuzz::index_target); }
TEST(FuzzRegressions, NpyInputsReplayCleanly) { replay("fuzz_npy", pe::fuzz::npy_target); }


// fuzz_image found: width * height of a PNG header claiming 2^32 - 1 per side
// overflowed int64 (undefined behaviour; in practice it wrapped negative and
// slipped past the bomb check). It is a bomb, and the message says how big.
TEST(FuzzRegressions, PngSidesOf4294967295AreABombNotAnOverflow) {
  const auto data = read_bytes(kRegressions / "fuzz_image" / "png_ihdr_4294967295_squared_overflows_int64");
  const std::string error = pe::test::error_of([&] { pe::image::decode_memory(data.data(), data.size(), "huge.png"); });
  EXPECT_NE(error.find("huge.png: the PNG header declares 4294967295 x 4294967295 = 18446744065119617025 pixels"),
            std::string::npos)
      << error;
}

// fuzz_npy found: a shape extent past int64 made std::stoll throw
// std::out_of_range (uncaught by callers expecting runtime_error for bad files).
TEST(FuzzRegressions, NpyExtentPastInt64IsAMalformedShape) {
  const fs::path file = kRegressions / "fuzz_npy" / "shape_extent_past_int64";
  const auto data = read_bytes(file);
  const std::string error = pe::test::error_of([&] { pe::detail::npy::parse_header(data.data(), data.size(), "x.npy"); });
  EXPECT_NE(error.find("x.npy: malformed shape in .npy header"), std::string::npos) << error;
}

// Split a harness input into its vectors and ids files, as npy_target does.
std::pair<std::string, std::string> split_pair(const fs::path& file, const std::string& stem) {
  const auto data = read_bytes(file);
  size_t split = data.size();
  for (size_t i = 1; i + 6 <= data.size(); ++i) {
    if (std::memcmp(data.data() + i, "\x93NUMPY", 6) == 0) {
      split = i;
      break;
    }
  }
  const std::string vectors = pe::fuzz::write_scratch(stem + "_vectors.npy", data.data(), split);
  const std::string ids = pe::fuzz::write_scratch(stem + "_ids.npy", data.data() + split, data.size() - split);
  return {vectors, ids};
}

// Seeded, not found by mutation: shape (2^62, 4) made the byte count
// 2^62 * 4 * 4 wrap to 0, the size check passed, and add() read far past the
// mapping (SIGSEGV). Now it is a truncated file, named.
TEST(FuzzRegressions, NpyRowCountWhoseByteCountWrapsIsTruncated) {
  const auto files = split_pair(kRegressions / "fuzz_npy" / "rows_2e62_byte_count_wraps", "wraps");
  const std::string vectors = files.first;
  const std::string error = pe::test::error_of([&] { pe::Retriever::from_npy(files.first, files.second); });
  EXPECT_NE(error.find(vectors + " is truncated: shape (4611686018427387904, 4) needs"), std::string::npos) << error;
}

// Seeded: a hand-written header of 61 + 10 bytes leaves the data at offset 71,
// misaligned for float and int64; casting it was undefined behaviour (UBSan
// "misaligned address"). Now it is copied and imported exactly.
TEST(FuzzRegressions, NpyMisalignedDataIsImportedExactly) {
  const auto [vectors, ids] = split_pair(kRegressions / "fuzz_npy" / "misaligned_data_offset", "misaligned");
  const pe::Retriever retriever = pe::Retriever::from_npy(vectors, ids, pe::Metric::inner_product);
  EXPECT_EQ(retriever.ids(), (std::vector<int64_t>{3, 8}));
  pe::Retriever::Matrix expected(2, 3);
  expected << 1, 2, 3, 4, 5, 6;
  EXPECT_EQ(retriever.vectors(), expected);
}

}  // namespace
