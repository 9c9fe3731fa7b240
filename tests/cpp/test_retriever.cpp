// pe::Retriever search: exactness against a brute-force reference on every
// kernel level and path, ties, exclusions, filters, padding, mutation and the
// error contract. Integer-valued vectors make every dot product exact in
// float32 whatever the summation order, so results must match bit for bit.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "pe/error.hpp"
#include "pe/retriever.hpp"
#include "test_support.hpp"
#include "retriever/kernels.hpp"  // internal: the half conversions are checked directly

namespace {

using pe::Metric;
using pe::Retriever;
using pe::SearchOptions;
using pe::Simd;
using pe::Storage;

constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> integer_vectors(int64_t rows, int64_t dim, uint32_t seed, int range = 3) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> value(-range, range);
  std::vector<float> out(static_cast<size_t>(rows * dim));
  for (auto& x : out) x = static_cast<float>(value(rng));
  return out;
}

std::vector<float> normal_vectors(int64_t rows, int64_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> value;
  std::vector<float> out(static_cast<size_t>(rows * dim));
  for (auto& x : out) x = value(rng);
  return out;
}

std::vector<int64_t> sequential_ids(int64_t n, int64_t scale = 10, int64_t offset = 7) {
  std::vector<int64_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = i * scale + offset;
  return ids;
}

struct Expected {
  std::vector<float> scores;
  std::vector<int64_t> ids;
};

// Brute force in double: score desc, row asc; pads with -inf / -1.
Expected brute_force(const std::vector<float>& gallery, const std::vector<int64_t>& ids,
                     const std::vector<float>& queries, int64_t dim, int64_t k, bool cosine,
                     const std::vector<int64_t>& excluded = {}, const std::vector<char>& allowed = {}) {
  const auto n = static_cast<int64_t>(ids.size());
  const auto nq = static_cast<int64_t>(queries.size()) / dim;
  auto norm = [&](const float* v) {
    double s = 0;
    for (int64_t c = 0; c < dim; ++c) s += static_cast<double>(v[c]) * v[c];
    return std::sqrt(s);
  };
  Expected out;
  out.scores.assign(static_cast<size_t>(nq * k), -kInf);
  out.ids.assign(static_cast<size_t>(nq * k), -1);
  for (int64_t q = 0; q < nq; ++q) {
    const float* query = queries.data() + q * dim;
    std::vector<std::pair<double, int64_t>> scored;
    for (int64_t r = 0; r < n; ++r) {
      if (!excluded.empty() && excluded[static_cast<size_t>(q)] == r) continue;
      if (!allowed.empty() && !allowed[static_cast<size_t>(r)]) continue;
      const float* row = gallery.data() + r * dim;
      double s = 0;
      for (int64_t c = 0; c < dim; ++c) s += static_cast<double>(query[c]) * row[c];
      if (cosine) s /= norm(query) * norm(row);
      scored.emplace_back(s, r);
    }
    std::sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    for (int64_t i = 0; i < std::min<int64_t>(k, static_cast<int64_t>(scored.size())); ++i) {
      out.scores[static_cast<size_t>(q * k + i)] = static_cast<float>(scored[static_cast<size_t>(i)].first);
      out.ids[static_cast<size_t>(q * k + i)] = ids[static_cast<size_t>(scored[static_cast<size_t>(i)].second)];
    }
  }
  return out;
}

struct Found {
  std::vector<float> scores;
  std::vector<int64_t> ids;
};

Found run(const Retriever& retriever, const std::vector<float>& queries, int64_t k, const SearchOptions& options = {}) {
  const int64_t nq = static_cast<int64_t>(queries.size()) / retriever.dim();
  Found found;
  found.scores.resize(static_cast<size_t>(nq * k));
  found.ids.resize(static_cast<size_t>(nq * k));
  retriever.search(queries.data(), nq, k, found.scores.data(), found.ids.data(), options);
  return found;
}

