// pe::Retriever persistence: save/load round trips (copy and mmap), the index
// file's defences (checksum, truncation, other formats, newer versions), the
// atomic write, and .npy import/export.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "retriever/index_file.hpp"  // internal: the checksum and the .npy writer
#include "retriever/npy_format.hpp"
#include "pe/error.hpp"
#include "pe/retriever.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using pe::Metric;
using pe::Retriever;
using pe::Storage;

using pe::test::read_file;
using pe::test::TempDir;
using pe::test::write_file;

Retriever make(int64_t n, int64_t dim, Metric metric, Storage storage, bool metadata, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> value;
  std::vector<float> vectors(static_cast<size_t>(n * dim));
  for (auto& x : vectors) x = value(rng);
  std::vector<int64_t> ids(static_cast<size_t>(n));
  std::vector<std::string> names(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    ids[static_cast<size_t>(i)] = 1000 - 3 * i;
    names[static_cast<size_t>(i)] = i % 5 == 0 ? "" : "images/" + std::to_string(i) + "_é.jpg";
  }
  Retriever retriever(dim, metric, storage);
  retriever.add(vectors.data(), n, ids.data(), metadata ? names.data() : nullptr);
  return retriever;
}

void expect_same(const Retriever& a, const Retriever& b) {
  ASSERT_EQ(a.dim(), b.dim());
  EXPECT_EQ(a.metric(), b.metric());
  EXPECT_EQ(a.storage(), b.storage());
  EXPECT_EQ(a.size(), b.size());
  EXPECT_EQ(a.ids(), b.ids());
  EXPECT_EQ(a.has_metadata(), b.has_metadata());
  EXPECT_TRUE(a.vectors() == b.vectors());
  for (int64_t id : a.ids()) EXPECT_EQ(a.metadata(id), b.metadata(id));
  if (a.size() == 0) return;
  const Retriever::Matrix queries = a.vectors().topRows(std::min<int64_t>(a.size(), 30));
  const auto ra = a.search(queries, 5), rb = b.search(queries, 5);
  EXPECT_EQ(ra.ids, rb.ids);
  EXPECT_TRUE(ra.scores == rb.scores);
}

TEST(RetrieverFile, ChecksumMatchesReferenceVectors) {
  // Expected values from `xxhsum -H1` (xxHash 0.8.1): the index files' checksum
  // must stay XXH64 with seed 0, or files written earlier stop loading.
  auto of = [](const void* data, size_t size) {
    pe::detail::index_file::Checksum hash;
    hash.update(data, size);
    return hash.digest();
  };
  EXPECT_EQ(of("", 0), 0xef46db3751d8e999ull);
  EXPECT_EQ(of("abc", 3), 0x44bc2cf5ad770999ull);
  std::string data;
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>((i * 7 + 3) % 256));
  EXPECT_EQ(of(data.data(), 37), 0xe32ef63802f5a3fdull);
  EXPECT_EQ(of(data.data(), 1000), 0x5f235fa033f1a3fbull);
  // Streaming in uneven pieces gives the same digest.
  pe::detail::index_file::Checksum hash;
  for (size_t at = 0, step = 1; at < data.size(); at += step, step = step * 3 % 41 + 1) {
    hash.update(data.data() + at, std::min(step, data.size() - at));
  }
  EXPECT_EQ(hash.digest(), 0x5f235fa033f1a3fbull);
}

