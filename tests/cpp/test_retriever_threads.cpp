// pe::Retriever thread safety: concurrent searches agree with a serial run, and
// searches running while other threads add and remove rows always see a
// consistent gallery (never a half-added batch or a torn row).

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "pe/retriever.hpp"

namespace {

using pe::Metric;
using pe::Retriever;
using pe::SearchOptions;

std::vector<float> random_rows(int64_t rows, int64_t dim, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> value(-scale, scale);
  std::vector<float> out(static_cast<size_t>(rows * dim));
  for (auto& x : out) x = value(rng);
  return out;
}

TEST(RetrieverThreads, ConcurrentSearchesMatchSerial) {
  const int64_t dim = 64, n = 4000;
  const auto gallery = random_rows(n, dim, 1, 1.0f);
  std::vector<int64_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = i;
  Retriever retriever(dim);
  retriever.add(gallery.data(), n, ids.data());
  const auto queries = random_rows(64, dim, 2, 1.0f);
  std::vector<float> expected_scores(64 * 10);
  std::vector<int64_t> expected_ids(64 * 10);
  retriever.search(queries.data(), 64, 10, expected_scores.data(), expected_ids.data());

  std::atomic<int> mismatches{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&, t] {
      std::vector<float> scores(64 * 10);
      std::vector<int64_t> found(64 * 10);
      SearchOptions options;
      options.threads = 1 + t % 2;
      for (int rep = 0; rep < 5; ++rep) {
        // Alternate the streaming path (4 queries) and the GEMM path (64).
        const int64_t nq = rep % 2 ? 4 : 64;
        retriever.search(queries.data(), nq, 10, scores.data(), found.data(), options);
        for (int64_t i = 0; i < nq * 10; ++i) {
          if (found[static_cast<size_t>(i)] != expected_ids[static_cast<size_t>(i)]) ++mismatches;
        }
      }
    });
  }
  for (auto& worker : workers) worker.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(RetrieverThreads, SearchDuringAddAndRemoveSeesConsistentGallery) {
  // Anchors: row i is 10 * e_i, query i is e_i, so anchor i always scores 10
  // for query i while every other row (random, |x| <= 0.1) scores at most
  // 0.1 < 10. Writers add and remove non-anchor rows in batches. 64 queries
  // take the GEMM path, 2 the streaming path.
  const int64_t dim = 64, anchors = 64;
  std::vector<float> anchor_rows(static_cast<size_t>(anchors * dim), 0.0f);
  std::vector<float> queries(static_cast<size_t>(anchors * dim), 0.0f);
  std::vector<int64_t> anchor_ids(anchors);
  for (int64_t i = 0; i < anchors; ++i) {
    anchor_rows[static_cast<size_t>(i * dim + i)] = 10.0f;
    queries[static_cast<size_t>(i * dim + i)] = 1.0f;
    anchor_ids[static_cast<size_t>(i)] = -1000 - i;
  }
  Retriever retriever(dim, Metric::inner_product);
  retriever.add(anchor_rows.data(), anchors, anchor_ids.data());

  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::atomic<int64_t> searches{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      const int64_t k = 8;
      std::vector<float> scores(static_cast<size_t>(anchors * k));
      std::vector<int64_t> ids(static_cast<size_t>(anchors * k));
      SearchOptions options;
      options.threads = 2;
      while (!done.load()) {
        const int64_t nq = t == 0 ? 2 : anchors;  // both paths
        retriever.search(queries.data(), nq, k, scores.data(), ids.data(), options);
        for (int64_t q = 0; q < nq; ++q) {
          if (ids[static_cast<size_t>(q * k)] != anchor_ids[static_cast<size_t>(q)] ||
              scores[static_cast<size_t>(q * k)] != 10.0f) {
            ++failures;
          }
          for (int64_t i = 1; i < k; ++i) {
            // Ranked, and no score beyond what any real row can reach.
            const float s = scores[static_cast<size_t>(q * k + i)];
            if (s > scores[static_cast<size_t>(q * k + i - 1)] || s > 0.1f) ++failures;
          }
        }
        ++searches;
      }
    });
  }
  int64_t next_id = 0;
  std::vector<int64_t> live;
  for (int round = 0; round < 60; ++round) {
    const int64_t batch = 50;
    const auto rows = random_rows(batch, dim, static_cast<uint32_t>(round + 10), 0.1f);
    std::vector<int64_t> ids(batch);
    for (auto& id : ids) {
      id = next_id++;
      live.push_back(id);
    }
    retriever.add(rows.data(), batch, ids.data());
    if (round % 3 == 2) {
      std::vector<int64_t> gone(live.begin(), live.begin() + 40);
      live.erase(live.begin(), live.begin() + 40);
      retriever.remove(gone);
    }
  }
  // Keep writing until every reader has run a good number of searches.
  while (searches.load() < 60) std::this_thread::yield();
  done = true;
  for (auto& reader : readers) reader.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(retriever.size(), anchors + static_cast<int64_t>(live.size()));
}

TEST(RetrieverThreads, InterruptStopsSearch) {
  const int64_t dim = 64, n = 5000;
  const auto gallery = random_rows(n, dim, 3, 1.0f);
  std::vector<int64_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = i;
  Retriever retriever(dim);
  retriever.add(gallery.data(), n, ids.data());
  std::vector<float> scores(static_cast<size_t>(n)), reference_scores(static_cast<size_t>(n));
  std::vector<int64_t> found(static_cast<size_t>(n)), reference(static_cast<size_t>(n));
  retriever.search(gallery.data(), 500, 2, reference_scores.data(), reference.data());
  for (int64_t nq : {int64_t{3}, int64_t{500}}) {  // both paths poll
    std::atomic<int> calls{0};
    SearchOptions stop;
    stop.interrupt = [&] { return ++calls > 0; };
    EXPECT_THROW(retriever.search(gallery.data(), nq, 2, scores.data(), found.data(), stop), pe::SearchInterrupted);
    EXPECT_GE(calls.load(), 1);
    SearchOptions go_on;
    go_on.interrupt = [] { return false; };
    retriever.search(gallery.data(), nq, 2, scores.data(), found.data(), go_on);
    EXPECT_TRUE(std::equal(found.begin(), found.begin() + nq * 2, reference.begin()));
  }
}

}  // namespace