std::vector<Simd> all_levels() { return {Simd::scalar, Simd::avx2, Simd::avx512}; }

TEST(Retriever, ExactOnIntegerDataForEveryLevelPathAndThreadCount) {
  // (dim, gallery, queries): dims cover SIMD tails; up to kFewQueries (48)
  // queries take the streaming path, more the GEMM path; galleries are not
  // multiples of any tile.
  static_assert(Retriever::kFewQueries == 48, "update the shapes below");
  const std::vector<std::array<int64_t, 3>> shapes = {
      {1, 37, 3}, {3, 200, 30}, {16, 300, 48}, {17, 301, 49}, {64, 2100, 70}, {100, 500, 5}, {256, 3000, 4},
      {4200, 70, 20}};  // D = 4200: 20 queries exceed kFewQueryBytes, chunks shrink to fit L2
  for (const auto& shape : shapes) {
    const int64_t dim = shape[0], n = shape[1], nq = shape[2];
    const auto gallery = integer_vectors(n, dim, static_cast<uint32_t>(dim * 1000 + n));
    const auto queries = integer_vectors(nq, dim, static_cast<uint32_t>(dim * 7 + nq));
    const auto ids = sequential_ids(n);
    Retriever retriever(dim, Metric::inner_product);
    retriever.add(gallery.data(), n, ids.data());
    for (int64_t k : {int64_t{1}, int64_t{7}, n + 3}) {
      const Expected expected = brute_force(gallery, ids, queries, dim, k, false);
      for (Simd simd : all_levels()) {
        for (int threads : {1, 3}) {
          SearchOptions options;
          options.simd = simd;
          options.threads = threads;
          const Found found = run(retriever, queries, k, options);
          const std::string where = "dim " + std::to_string(dim) + " n " + std::to_string(n) + " nq " +
                                    std::to_string(nq) + " k " + std::to_string(k) + " simd " + pe::name(simd) +
                                    " threads " + std::to_string(threads);
          ASSERT_EQ(found.ids, expected.ids) << where;
          ASSERT_EQ(found.scores, expected.scores) << where;
        }
      }
    }
  }
}

TEST(Retriever, DuplicateRowsTieByInsertionOrder) {
  const int64_t dim = 32;
  auto base = integer_vectors(50, dim, 3);
  std::vector<float> gallery;
  // Every row three times, interleaved, so ties span thread slices and panels.
  for (int copy = 0; copy < 3; ++copy) gallery.insert(gallery.end(), base.begin(), base.end());
  const auto n = static_cast<int64_t>(gallery.size()) / dim;
  std::vector<int64_t> ids(static_cast<size_t>(n));
  std::iota(ids.begin(), ids.end(), 1000);
  std::reverse(ids.begin(), ids.end());  // ids unrelated to row order
  const auto queries = integer_vectors(60, dim, 4);
  for (Storage storage : {Storage::float32, Storage::float16}) {
    Retriever retriever(dim, Metric::inner_product, storage);
    retriever.add(gallery.data(), n, ids.data());
    const Expected expected = brute_force(gallery, ids, queries, dim, 9, false);
    for (Simd simd : all_levels()) {
      SearchOptions options;
      options.simd = simd;
      EXPECT_EQ(run(retriever, queries, 9, options).ids, expected.ids) << pe::name(simd) << " " << pe::name(storage);
      // 3 queries: streaming path.
      const std::vector<float> few(queries.begin(), queries.begin() + 3 * dim);
      const Expected expected_few = brute_force(gallery, ids, few, dim, 9, false);
      EXPECT_EQ(run(retriever, few, 9, options).ids, expected_few.ids) << pe::name(simd);
    }
  }
}

