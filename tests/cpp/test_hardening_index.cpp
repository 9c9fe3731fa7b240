// Fault injection for pe::Retriever's index files, beyond test_retriever_io.cpp:
// a file cut at every byte, every byte flipped, a full disk hit at every stage
// of a save (RLIMIT_FSIZE in a child process), a save killed with SIGKILL, and
// loads racing a save to the same path. In every case the previous index
// stays intact and loads with the same content; a damaged one is refused with
// an error that names the file, never loaded.

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "pe/retriever.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using pe::Metric;
using pe::Retriever;
using pe::Storage;

using pe::test::TempDir;

using pe::test::read_file;

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

Retriever make(int64_t n, int64_t dim, Storage storage, bool metadata, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> value;
  std::vector<float> vectors(static_cast<size_t>(n * dim));
  for (auto& x : vectors) x = value(rng);
  std::vector<int64_t> ids(static_cast<size_t>(n));
  std::vector<std::string> names(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    ids[static_cast<size_t>(i)] = 7 * i + static_cast<int64_t>(seed);
    names[static_cast<size_t>(i)] = "shelf/" + std::to_string(i) + ".jpg";
  }
  Retriever retriever(dim, Metric::cosine, storage);
  retriever.add(vectors.data(), n, ids.data(), metadata ? names.data() : nullptr);
  return retriever;
}

// The error of loading `bytes` from memory, from a file and from a mapped
// file; "" for a load that succeeded.
struct LoadErrors {
  std::string memory, file, mapped;
};

using pe::test::error_of;

LoadErrors load_errors(const std::string& bytes, const std::string& path, bool files) {
  LoadErrors errors;
  errors.memory = error_of([&] { Retriever::from_bytes(bytes.data(), bytes.size()); });
  if (files) {
    write_file(path, bytes);
    errors.file = error_of([&] { Retriever::load(path); });
    errors.mapped = error_of([&] { Retriever::load(path, true); });
  }
  return errors;
}

// Section boundaries of a v1 file (see pe/detail/index_file.hpp).
std::vector<size_t> boundaries(const std::string& bytes) {
  uint64_t count = 0, vectors_offset = 0, metadata_offset = 0, metadata_bytes = 0;
  std::memcpy(&count, bytes.data() + 24, 8);
  std::memcpy(&vectors_offset, bytes.data() + 48, 8);
  std::memcpy(&metadata_offset, bytes.data() + 56, 8);
  std::memcpy(&metadata_bytes, bytes.data() + 64, 8);
  std::vector<size_t> at = {0, 8, 12, 16, 20, 24, 32, 40, 48, 56, 64, 72, 80, 128, 128 + 8 * count, vectors_offset};
  if (metadata_offset) at.insert(at.end(), {metadata_offset, metadata_offset + 8 * (count + 1)});
  at.push_back(bytes.size() - 8);
  return at;
}

TEST(HardeningIndexFile, CutAtEveryByteIsRefusedAsTruncated) {
  TempDir dir;
  for (Storage storage : {Storage::float32, Storage::float16}) {
    const Retriever original = make(5, 3, storage, true, 1);
    const std::string good = original.to_bytes();
    const std::string path = dir.file("cut.pei");
    const auto sections = boundaries(good);
    for (size_t cut = 0; cut < good.size(); ++cut) {
      // Every byte from memory; through files at every section boundary and
      // its neighbours, and every byte of the header.
      bool files = cut <= 130;
      for (size_t boundary : sections) files = files || (cut + 1 >= boundary && cut <= boundary + 1);
      const LoadErrors errors = load_errors(good.substr(0, cut), path, files);
      const std::string expected = cut < 8 ? "is not a perception_retrieval index" : "is truncated";
      EXPECT_NE(errors.memory.find(expected), std::string::npos) << "cut at " << cut << ": " << errors.memory;
      if (files) {
        for (const std::string* error : {&errors.file, &errors.mapped}) {
          EXPECT_NE(error->find(path), std::string::npos) << "cut at " << cut << ": " << *error;
          EXPECT_NE(error->find(expected), std::string::npos) << "cut at " << cut << ": " << *error;
        }
      }
    }
  }
}