TEST(RetrieverFile, RoundTripsCopyAndMmap) {
  TempDir dir;
  for (Storage storage : {Storage::float32, Storage::float16}) {
    for (Metric metric : {Metric::cosine, Metric::inner_product}) {
      for (bool metadata : {false, true}) {
        const Retriever original = make(257, 33, metric, storage, metadata);
        const std::string path = dir.file("index.per");
        original.save(path);
        const Retriever copy = Retriever::load(path);
        EXPECT_FALSE(copy.is_mapped());
        expect_same(original, copy);
        const Retriever mapped = Retriever::load(path, true);
        EXPECT_TRUE(mapped.is_mapped());
        expect_same(original, mapped);
        expect_same(original, Retriever::from_bytes(original.to_bytes().data(), original.to_bytes().size()));
      }
    }
  }
  EXPECT_EQ(dir.names().size(), 1u);  // no temporary files left behind
  const Retriever empty(7, Metric::inner_product);
  empty.save(dir.file("empty.per"));
  expect_same(empty, Retriever::load(dir.file("empty.per")));
  expect_same(empty, Retriever::load(dir.file("empty.per"), true));
  // An empty gallery's file has no vector bytes, so its dim may exceed the file's
  // size: a 1024-d one (PE-Core L) and the largest dim both load back, in memory,
  // mapped and from bytes, and take rows afterwards.
  for (const int64_t dim : {int64_t{1024}, Retriever::kMaxDim}) {
    const Retriever wide(dim, Metric::cosine, Storage::float16);
    const std::string path = dir.file("empty_wide.per");
    wide.save(path);
    expect_same(wide, Retriever::load(path));
    expect_same(wide, Retriever::load(path, true));
    const std::string bytes = wide.to_bytes();
    expect_same(wide, Retriever::from_bytes(bytes.data(), bytes.size()));
    Retriever loaded = Retriever::load(path, true);
    std::vector<float> row(static_cast<size_t>(dim), 0.0f);
    row[0] = 1.0f;
    const int64_t id = 42;
    loaded.add(row.data(), 1, &id, nullptr);
    EXPECT_EQ(loaded.size(), 1);
    EXPECT_EQ(loaded.dim(), dim);
  }
}

TEST(RetrieverFile, MappedIndexCopiesOnWriteAndLeavesFileAlone) {
  TempDir dir;
  const std::string path = dir.file("index.per");
  make(100, 16, Metric::inner_product, Storage::float32, true).save(path);
  const std::string before = read_file(path);
  Retriever mapped = Retriever::load(path, true);
  const Retriever reference = Retriever::load(path);
  mapped.remove(std::vector<int64_t>{1000, 997});
  EXPECT_FALSE(mapped.is_mapped());
  EXPECT_EQ(mapped.size(), 98);
  EXPECT_EQ(mapped.metadata(994), reference.metadata(994));
  Retriever mapped_again = Retriever::load(path, true);
  const std::vector<float> row(16, 0.5f);
  const int64_t id = 5;
  mapped_again.add(row.data(), 1, &id);
  EXPECT_FALSE(mapped_again.is_mapped());
  EXPECT_EQ(mapped_again.size(), 101);
  EXPECT_TRUE(mapped_again.vectors().topRows(100) == reference.vectors());
  EXPECT_EQ(read_file(path), before);
  // Saving over the file a mapping still reads from is safe (rename, new inode).
  const Retriever still_mapped = Retriever::load(path, true);
  mapped_again.save(path);
  expect_same(reference, still_mapped);
  EXPECT_EQ(Retriever::load(path).size(), 101);
}

TEST(RetrieverFile, CorruptedTruncatedForeignAndNewerFilesAreRefused) {
  TempDir dir;
  const std::string path = dir.file("index.per");
  make(50, 8, Metric::cosine, Storage::float32, true).save(path);
  const std::string good = read_file(path);
  auto load_error = [&](const std::string& bytes, bool mmap) {
    const std::string bad = dir.file("bad.per");
    write_file(bad, bytes);
    try {
      Retriever::load(bad, mmap);
    } catch (const std::runtime_error& error) {
      return std::string(error.what());
    }
    return std::string("no error");
  };
  for (bool mmap : {false, true}) {
    std::string flipped = good;
    flipped[128 + 50 * 8 + 100] ^= 0x10;  // a bit inside the vectors
    EXPECT_NE(load_error(flipped, mmap).find("checksum mismatch"), std::string::npos);
    std::string flipped_metadata = good;
    flipped_metadata[good.size() - 20] ^= 0x01;
    EXPECT_NE(load_error(flipped_metadata, mmap).find("checksum"), std::string::npos);
    EXPECT_NE(load_error(good.substr(0, good.size() - 1), mmap).find("truncated"), std::string::npos);
    EXPECT_NE(load_error(good.substr(0, 100), mmap).find("truncated"), std::string::npos);
    EXPECT_NE(load_error(good + "x", mmap).find("corrupted"), std::string::npos);
    std::string count = good;
    count[24] ^= 0x40;  // N
    EXPECT_NE(load_error(count, mmap).find("corrupted"), std::string::npos);
    std::string newer = good;
    newer[8] = 2;  // format version 2
    const std::string newer_error = load_error(newer, mmap);
    EXPECT_NE(newer_error.find("newer perception_retrieval"), std::string::npos) << newer_error;
    EXPECT_NE(newer_error.find("Upgrade"), std::string::npos);
    EXPECT_NE(load_error("hello, this is not an index", mmap).find("not a perception_retrieval index"),
              std::string::npos);
    EXPECT_NE(load_error("", mmap).find("not a perception_retrieval index"), std::string::npos);
    EXPECT_NE(load_error(std::string("\x93NUMPY\x01\x00", 8) + std::string(100, ' '), mmap).find(".npy"),
              std::string::npos);
  }
  EXPECT_THROW(Retriever::load(dir.file("missing.per")), pe::FileNotFoundError);
  EXPECT_THROW(Retriever::from_bytes(good.data(), good.size() - 8), pe::CorruptDataError);
}