TEST(Retriever, AllScoresEqualReturnsFirstRows) {
  const int64_t dim = 8, n = 100;
  const std::vector<float> gallery(static_cast<size_t>(n * dim), 1.0f);
  const auto ids = sequential_ids(n);
  Retriever retriever(dim, Metric::inner_product);
  retriever.add(gallery.data(), n, ids.data());
  const std::vector<float> queries(static_cast<size_t>(60 * dim), 1.0f);
  for (Simd simd : all_levels()) {
    SearchOptions options;
    options.simd = simd;
    options.threads = 4;
    const Found found = run(retriever, queries, 5, options);
    for (int64_t q = 0; q < 60; ++q) {
      for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(found.ids[static_cast<size_t>(q * 5 + i)], ids[static_cast<size_t>(i)]);
    }
  }
}

TEST(Retriever, CosineMatchesNormalisedReference) {
  const int64_t dim = 48, n = 700;
  const auto gallery = normal_vectors(n, dim, 11);
  const auto queries = normal_vectors(60, dim, 12);
  const auto ids = sequential_ids(n);
  Retriever retriever(dim);  // cosine by default
  EXPECT_EQ(retriever.metric(), Metric::cosine);
  retriever.add(gallery.data(), n, ids.data());
  const Expected expected = brute_force(gallery, ids, queries, dim, 10, true);
  for (int64_t nq : {int64_t{1}, int64_t{60}}) {
    const std::vector<float> subset(queries.begin(), queries.begin() + nq * dim);
    const Found found = run(retriever, subset, 10);
    for (int64_t i = 0; i < nq * 10; ++i) {
      EXPECT_NEAR(found.scores[static_cast<size_t>(i)], expected.scores[static_cast<size_t>(i)], 1e-5);
      // Random Gaussian data: no near-ties at 1e-5, so ids must agree.
      EXPECT_EQ(found.ids[static_cast<size_t>(i)], expected.ids[static_cast<size_t>(i)]) << i;
    }
  }
  // Stored rows are unit length.
  const Retriever::Matrix stored = retriever.vectors();
  EXPECT_NEAR(stored.row(5).norm(), 1.0f, 1e-6);
}

TEST(Retriever, KLargerThanGalleryPadsAndEmptyGalleryIsAllPadding) {
  Retriever empty(4, Metric::inner_product);
  const std::vector<float> query = {1, 2, 3, 4};
  const Found none = run(empty, query, 3);
  EXPECT_EQ(none.ids, (std::vector<int64_t>{-1, -1, -1}));
  EXPECT_TRUE(std::isinf(none.scores[0]) && none.scores[0] < 0);

  Retriever retriever(4, Metric::inner_product);
  const std::vector<float> gallery = {1, 0, 0, 0, 0, 1, 0, 0};
  const std::vector<int64_t> ids = {5, 6};
  retriever.add(gallery.data(), 2, ids.data());
  const Found found = run(retriever, query, 4);
  EXPECT_EQ(found.ids, (std::vector<int64_t>{6, 5, -1, -1}));
  EXPECT_EQ(found.scores[0], 2.0f);
  EXPECT_EQ(found.scores[1], 1.0f);
  EXPECT_EQ(found.scores[3], -kInf);
}

TEST(Retriever, ExcludeSelfSkipsOwnRow) {
  const int64_t dim = 24, n = 90;
  const auto gallery = integer_vectors(n, dim, 21);
  const auto ids = sequential_ids(n);
  Retriever retriever(dim, Metric::inner_product);
  retriever.add(gallery.data(), n, ids.data());
  std::vector<int64_t> excluded(static_cast<size_t>(n));
  std::iota(excluded.begin(), excluded.end(), 0);
  const Expected expected = brute_force(gallery, ids, gallery, dim, 5, false, excluded);
  for (Simd simd : all_levels()) {
    SearchOptions options;
    options.exclude_self = true;
    options.simd = simd;
    const Found found = run(retriever, gallery, 5, options);
    EXPECT_EQ(found.ids, expected.ids) << pe::name(simd);
    for (int64_t q = 0; q < n; ++q) EXPECT_NE(found.ids[static_cast<size_t>(q * 5)], ids[static_cast<size_t>(q)]);
  }
  // k = n: every row but itself, then one pad.
  SearchOptions options;
  options.exclude_self = true;
  const Found all = run(retriever, gallery, n, options);
  EXPECT_EQ(all.ids[static_cast<size_t>(n - 1)], -1);
  EXPECT_NE(all.ids[static_cast<size_t>(n - 2)], -1);
}