TEST(HardeningIndexFile, EveryFlippedByteIsRefused) {
  TempDir dir;
  const Retriever original = make(6, 4, Storage::float32, true, 2);
  const std::string good = original.to_bytes();
  const std::string path = dir.file("flipped.pei");
  int checksum_errors = 0;
  for (size_t at = 0; at < good.size(); ++at) {
    for (unsigned char mask : {0x01, 0x80, 0xFF}) {
      std::string bad = good;
      bad[at] = static_cast<char>(bad[at] ^ mask);
      const LoadErrors errors = load_errors(bad, path, at % 5 == 0);
      // Which check fires depends on the byte (magic, version, an
      // inconsistent header, the recorded size, the checksum); one must.
      EXPECT_FALSE(errors.memory.empty()) << "byte " << at << " ^ " << int{mask} << " was accepted";
      EXPECT_EQ(errors.memory.find("unexpected"), std::string::npos) << errors.memory;
      checksum_errors += errors.memory.find("checksum mismatch") != std::string::npos;
      if (at % 5 == 0) {
        EXPECT_NE(errors.file.find(path), std::string::npos) << "byte " << at << ": " << errors.file;
        EXPECT_NE(errors.mapped.find(path), std::string::npos) << "byte " << at << ": " << errors.mapped;
      }
    }
  }
  // The data sections (all but the 80 meaningful header bytes) are only
  // guarded by the checksum, so most flips must be reported as that.
  EXPECT_GT(checksum_errors, static_cast<int>(3 * (good.size() - 80)) - 1);
}

// Runs `body` in a forked child; its return value is the exit status.
int run_in_child(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    int code = 99;
    try {
      code = body();
    } catch (...) {
      code = 98;
    }
    std::fflush(nullptr);
    ::_exit(code);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool has_temp_files(const TempDir& dir) {
  for (const auto& name : dir.names()) {
    if (name.find(".tmp.") != std::string::npos) return true;
  }
  return false;
}

TEST(HardeningIndexFile, FullDiskAtEveryStageOfASaveKeepsThePreviousIndex) {
  TempDir dir;
  const std::string path = dir.file("index.pei");
  const Retriever previous = make(40, 16, Storage::float32, true, 3);
  previous.save(path);
  const std::string previous_bytes = read_file(path);
  const Retriever bigger = make(3000, 96, Storage::float32, true, 4);
  const std::string bigger_bytes = bigger.to_bytes();  // 128 + ids + vectors + metadata + checksum
  const auto stages = boundaries(bigger_bytes);
  std::vector<size_t> limits = {1, 100, 4096, size_t{1} << 20, bigger_bytes.size() - 1};
  for (size_t at : stages) {
    if (at > 0) limits.push_back(at);
  }
  for (size_t limit : limits) {
    // The child's file-size limit makes write() fail with EFBIG at `limit`
    // bytes, as a full disk fails with ENOSPC; SIGXFSZ is ignored so the
    // error comes back to save().
    const int status = run_in_child([&] {
      ::signal(SIGXFSZ, SIG_IGN);
      struct rlimit cap {};
      cap.rlim_cur = cap.rlim_max = limit;
      if (::setrlimit(RLIMIT_FSIZE, &cap) != 0) return 10;
      try {
        bigger.save(path);
      } catch (const std::runtime_error& error) {
        const std::string text = error.what();
        return text.find(".tmp.") != std::string::npos && text.find("failed") != std::string::npos ? 0 : 11;
      }
      return 12;  // the save claimed success
    });
    EXPECT_EQ(status, 0) << "file size limit " << limit;
    EXPECT_EQ(read_file(path), previous_bytes) << "file size limit " << limit;
    EXPECT_FALSE(has_temp_files(dir)) << "a failed save left its temporary file (limit " << limit << ")";
  }
  const Retriever reloaded = Retriever::load(path);
  EXPECT_EQ(reloaded.ids(), previous.ids());
  EXPECT_TRUE(reloaded.vectors() == previous.vectors());
  EXPECT_EQ(reloaded.metadata(previous.ids()[3]), previous.metadata(previous.ids()[3]));
  // With room for the whole file the same save succeeds.
  const int status = run_in_child([&] {
    struct rlimit cap {};
    cap.rlim_cur = cap.rlim_max = bigger_bytes.size();
    if (::setrlimit(RLIMIT_FSIZE, &cap) != 0) return 10;
    bigger.save(path);
    return 0;
  });
  EXPECT_EQ(status, 0);
  EXPECT_EQ(read_file(path), bigger_bytes);
}

TEST(HardeningIndexFile, SaveKilledMidWriteLeavesThePreviousIndex) {
  TempDir dir;
  const std::string path = dir.file("index.pei");
  const Retriever previous = make(50, 8, Storage::float32, true, 5);
  previous.save(path);
  const std::string previous_bytes = read_file(path);
  const Retriever next = make(60000, 256, Storage::float32, false, 6);  // ~62 MB: long enough to be caught
  const std::string next_bytes = next.to_bytes();
  int killed_mid_write = 0;
  for (int trial = 0; trial < 4; ++trial) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      next.save(path);
      ::_exit(0);
    }
    // Kill once the temporary file holds a few MB (or at once, or never, in
    // the last trials: the file must be complete whichever moment it is).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    const size_t wanted = trial == 0 ? 0 : (size_t{1} << 20) * static_cast<size_t>(trial * 8);
    bool saw_temp = false;
    while (trial < 3 && std::chrono::steady_clock::now() < deadline) {
      size_t temp_bytes = 0;
      for (const auto& name : dir.names()) {
        if (name.find(".tmp." + std::to_string(pid)) != std::string::npos) {
          std::error_code error;
          temp_bytes = static_cast<size_t>(fs::file_size(dir.file(name), error));
          saw_temp = true;
        }
      }
      if (saw_temp && temp_bytes >= wanted) break;
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) break;  // finished first
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (trial < 3) ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    const std::string now = read_file(path);
    if (now == previous_bytes) {
      killed_mid_write += saw_temp;
    } else {
      EXPECT_EQ(now, next_bytes) << "trial " << trial << ": the index is neither the old nor the new file";
    }
    const Retriever loaded = Retriever::load(path, trial % 2 == 1);
    EXPECT_EQ(loaded.size(), now == previous_bytes ? previous.size() : next.size());
    // A leftover temporary file (a kill cannot clean up) does not disturb
    // later saves; put the previous index back for the next trial.
    previous.save(path);
    EXPECT_EQ(read_file(path), previous_bytes);
  }
  EXPECT_GE(killed_mid_write, 1) << "no kill landed while the temporary file was being written";
}

