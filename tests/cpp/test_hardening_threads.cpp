// pe::Retriever under concurrent mutation, checked exactly (scripts/sanitize.sh
// also runs this under ThreadSanitizer). One writer applies a fixed sequence
// of adds, removes and reserves; reader threads search, serialise and query
// the retriever meanwhile. The gallery after each mutation (snapshot s) is
// known in advance, and a naive reference gives each snapshot's exact top-k
// (integer-valued vectors, so float scores are exact and ties are real). Every
// search must equal the reference of one snapshot between the ones current
// when it started and ended: never a torn row, a half-added batch, or a result
// mixing two galleries.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "pe/retriever.hpp"

namespace {

using pe::Metric;
using pe::Retriever;
using pe::SearchOptions;
using pe::Storage;

constexpr int64_t kDim = 16;
constexpr int64_t kK = 7;

struct Row {
  int64_t id;
  std::vector<float> values;
};

// One mutation of the writer's script.
struct Mutation {
  enum Kind { add, remove, reserve } kind = add;
  std::vector<Row> rows;         // add
  std::vector<int64_t> ids;      // remove
  int64_t capacity = 0;          // reserve
};

struct Expected {
  std::vector<float> scores;  // queries x k
  std::vector<int64_t> ids;
};

// Exact top-k of `gallery` (rows in insertion order): by score, then by row.
Expected reference(const std::vector<Row>& gallery, const std::vector<float>& queries, int64_t num_queries) {
  Expected out;
  out.scores.assign(static_cast<size_t>(num_queries * kK), -std::numeric_limits<float>::infinity());
  out.ids.assign(static_cast<size_t>(num_queries * kK), -1);
  std::vector<std::pair<float, size_t>> scored(gallery.size());
  for (int64_t q = 0; q < num_queries; ++q) {
    for (size_t r = 0; r < gallery.size(); ++r) {
      double sum = 0;  // small integers: exact in float and double alike
      for (int64_t c = 0; c < kDim; ++c) {
        sum += double{queries[static_cast<size_t>(q * kDim + c)]} * gallery[r].values[static_cast<size_t>(c)];
      }
      scored[r] = {static_cast<float>(sum), r};
    }
    std::stable_sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (size_t i = 0; i < std::min<size_t>(scored.size(), kK); ++i) {
      out.scores[static_cast<size_t>(q * kK) + i] = scored[i].first;
      out.ids[static_cast<size_t>(q * kK) + i] = gallery[scored[i].second].id;
    }
  }
  return out;
}

std::vector<float> integer_rows(std::mt19937& rng, int64_t rows) {
  std::uniform_int_distribution<int> value(-3, 3);
  std::vector<float> out(static_cast<size_t>(rows * kDim));
  for (auto& x : out) x = static_cast<float>(value(rng));
  return out;
}

void run_exact_snapshot_test(Storage storage) {
  std::mt19937 rng(storage == Storage::float16 ? 17 : 11);
  // The writer's script and the gallery after each step.
  std::vector<Mutation> script;
  std::vector<std::vector<Row>> snapshots(1);
  int64_t next_id = 1000;
  for (int step = 0; step < 36; ++step) {
    Mutation mutation;
    std::vector<Row> gallery = snapshots.back();
    if (step % 9 == 8) {
      mutation.kind = Mutation::reserve;
      mutation.capacity = static_cast<int64_t>(gallery.size()) + 500;
    } else if (step % 3 == 2 && gallery.size() > 20) {
      mutation.kind = Mutation::remove;
      std::shuffle(gallery.begin(), gallery.end(), rng);
      for (size_t i = 0; i < gallery.size() / 3; ++i) mutation.ids.push_back(gallery[i].id);
      gallery = snapshots.back();
      gallery.erase(std::remove_if(gallery.begin(), gallery.end(),
                                   [&](const Row& row) {
                                     return std::find(mutation.ids.begin(), mutation.ids.end(), row.id) !=
                                            mutation.ids.end();
                                   }),
                    gallery.end());
    } else {
      const int64_t count = 20 + step * 3;
      const auto values = integer_rows(rng, count);
      for (int64_t i = 0; i < count; ++i) {
        Row row{next_id++, std::vector<float>(values.begin() + i * kDim, values.begin() + (i + 1) * kDim)};
        // Exact copies of earlier rows: ties that must break by row.
        if (step % 4 == 1 && i % 5 == 0 && !gallery.empty()) {
          row.values = gallery[static_cast<size_t>(i) % gallery.size()].values;
        }
        mutation.rows.push_back(row);
        gallery.push_back(row);
      }
    }
    script.push_back(std::move(mutation));
    snapshots.push_back(std::move(gallery));
  }
  // Queries for both search paths: a few (streaming) and many (blocked GEMM).
  const auto few = integer_rows(rng, 3);
  const auto many = integer_rows(rng, Retriever::kFewQueries + 9);
  const int64_t num_many = Retriever::kFewQueries + 9;
  std::vector<Expected> expected_few, expected_many;
  for (const auto& gallery : snapshots) {
    expected_few.push_back(reference(gallery, few, 3));
    expected_many.push_back(reference(gallery, many, num_many));
  }

  Retriever retriever(kDim, Metric::inner_product, storage);
  std::atomic<int64_t> version{0};   // snapshots fully applied
  std::atomic<bool> done{false};
  std::atomic<int64_t> searches{0};
  std::mutex report_mutex;
  std::vector<std::string> failures;
  std::set<int64_t> seen_snapshots;
  auto fail = [&](const std::string& what) {
    std::lock_guard<std::mutex> lock(report_mutex);
    if (failures.size() < 10) failures.push_back(what);
  };

  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      const bool use_many = t % 2 == 1;
      const int64_t nq = use_many ? num_many : 3;
      const auto& queries = use_many ? many : few;
      const auto& expected = use_many ? expected_many : expected_few;
      std::vector<float> scores(static_cast<size_t>(nq * kK));
      std::vector<int64_t> ids(static_cast<size_t>(nq * kK));
      SearchOptions options;
      options.threads = 1 + t / 2;  // single- and multi-threaded searches
      while (!done.load()) {
        const int64_t before = version.load();
        try {
          retriever.search(queries.data(), nq, kK, scores.data(), ids.data(), options);
        } catch (const std::exception& error) {
          fail(std::string("search threw during a mutation: ") + error.what());
        }
        const int64_t after = std::min<int64_t>(version.load() + 1, static_cast<int64_t>(snapshots.size()) - 1);
        int64_t match = -1;
        for (int64_t s = before; s <= after && match < 0; ++s) {
          const Expected& snapshot = expected[static_cast<size_t>(s)];
          if (ids == snapshot.ids && scores == snapshot.scores) match = s;
        }
        if (match < 0) {
          fail("reader " + std::to_string(t) + ": a search matches no snapshot in [" + std::to_string(before) + ", " +
               std::to_string(after) + "]");
        } else {
          std::lock_guard<std::mutex> lock(report_mutex);
          seen_snapshots.insert(match);
        }
        ++searches;
      }
    });
  }
  // A reader of the other const methods: a serialised copy is one snapshot too.
  readers.emplace_back([&] {
    while (!done.load()) {
      const int64_t before = version.load();
      const std::string bytes = retriever.to_bytes();
      const int64_t after = std::min<int64_t>(version.load() + 1, static_cast<int64_t>(snapshots.size()) - 1);
      std::vector<int64_t> ids;
      try {
        ids = Retriever::from_bytes(bytes.data(), bytes.size()).ids();
      } catch (const std::exception& error) {
        fail(std::string("to_bytes() during a mutation gave a damaged index: ") + error.what());
        continue;
      }
      bool matched = false;
      for (int64_t s = before; s <= after && !matched; ++s) {
        const auto& gallery = snapshots[static_cast<size_t>(s)];
        matched = ids.size() == gallery.size() &&
                  std::equal(ids.begin(), ids.end(), gallery.begin(), [](int64_t id, const Row& row) { return id == row.id; });
      }
      if (!matched) fail("to_bytes() holds no snapshot's ids");
      (void)retriever.size();
      (void)retriever.contains(1000);
    }
  });

  // The writer: each step waits for a search to finish after the previous
  // one, so readers see the gallery at many stages, not just the last.
  for (size_t step = 0; step < script.size(); ++step) {
    const int64_t searched = searches.load();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (searches.load() < searched + 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    const Mutation& mutation = script[step];
    if (mutation.kind == Mutation::add) {
      std::vector<float> values;
      std::vector<int64_t> ids;
      for (const Row& row : mutation.rows) {
        values.insert(values.end(), row.values.begin(), row.values.end());
        ids.push_back(row.id);
      }
      retriever.add(values.data(), static_cast<int64_t>(ids.size()), ids.data());
    } else if (mutation.kind == Mutation::remove) {
      retriever.remove(mutation.ids);
    } else {
      retriever.reserve(mutation.capacity);
    }
    version.store(static_cast<int64_t>(step) + 1);
  }
  const int64_t final_searches = searches.load();
  while (searches.load() < final_searches + 4) std::this_thread::yield();
  done = true;
  for (auto& reader : readers) reader.join();

  for (const auto& failure : failures) ADD_FAILURE() << failure;
  EXPECT_EQ(retriever.size(), static_cast<int64_t>(snapshots.back().size()));
  // Not vacuous: the readers saw the gallery at many different stages.
  EXPECT_GE(seen_snapshots.size(), script.size() / 2) << "searches saw only " << seen_snapshots.size() << " snapshots";
}

TEST(HardeningThreads, SearchesDuringAddRemoveReserveMatchOneSnapshotExactly) {
  run_exact_snapshot_test(Storage::float32);
}

TEST(HardeningThreads, Float16GalleryUnderMutationMatchesOneSnapshotExactly) {
  run_exact_snapshot_test(Storage::float16);
}

}  // namespace