TEST(Retriever, ExcludeIdsAndAllowedIds) {
  const int64_t dim = 20, n = 400;
  const auto gallery = integer_vectors(n, dim, 31);
  const auto ids = sequential_ids(n);
  const auto queries = integer_vectors(60, dim, 32);
  Retriever retriever(dim, Metric::inner_product);
  retriever.add(gallery.data(), n, ids.data());

  std::vector<int64_t> exclude_ids(60), excluded_rows(60);
  for (int64_t q = 0; q < 60; ++q) {
    excluded_rows[static_cast<size_t>(q)] = (q * 37) % n;
    exclude_ids[static_cast<size_t>(q)] = ids[static_cast<size_t>(excluded_rows[static_cast<size_t>(q)])];
  }
  exclude_ids[3] = 999999;  // not in the gallery: excludes nothing
  excluded_rows[3] = -1;
  std::vector<int64_t> allowed_ids;
  std::vector<char> allowed(static_cast<size_t>(n), 0);
  for (int64_t r = 0; r < n; r += 7) {
    allowed_ids.push_back(ids[static_cast<size_t>(r)]);
    allowed[static_cast<size_t>(r)] = 1;
  }
  allowed_ids.push_back(-12345);  // unknown ids are ignored
  for (Simd simd : all_levels()) {
    for (int64_t nq : {int64_t{4}, int64_t{60}}) {
      const std::vector<float> subset(queries.begin(), queries.begin() + nq * dim);
      SearchOptions options;
      options.simd = simd;
      options.exclude_ids = exclude_ids.data();
      const std::vector<int64_t> excluded_subset(excluded_rows.begin(), excluded_rows.begin() + nq);
      EXPECT_EQ(run(retriever, subset, 6, options).ids,
                brute_force(gallery, ids, subset, dim, 6, false, excluded_subset).ids);

      SearchOptions filter;
      filter.simd = simd;
      filter.allowed_ids = allowed_ids.data();
      filter.num_allowed_ids = static_cast<int64_t>(allowed_ids.size());
      const Found found = run(retriever, subset, 70, filter);  // more than the 58 allowed rows
      EXPECT_EQ(found.ids, brute_force(gallery, ids, subset, dim, 70, false, {}, allowed).ids);
      EXPECT_EQ(found.ids[69], -1);
    }
  }
  SearchOptions nothing;
  const int64_t none = 0;
  nothing.allowed_ids = &none;
  nothing.num_allowed_ids = 0;
  EXPECT_EQ(run(retriever, std::vector<float>(queries.begin(), queries.begin() + dim), 2, nothing).ids,
            (std::vector<int64_t>{-1, -1}));
}