TEST(HardeningIndexFile, LoadsRacingSavesSeeWholeFiles) {
  TempDir dir;
  const std::string path = dir.file("index.pei");
  const Retriever a = make(300, 32, Storage::float32, true, 7);
  const Retriever b = make(200, 32, Storage::float16, false, 8);
  a.save(path);
  std::atomic<bool> done{false};
  std::atomic<int> loads{0}, bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      while (!done.load()) {
        try {
          const Retriever loaded = Retriever::load(path, t == 1);
          if (loaded.ids() != a.ids() && loaded.ids() != b.ids()) ++bad;
        } catch (const std::exception&) {
          ++bad;  // a reader must never see a missing or partial file
        }
        ++loads;
      }
    });
  }
  for (int round = 0; round < 40 || loads.load() < 20; ++round) (round % 2 ? a : b).save(path);
  done = true;
  for (auto& reader : readers) reader.join();
  EXPECT_EQ(bad.load(), 0) << "of " << loads.load() << " loads";
}

TEST(HardeningIndexFile, SpecialPathsAreRefusedWithoutBlocking) {
  TempDir dir;
  const std::string fifo = dir.file("index.fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  write_file(dir.file("empty.pei"), "");
  fs::create_directories(dir.file("a_directory.pei"));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {fifo, "is not a regular file"},
      {dir.file("a_directory.pei"), "is not a regular file"},
      {"/dev/zero", "is not a regular file"},
      {dir.file("empty.pei"), "is not a perception_retrieval index"},
      {dir.file("missing.pei"), "cannot open"},
  };
  for (bool mmap : {false, true}) {
    for (const auto& [path, expected] : cases) {
      // In a child with an alarm: opening a FIFO for reading used to wait
      // forever for a writer.
      const int status = run_in_child([&, path = path, expected = expected] {
        ::alarm(20);
        const std::string error = error_of([&] { Retriever::load(path, mmap); });
        return error.find(path) != std::string::npos && error.find(expected) != std::string::npos ? 0 : 1;
      });
      EXPECT_EQ(status, 0) << path << " (mmap " << mmap << ")" << (status == 128 + SIGALRM ? ": it blocked" : "");
    }
  }
}

}  // namespace