TEST(RetrieverFile, FailedSaveLeavesExistingFileUntouched) {
  TempDir dir;
  const std::string path = dir.file("index.per");
  make(10, 8, Metric::cosine, Storage::float32, false).save(path);
  const std::string before = read_file(path);
  const Retriever bigger = make(2000, 64, Metric::cosine, Storage::float32, false);
  // A file-size limit makes write() fail half way (EFBIG), like a full disk.
  struct rlimit old_limit {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  const auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = 64 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string error;
  try {
    bigger.save(path);
  } catch (const std::runtime_error& e) {
    error = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_NE(error.find("failed"), std::string::npos) << error;
  EXPECT_EQ(read_file(path), before);
  EXPECT_EQ(dir.names().size(), 1u);  // the temporary file was removed
  EXPECT_THROW(bigger.save(dir.file("no/such/dir/index.per")), pe::IoError);
  EXPECT_THROW(bigger.save(dir.file("")), pe::InvalidArgumentError);  // a directory
}

TEST(RetrieverFile, NpyExportImport) {
  TempDir dir;
  for (Storage storage : {Storage::float32, Storage::float16}) {
    const Retriever original = make(123, 10, Metric::inner_product, storage, false);
    const std::string vectors = dir.file("vectors.npy"), ids = dir.file("ids.npy");
    original.export_npy(vectors, ids);
    const Retriever imported = Retriever::from_npy(vectors, ids, Metric::inner_product, storage);
    expect_same(original, imported);
    Retriever appended(10, Metric::inner_product, storage);
    appended.add_npy(vectors, ids);
    EXPECT_EQ(appended.ids(), original.ids());
  }
  // int32 ids are widened; float64 vectors are refused with the fix.
  const std::string ids32 = dir.file("ids32.npy"), vectors64 = dir.file("vectors64.npy");
  pe::detail::write_file_atomically(ids32, [](pe::detail::ByteSink& sink) {
    pe::detail::npy::write_header(sink, "<i4", {2});
    const int32_t values[2] = {4, 9};
    sink.write(values, sizeof(values));
  });
  const std::string vectors32 = dir.file("two.npy");
  pe::detail::write_file_atomically(vectors32, [](pe::detail::ByteSink& sink) {
    pe::detail::npy::write_header(sink, "<f4", {2, 3});
    const float values[6] = {1, 0, 0, 0, 1, 0};
    sink.write(values, sizeof(values));
  });
  Retriever small(3, Metric::inner_product);
  small.add_npy(vectors32, ids32);
  EXPECT_EQ(small.ids(), (std::vector<int64_t>{4, 9}));
  pe::detail::write_file_atomically(vectors64, [](pe::detail::ByteSink& sink) {
    pe::detail::npy::write_header(sink, "<f8", {1, 3});
    const double values[3] = {1, 2, 3};
    sink.write(values, sizeof(values));
  });
  try {
    small.add_npy(vectors64, ids32);
    FAIL() << "float64 accepted";
  } catch (const pe::InvalidArgumentError& error) {
    EXPECT_NE(std::string(error.what()).find("astype(np.float32)"), std::string::npos);
  }
  EXPECT_THROW(small.add_npy(vectors32, vectors32), pe::InvalidArgumentError);  // shape (2, 3) is not ids
  EXPECT_EQ(small.size(), 2);
}

}  // namespace