TEST(Retriever, RemoveKeepsOrderAndSearchSeesIt) {
  const int64_t dim = 12, n = 300;
  const auto gallery = integer_vectors(n, dim, 41);
  const auto ids = sequential_ids(n);
  const auto queries = integer_vectors(60, dim, 42);
  Retriever retriever(dim, Metric::inner_product);
  retriever.add(gallery.data(), n, ids.data());
  std::vector<int64_t> gone;
  std::vector<float> kept_rows;
  std::vector<int64_t> kept_ids;
  for (int64_t r = 0; r < n; ++r) {
    if (r % 3 == 1 || r < 10) {
      gone.push_back(ids[static_cast<size_t>(r)]);
    } else {
      kept_ids.push_back(ids[static_cast<size_t>(r)]);
      kept_rows.insert(kept_rows.end(), gallery.begin() + r * dim, gallery.begin() + (r + 1) * dim);
    }
  }
  retriever.remove(gone);
  EXPECT_EQ(retriever.size(), static_cast<int64_t>(kept_ids.size()));
  EXPECT_EQ(retriever.ids(), kept_ids);
  EXPECT_FALSE(retriever.contains(gone[0]));
  for (int64_t nq : {int64_t{2}, int64_t{60}}) {
    const std::vector<float> subset(queries.begin(), queries.begin() + nq * dim);
    EXPECT_EQ(run(retriever, subset, 8).ids, brute_force(kept_rows, kept_ids, subset, dim, 8, false).ids);
  }
  // Re-adding a removed id works; it goes to the end.
  retriever.add(gallery.data(), 1, &gone[0]);
  EXPECT_EQ(retriever.ids().back(), gone[0]);
  retriever.remove(retriever.ids());
  EXPECT_EQ(retriever.size(), 0);
}

TEST(Retriever, IncrementalAddsMatchOneBatch) {
  const int64_t dim = 16, n = 500;
  const auto gallery = integer_vectors(n, dim, 51);
  const auto ids = sequential_ids(n);
  const auto queries = integer_vectors(60, dim, 52);
  Retriever one(dim, Metric::inner_product), many(dim, Metric::inner_product);
  one.add(gallery.data(), n, ids.data());
  for (int64_t r = 0; r < n; r += 13) {
    many.add(gallery.data() + r * dim, std::min<int64_t>(13, n - r), ids.data() + r);
  }
  EXPECT_EQ(run(one, queries, 5).ids, run(many, queries, 5).ids);
  Retriever reserved(dim, Metric::inner_product);
  reserved.reserve(n);
  reserved.add(gallery.data(), n, ids.data());
  EXPECT_EQ(run(one, queries, 5).scores, run(reserved, queries, 5).scores);
}

TEST(Retriever, EigenOverloadsAndMetadata) {
  Retriever::Matrix vectors(3, 2);
  vectors << 1, 0, 0, 1, 1, 1;
  Retriever retriever(2, Metric::inner_product);
  retriever.add(vectors, {10, 20, 30}, {"a.jpg", "b.jpg", "c.jpg"});
  Retriever::Matrix queries(2, 2);
  queries << 1, 0.5f, 0, 2;
  const auto result = retriever.search(queries, 2);
  EXPECT_EQ(result.ids(0, 0), 30);
  EXPECT_EQ(result.ids(0, 1), 10);
  EXPECT_FLOAT_EQ(result.scores(0, 0), 1.5f);
  EXPECT_EQ(result.ids(1, 0), 20);  // (0, 2): 20 and 30 tie at 2, row order decides
  EXPECT_EQ(result.ids(1, 1), 30);
  EXPECT_EQ(retriever.metadata(20), "b.jpg");
  // A strided block (every other row of a bigger matrix) is accepted too.
  Retriever::Matrix big(4, 2);
  big << 1, 0.5f, 9, 9, 0, 2, 9, 9;
  Eigen::Map<const Retriever::Matrix, 0, Eigen::OuterStride<>> strided(big.data(), 2, 2, Eigen::OuterStride<>(4));
  EXPECT_EQ(retriever.search(strided, 2).ids, result.ids);
  // Rows added without metadata get "".
  retriever.add(Retriever::Matrix::Ones(1, 2), {40});
  EXPECT_EQ(retriever.metadata(40), "");
  EXPECT_EQ(retriever.gallery().rows(), 4);
}

TEST(Retriever, Float16StorageIsCloseToFloat32) {
  const int64_t dim = 64, n = 3000;
  const auto gallery = normal_vectors(n, dim, 61);
  const auto queries = normal_vectors(60, dim, 62);
  const auto ids = sequential_ids(n);
  Retriever full(dim), half(dim, Metric::cosine, Storage::float16);
  full.add(gallery.data(), n, ids.data());
  half.add(gallery.data(), n, ids.data());
  for (int64_t nq : {int64_t{3}, int64_t{60}}) {
    const std::vector<float> subset(queries.begin(), queries.begin() + nq * dim);
    const Found a = run(full, subset, 10), b = run(half, subset, 10);
    int64_t overlap = 0;
    for (int64_t q = 0; q < nq; ++q) {
      for (int64_t i = 0; i < 10; ++i) {
        const auto begin = a.ids.begin() + q * 10;
        overlap += std::count(begin, begin + 10, b.ids[static_cast<size_t>(q * 10 + i)]);
        EXPECT_NEAR(a.scores[static_cast<size_t>(q * 10 + i)], b.scores[static_cast<size_t>(q * 10 + i)], 2e-3);
      }
    }
    EXPECT_GE(static_cast<double>(overlap) / static_cast<double>(nq * 10), 0.9);
  }
}

TEST(Retriever, HalfConversionMatchesHardware) {
  using pe::detail::kernels::float_to_half;
  using pe::detail::kernels::half_to_float;
  // Round trip of every finite half.
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    if ((bits & 0x7c00u) == 0x7c00u) continue;
    const float value = half_to_float(static_cast<uint16_t>(bits));
    ASSERT_EQ(float_to_half(value), bits) << bits;
  }
  // Rounding of arbitrary floats matches F16C where the CPU has it.
  if (pe::Retriever::resolve_simd(Simd::avx2) == Simd::scalar) GTEST_SKIP() << "no F16C here";
  std::mt19937 rng(5);
  std::vector<float> values;
  for (int i = 0; i < 200000; ++i) {
    uint32_t bits = rng();
    bits = (bits & 0x8000ffffu) | ((100u + bits % 45u) << 23);  // exponents around the half range
    float value;
    std::memcpy(&value, &bits, sizeof(value));
    values.push_back(value);
  }
  std::vector<uint16_t> portable(values.size()), hardware(values.size());
  pe::detail::kernels::scalar_kernels().to_half(values.data(), static_cast<int64_t>(values.size()), portable.data());
  const auto& simd = pe::detail::kernels::kernels_for(pe::Retriever::resolve_simd(Simd::avx2));
  ASSERT_EQ(simd.simd, Simd::avx2);
  simd.to_half(values.data(), static_cast<int64_t>(values.size()), hardware.data());
  EXPECT_EQ(portable, hardware);
}

// ---------------------------------------------------------------------------
// Errors: a clear message, and the retriever unchanged afterwards.

using pe::test::error_of;

TEST(RetrieverErrors, BadArgumentsSayWhatToDo) {
  Retriever retriever(4, Metric::cosine);
  const std::vector<float> good = {1, 2, 3, 4, 0, 1, 0, 0};
  const std::vector<int64_t> ids = {1, 2};
  retriever.add(good.data(), 2, ids.data(), nullptr);
  const std::vector<float> query = {1, 0, 0, 0};
  float score;
  int64_t id;

  EXPECT_THROW(Retriever(0), pe::InvalidArgumentError);
  EXPECT_NE(error_of([] { Retriever(Retriever::kMaxDim + 1); }).find("dim must be <= 16777216"), std::string::npos);
  EXPECT_EQ(Retriever(Retriever::kMaxDim).dim(), Retriever::kMaxDim);
  EXPECT_NE(error_of([&] { retriever.search(query.data(), 1, 0, &score, &id); }).find("k must be >= 1, got 0"),
            std::string::npos);
  EXPECT_THROW(retriever.search(query.data(), 1, -3, &score, &id), pe::InvalidArgumentError);

  std::vector<float> nan = good;
  nan[6] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<int64_t> new_ids = {3, 4};
  EXPECT_NE(error_of([&] { retriever.add(nan.data(), 2, new_ids.data()); }).find("vectors[1, 2] is NaN"),
            std::string::npos);
  std::vector<float> inf = good;
  inf[0] = kInf;
  EXPECT_NE(error_of([&] { retriever.add(inf.data(), 2, new_ids.data()); }).find("is Inf"), std::string::npos);
  std::vector<float> bad_query = {0, kInf, 0, 0};
  EXPECT_NE(error_of([&] { retriever.search(bad_query.data(), 1, 1, &score, &id); }).find("queries[0, 1] is Inf"),
            std::string::npos);
  const std::vector<float> zero(4, 0.0f);
  EXPECT_NE(error_of([&] { retriever.add(zero.data(), 1, new_ids.data()); }).find("all zeros"), std::string::npos);
  EXPECT_NE(error_of([&] { retriever.search(zero.data(), 1, 1, &score, &id); }).find("all zeros"), std::string::npos);

  EXPECT_NE(error_of([&] { retriever.add(good.data(), 2, ids.data()); }).find("id 1 (ids[0]) is already"),
            std::string::npos);
  const std::vector<int64_t> repeated = {7, 7};
  EXPECT_NE(error_of([&] { retriever.add(good.data(), 2, repeated.data()); }).find("lists id 7 more than once"),
            std::string::npos);
  const std::vector<int64_t> unknown = {2, 99};
  EXPECT_NE(error_of([&] { retriever.remove(unknown); }).find("id 99 (ids[1]) is not in the gallery"),
            std::string::npos);
  EXPECT_NE(error_of([&] { retriever.remove(std::vector<int64_t>{2, 2}); }).find("more than once"), std::string::npos);

  Retriever::Matrix wrong(1, 3);
  wrong.setOnes();
  EXPECT_NE(error_of([&] { retriever.add(wrong, {9}); }).find("3 columns but the retriever's dim is 4"),
            std::string::npos);
  EXPECT_NE(error_of([&] { retriever.search(wrong, 1); }).find("3 columns"), std::string::npos);

  SearchOptions self;
  self.exclude_self = true;
  EXPECT_NE(error_of([&] { retriever.search(query.data(), 1, 1, &score, &id, self); }).find("exclude_self"),
            std::string::npos);
  EXPECT_THROW(pe::parse_metric("l2"), pe::InvalidArgumentError);
  EXPECT_THROW(pe::parse_storage("int8"), pe::InvalidArgumentError);

  Retriever half(2, Metric::inner_product, Storage::float16);
  const std::vector<float> huge = {1e6f, 0};
  EXPECT_NE(error_of([&] { half.add(huge.data(), 1, ids.data()); }).find("does not fit float16"), std::string::npos);
  EXPECT_EQ(half.size(), 0);

  // Every failure above left the retriever as it was.
  EXPECT_EQ(retriever.size(), 2);
  EXPECT_EQ(retriever.ids(), ids);
  retriever.search(query.data(), 1, 1, &score, &id);
  EXPECT_EQ(id, 1);
}

TEST(RetrieverErrors, FailedAddOfLaterRowLeavesNoPartialRows) {
  Retriever retriever(2, Metric::inner_product);
  const std::vector<float> first = {1, 0};
  const int64_t first_id = 1;
  retriever.add(first.data(), 1, &first_id);
  // The duplicate is the last id of the batch: nothing of the batch may stay.
  const std::vector<float> batch = {0, 1, 1, 1, 2, 2};
  const std::vector<int64_t> ids = {2, 3, 1};
  EXPECT_THROW(retriever.add(batch.data(), 3, ids.data()), pe::InvalidArgumentError);
  EXPECT_EQ(retriever.size(), 1);
  EXPECT_FALSE(retriever.contains(2));
  const std::vector<int64_t> fine = {2, 3, 4};
  retriever.add(batch.data(), 3, fine.data());
  EXPECT_EQ(retriever.size(), 4);
}

}  // namespace
