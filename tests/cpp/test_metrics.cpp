// Tests of pe::metrics and pe::metrics::Report against hand-computed values and
// the golden cases written by the naive Python reference (tests/data/).

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "pe/error.hpp"
#include "pe/metrics.hpp"
#include "pe/report.hpp"
#include "test_support.hpp"

namespace {

using pe::metrics::APNormalizer;
using pe::metrics::evaluate;
using pe::metrics::evaluate_scores;
using pe::metrics::Evaluation;
using pe::metrics::Options;

Options make_options(std::vector<int> ks, std::vector<int> map_ks, APNormalizer normalizer = APNormalizer::min_r_k,
                     bool exclude_self = false) {
  Options options;
  options.ks = std::move(ks);
  options.map_ks = std::move(map_ks);
  options.ap_normalizer = normalizer;
  options.exclude_self = exclude_self;
  return options;
}

// Element-wise equality in which NaN (a lone query) equals NaN.
bool same_values(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  }
  return true;
}

// The toy catalogue of examples/cpp/metrics_example.cpp, computed by hand there.
TEST(Metrics, ToyCatalogueMatchesHandComputedValues) {
  const std::vector<int64_t> gallery_ids{10, 10, 20, 30, 30, 30};
  const std::vector<int64_t> query_ids{10, 20, 30};
  const std::vector<int64_t> ranking{0, 2, 3, 1, 4, 3, 4, 5, 0, 1, 3, 0, 4, 1, 5};
  const Evaluation e = evaluate(ranking, query_ids, gallery_ids);
  EXPECT_DOUBLE_EQ(e.value("P@1"), 2.0 / 3);
  EXPECT_DOUBLE_EQ(e.value("P@5"), (0.4 + 0.0 + 0.6) / 3);
  EXPECT_DOUBLE_EQ(e.value("R@1"), (0.5 + 0.0 + 1.0 / 3) / 3);
  EXPECT_DOUBLE_EQ(e.value("R@5"), 2.0 / 3);
  EXPECT_DOUBLE_EQ(e.value("HitRate@1"), 2.0 / 3);
  EXPECT_DOUBLE_EQ(e.value("mAP@10"), (0.75 + 0.0 + (1.0 + 2.0 / 3 + 3.0 / 5) / 3) / 3);
  EXPECT_EQ(e.num_queries, 3);
  EXPECT_EQ(e.lone_queries, 0);
  EXPECT_EQ(e.num_relevant, (std::vector<int64_t>{2, 1, 3}));
  // Per query, q1 finds nothing: zeros, not NaN (it is not lone).
  EXPECT_DOUBLE_EQ(e.per_query_precision[1 * 2 + 0], 0.0);
  EXPECT_DOUBLE_EQ(e.per_query_average_precision[1], 0.0);
}

// One query, R = 5 > k = 4, relevant at ranks 2 and 4:
// AP sum = 1/2 + 2/4 = 1.0; min(R,k) = 4 -> 0.25; R = 5 -> 0.2; hits = 2 -> 0.5.
TEST(Metrics, EachApNormalizerWhenRExceedsK) {
  const std::vector<int64_t> gallery_ids{0, 7, 0, 7, 7, 7, 7};
  const std::vector<int64_t> ranking{0, 1, 2, 3};
  const std::vector<int64_t> query_ids{7};
  const double expected[] = {0.25, 0.2, 0.5};
  const APNormalizer normalizers[] = {APNormalizer::min_r_k, APNormalizer::r, APNormalizer::hits};
  for (int i = 0; i < 3; ++i) {
    const Evaluation e = evaluate(ranking, query_ids, gallery_ids, make_options({4}, {4}, normalizers[i]));
    EXPECT_DOUBLE_EQ(e.value("mAP@4"), expected[i]) << pe::metrics::name(normalizers[i]);
    EXPECT_DOUBLE_EQ(e.value("P@4"), 0.5);
    EXPECT_DOUBLE_EQ(e.value("R@4"), 2.0 / 5);  // R counts relevant items never retrieved
    EXPECT_EQ(e.ap_normalizer, normalizers[i]);
  }
}

// R = 1 < k = 5, the one relevant item at rank 3: P@5 still divides by 5.
// AP sum = 1/3 and every normaliser is 1 here.
TEST(Metrics, RSmallerThanKDividesPrecisionByK) {
  const std::vector<int64_t> gallery_ids{1, 2, 3, 4, 5, 6};
  const std::vector<int64_t> ranking{0, 1, 2, 3, 4};
  for (auto normalizer : {APNormalizer::min_r_k, APNormalizer::r, APNormalizer::hits}) {
    const Evaluation e = evaluate(ranking, {3}, gallery_ids, make_options({1, 5}, {5}, normalizer));
    EXPECT_DOUBLE_EQ(e.value("P@5"), 1.0 / 5);
    EXPECT_DOUBLE_EQ(e.value("R@5"), 1.0);
    EXPECT_DOUBLE_EQ(e.value("R@1"), 0.0);
    EXPECT_DOUBLE_EQ(e.value("HitRate@5"), 1.0);
    EXPECT_DOUBLE_EQ(e.value("mAP@5"), 1.0 / 3);
  }
}

TEST(Metrics, NoHitsGivesZeroForEveryNormalizer) {
  const std::vector<int64_t> gallery_ids{1, 1, 2, 2};
  for (auto normalizer : {APNormalizer::min_r_k, APNormalizer::r, APNormalizer::hits}) {
    const Evaluation e = evaluate(std::vector<int64_t>{2, 3}, {1}, gallery_ids, make_options({1, 2}, {2}, normalizer));
    EXPECT_EQ(e.value("mAP@2"), 0.0);
    EXPECT_EQ(e.value("P@2"), 0.0);
    EXPECT_EQ(e.value("HitRate@2"), 0.0);
  }
}

TEST(Metrics, LoneQueriesAreExcludedAndCounted) {
  const std::vector<int64_t> gallery_ids{1, 1, 2};
  const std::vector<int64_t> ranking{0, 1, 0, 1};  // q0 id 1 (R=2), q1 id 9 (lone)
  const Evaluation e = evaluate(ranking, {1, 9}, gallery_ids, make_options({1}, {2}));
  EXPECT_EQ(e.num_queries, 1);
  EXPECT_EQ(e.lone_queries, 1);
  EXPECT_EQ(e.total_queries, 2);
  EXPECT_DOUBLE_EQ(e.value("P@1"), 1.0);  // the lone query's 0 does not drag the mean
  EXPECT_TRUE(std::isnan(e.per_query_precision[1]));
  EXPECT_TRUE(std::isnan(e.per_query_average_precision[1]));
  EXPECT_EQ(e.num_relevant[1], 0);
}

TEST(Metrics, AllLoneGivesNanAverages) {
  const Evaluation e = evaluate(std::vector<int64_t>{0}, {5}, {1, 2}, make_options({1}, {1}));
  EXPECT_EQ(e.num_queries, 0);
  EXPECT_TRUE(std::isnan(e.value("P@1")));
  EXPECT_TRUE(std::isnan(e.value("mAP@1")));
}

TEST(Metrics, KBeyondGalleryCountsMissingRanksAsNonRelevant) {
  // Gallery of 3, both relevant items found; P@10 = 2/10, R@10 = 1,
  // AP@10 = (1 + 2/2) / min(2, 10) = 1.
  const std::vector<int64_t> gallery_ids{4, 4, 5};
  const Evaluation e = evaluate(std::vector<int64_t>{0, 1, 2}, {4}, gallery_ids, make_options({10}, {10}));
  EXPECT_DOUBLE_EQ(e.value("P@10"), 0.2);
  EXPECT_DOUBLE_EQ(e.value("R@10"), 1.0);
  EXPECT_DOUBLE_EQ(e.value("mAP@10"), 1.0);
}

TEST(Metrics, TrailingMinusOnePadsAsNonRelevant) {
  const std::vector<int64_t> gallery_ids{4, 4, 5};
  const Evaluation padded = evaluate(std::vector<int64_t>{2, 0, -1, -1}, {4}, gallery_ids, make_options({4}, {4}));
  // relevant at rank 2 only: P@4 = 1/4, R@4 = 1/2, AP@4 = (1/2) / 2
  EXPECT_DOUBLE_EQ(padded.value("P@4"), 0.25);
  EXPECT_DOUBLE_EQ(padded.value("R@4"), 0.5);
  EXPECT_DOUBLE_EQ(padded.value("mAP@4"), 0.25);
}

TEST(Metrics, SelfExclusionRemovesOwnIndexNotRankOne) {
  // Items 0 and 1 are exact duplicates of product 1: their scores tie at 1.0.
  // Query 1's row ranks gallery 0 first (tie broken by index) and itself second.
  // Dropping rank 1 blindly would drop the true match; removal by index keeps it.
  const std::vector<int64_t> ids{1, 1, 2};
  const std::vector<float> scores{1.0f, 1.0f, 0.2f,  //
                                  1.0f, 1.0f, 0.3f,  //
                                  0.2f, 0.3f, 1.0f};
  const Evaluation e = evaluate_scores(scores.data(), 3, 3, ids.data(), ids.data(), make_options({1, 2}, {2}, APNormalizer::min_r_k, true));
  EXPECT_EQ(e.num_queries, 2);  // query 2 has no other image of product 2
  EXPECT_EQ(e.lone_queries, 1);
  EXPECT_DOUBLE_EQ(e.per_query_precision[0 * 2 + 0], 1.0);
  EXPECT_DOUBLE_EQ(e.per_query_precision[1 * 2 + 0], 1.0);
  EXPECT_EQ(e.num_relevant[0], 1);  // self does not count in R
  EXPECT_DOUBLE_EQ(e.value("R@1"), 1.0);
  EXPECT_DOUBLE_EQ(e.value("P@2"), 0.5);

  // The same through the ranking form: rows still contain self.
  const std::vector<int64_t> ranking{0, 1, 2, 0, 1, 2, 2, 1, 0};
  const Evaluation r = evaluate(ranking.data(), 3, 3, 3, ids.data(), ids.data(),
                                make_options({1, 2}, {2}, APNormalizer::min_r_k, true));
  EXPECT_TRUE(same_values(r.per_query_precision, e.per_query_precision));
  EXPECT_TRUE(same_values(r.per_query_average_precision, e.per_query_average_precision));
}

TEST(Metrics, SelfIndicesExcludeOwnItemOfPartlyOverlappingQueries) {
  // Gallery: 0:A 1:A 2:B 3:A. Query 0 is gallery item 1 (a role=both image);
  // query 1 is a query-only image of B. By hand, k = 1, 2, AP@3 (min(R, 3)):
  //   query 0 ranks 1(self, dropped), 2, 0, 3 -> rels 0,1,1; R = 2 (items 0, 3)
  //     P@1 = 0, P@2 = 1/2, R@2 = 1/2, AP@3 = (1/2 + 2/3) / 2 = 7/12
  //   query 1 ranks 2, 0 -> rels 1,0; R = 1; P@1 = 1, P@2 = 1/2, AP@3 = 1
  const std::vector<int64_t> gallery_ids{7, 7, 8, 7};
  const std::vector<int64_t> query_ids{7, 8};
  const std::vector<int64_t> self_indices{1, -1};
  const std::vector<int64_t> ranking{1, 2, 0, 3,  //
                                     2, 0, -1, -1};
  Options options = make_options({1, 2}, {3});
  options.self_indices = self_indices.data();
  const Evaluation e = evaluate(ranking.data(), 2, 4, 4, query_ids.data(), gallery_ids.data(), options);
  EXPECT_EQ(e.num_relevant[0], 2);
  EXPECT_EQ(e.num_relevant[1], 1);
  EXPECT_DOUBLE_EQ(e.per_query_precision[0 * 2 + 0], 0.0);
  EXPECT_DOUBLE_EQ(e.per_query_precision[0 * 2 + 1], 0.5);
  EXPECT_DOUBLE_EQ(e.per_query_recall[0 * 2 + 1], 0.5);
  EXPECT_DOUBLE_EQ(e.per_query_average_precision[0], 7.0 / 12.0);
  EXPECT_DOUBLE_EQ(e.per_query_precision[1 * 2 + 0], 1.0);
  EXPECT_DOUBLE_EQ(e.per_query_average_precision[1], 1.0);

  // The score form drops the same item before ranking.
  const std::vector<float> scores{0.5f, 1.0f, 0.9f, 0.1f,  //
                                  0.4f, 0.2f, 0.8f, 0.1f};
  const Evaluation s = evaluate_scores(scores.data(), 2, 4, query_ids.data(), gallery_ids.data(), options);
  EXPECT_DOUBLE_EQ(s.per_query_average_precision[0], 7.0 / 12.0);
  EXPECT_DOUBLE_EQ(s.per_query_precision[1 * 2 + 0], 1.0);

  // An own item of another instance, an index out of range, or both switches: errors.
  const std::vector<int64_t> wrong_instance{2, -1};
  options.self_indices = wrong_instance.data();
  EXPECT_THROW(evaluate(ranking.data(), 2, 4, 4, query_ids.data(), gallery_ids.data(), options), pe::InvalidArgumentError);
  const std::vector<int64_t> out_of_range{4, -1};
  options.self_indices = out_of_range.data();
  EXPECT_THROW(evaluate(ranking.data(), 2, 4, 4, query_ids.data(), gallery_ids.data(), options), pe::InvalidArgumentError);
  options.self_indices = self_indices.data();
  options.exclude_self = true;
  EXPECT_THROW(evaluate(ranking.data(), 2, 4, 4, query_ids.data(), gallery_ids.data(), options), pe::InvalidArgumentError);
}

TEST(Metrics, ScoreTiesBreakByGalleryIndex) {
  // Scores 0.5, 0.9, 0.9, 0.1 rank as 1, 2, 0, 3; only gallery 2 is relevant.
  const std::vector<int64_t> gallery_ids{0, 0, 7, 0};
  const std::vector<double> scores{0.5, 0.9, 0.9, 0.1};
  const int64_t query_id = 7;
  const Evaluation e = evaluate_scores(scores.data(), 1, 4, &query_id, gallery_ids.data(), make_options({1, 2}, {4}));
  EXPECT_DOUBLE_EQ(e.value("P@1"), 0.0);
  EXPECT_DOUBLE_EQ(e.value("P@2"), 0.5);
  EXPECT_DOUBLE_EQ(e.value("mAP@4"), 0.5);
}

TEST(Metrics, ScoresAndRankingFormsAgreeOnRandomData) {
  std::mt19937 rng(7);
  const int64_t q = 50, n = 80;
  std::vector<int64_t> query_ids(q), gallery_ids(n);
  for (auto& id : query_ids) id = rng() % 12;
  for (auto& id : gallery_ids) id = rng() % 12;
  std::vector<float> scores(q * n);
  for (auto& s : scores) s = static_cast<float>(rng() % 16) / 16.0f;  // many ties
  const Options options = make_options({1, 3, 7}, {5, 10}, APNormalizer::r);
  const Evaluation from_scores = evaluate_scores(scores.data(), q, n, query_ids.data(), gallery_ids.data(), options);
  std::vector<int64_t> ranking;
  for (int64_t i = 0; i < q; ++i) {
    std::vector<int64_t> order(n);
    for (int64_t g = 0; g < n; ++g) order[g] = g;
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return scores[i * n + a] > scores[i * n + b]; });
    ranking.insert(ranking.end(), order.begin(), order.begin() + 10);
  }
  const Evaluation from_ranking = evaluate(ranking.data(), q, 10, n, query_ids.data(), gallery_ids.data(), options);
  EXPECT_EQ(from_scores.per_query_precision, from_ranking.per_query_precision);
  EXPECT_EQ(from_scores.per_query_recall, from_ranking.per_query_recall);
  EXPECT_EQ(from_scores.per_query_average_precision, from_ranking.per_query_average_precision);
}

// R = 1 for every query (the Hornbach set): P@1 = R@1 and P@5 = R@5 / 5.
TEST(Metrics, HornbachIdentitiesHoldWhenEveryQueryHasOneMatch) {
  std::mt19937 rng(11);
  const int64_t n = 200, q = 150, depth = 10;
  std::vector<int64_t> gallery_ids(n), query_ids(q), ranking;
  for (int64_t g = 0; g < n; ++g) gallery_ids[g] = g;  // one image per product
  for (auto& id : query_ids) id = rng() % n;
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < q; ++i) {
    for (int64_t g = 0; g < n; ++g) order[g] = g;
    std::shuffle(order.begin(), order.end(), rng);
    ranking.insert(ranking.end(), order.begin(), order.begin() + depth);
  }
  const Evaluation e = evaluate(ranking, query_ids, gallery_ids);
  EXPECT_GT(e.value("R@5"), 0.0);
  EXPECT_DOUBLE_EQ(e.value("P@1"), e.value("R@1"));
  EXPECT_NEAR(e.value("P@5"), e.value("R@5") / 5, 1e-15);
}

TEST(Metrics, ThreadCountDoesNotChangeResults) {
  std::mt19937 rng(3);
  const int64_t q = 9000, n = 3000, depth = 20;
  std::vector<int64_t> query_ids(q), gallery_ids(n), ranking(q * depth);
  for (auto& id : query_ids) id = rng() % 500;
  for (auto& id : gallery_ids) id = rng() % 500;
  for (int64_t i = 0; i < q; ++i) {
    for (int64_t j = 0; j < depth; ++j) ranking[i * depth + j] = (i * 7 + j * 131) % n;
  }
  Options one = make_options({1, 5}, {10});
  one.threads = 1;
  Options four = one;
  four.threads = 4;
  const Evaluation a = evaluate(ranking.data(), q, depth, n, query_ids.data(), gallery_ids.data(), one);
  const Evaluation b = evaluate(ranking.data(), q, depth, n, query_ids.data(), gallery_ids.data(), four);
  EXPECT_EQ(a.precision, b.precision);
  EXPECT_EQ(a.mean_average_precision, b.mean_average_precision);
  EXPECT_EQ(a.per_query_recall, b.per_query_recall);
}

// --- bad input -----------------------------------------------------------

std::string error_of(const std::function<void()>& call) {
  return pe::test::error_of<pe::InvalidArgumentError>(call);
}

TEST(MetricsErrors, NameTheArgumentAndTheValue) {
  const std::vector<int64_t> ids{1, 1, 2};
  const std::vector<int64_t> q{1};
  auto has = [](const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
  };
  EXPECT_PRED2(has, error_of([&] { evaluate(std::vector<int64_t>{0, 3}, q, ids); }), "ranking[0, 1] = 3 is out of range");
  EXPECT_PRED2(has, error_of([&] { evaluate(std::vector<int64_t>{0, -2}, q, ids); }), "ranking[0, 1] = -2 is out of range");
  EXPECT_PRED2(has, error_of([&] { evaluate(std::vector<int64_t>{-1, 0}, q, ids); }), "follows a -1");
  EXPECT_PRED2(has, error_of([&] { evaluate(std::vector<int64_t>{1, 1}, q, ids); }), "repeats a gallery index");
  EXPECT_PRED2(has, error_of([&] { evaluate(std::vector<int64_t>{}, {}, ids); }), "query set is empty");
  EXPECT_PRED2(has, error_of([&] { evaluate(std::vector<int64_t>{0}, q, {}); }), "gallery is empty");
  EXPECT_PRED2(has, error_of([&] { evaluate(std::vector<int64_t>{0}, q, ids, make_options({0}, {10})); }), "ks contains 0");
  EXPECT_PRED2(has, error_of([&] { evaluate(std::vector<int64_t>{0}, q, ids, make_options({1}, {-3})); }), "map_ks contains -3");
  EXPECT_PRED2(has, error_of([&] { evaluate(std::vector<int64_t>{0}, q, ids, make_options({5, 5}, {})); }), "ks lists k = 5 twice");
  EXPECT_PRED2(has, error_of([&] { evaluate(std::vector<int64_t>{0, 1, 2}, {1, 2}, ids); }), "not a multiple");
  EXPECT_PRED2(has, error_of([&] {
                 evaluate(std::vector<int64_t>{0}, q, ids, make_options({1}, {1}, APNormalizer::min_r_k, true));
               }),
               "exclude_self needs the query set to be the gallery");
  EXPECT_PRED2(has, error_of([&] {
                 evaluate(std::vector<int64_t>{0, 1, 2}, {1, 1, 3}, ids, make_options({1}, {1}, APNormalizer::min_r_k, true));
               }),
               "query_ids[2] = 3 and gallery_ids[2] = 2");
  const std::vector<float> scores{0.1f, std::numeric_limits<float>::quiet_NaN(), 0.3f};
  EXPECT_PRED2(has, error_of([&] { evaluate_scores(scores.data(), 1, 3, q.data(), ids.data()); }), "scores[0, 1] is NaN");
  EXPECT_PRED2(has, error_of([] { pe::metrics::parse_ap_normalizer("mean"); }), "unknown value 'mean'");
}

TEST(MetricsErrors, InfiniteScoresAreRankedNotRejected) {
  const std::vector<int64_t> ids{1, 2, 3};
  const std::vector<float> scores{-std::numeric_limits<float>::infinity(), 0.0f, std::numeric_limits<float>::infinity()};
  const int64_t query_id = 3;
  const Evaluation e = evaluate_scores(scores.data(), 1, 3, &query_id, ids.data(), make_options({1}, {1}));
  EXPECT_DOUBLE_EQ(e.value("P@1"), 1.0);
}

// --- golden cases shared with the Python tests --------------------------

struct GoldenCase {
  std::string name;
  int64_t q = 0, depth = 0, n = 0;
  bool exclude_self = false;
  std::string normalizer;
  std::vector<int> ks, map_ks;
  std::vector<int64_t> query_ids, gallery_ids, ranking;
  std::vector<std::pair<std::string, double>> expected;
  int64_t num_queries = 0, lone_queries = 0;
};

template <class T>
std::vector<T> read_numbers(std::istringstream& line) {
  std::vector<T> values;
  T value;
  while (line >> value) values.push_back(value);
  return values;
}

std::vector<GoldenCase> read_golden_cases(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw std::runtime_error("cannot open " + path);
  std::vector<GoldenCase> cases;
  std::string text;
  while (std::getline(file, text)) {
    std::istringstream line(text);
    std::string tag;
    line >> tag;
    if (tag.empty() || tag[0] == '#') continue;
    if (tag == "case") {
      cases.emplace_back();
      int exclude = 0;
      line >> cases.back().name >> cases.back().q >> cases.back().depth >> cases.back().n >> exclude >>
          cases.back().normalizer;
      cases.back().exclude_self = exclude != 0;
      continue;
    }
    GoldenCase& c = cases.back();
    if (tag == "ks") c.ks = read_numbers<int>(line);
    if (tag == "map_ks") c.map_ks = read_numbers<int>(line);
    if (tag == "query_ids") c.query_ids = read_numbers<int64_t>(line);
    if (tag == "gallery_ids") c.gallery_ids = read_numbers<int64_t>(line);
    if (tag == "ranking") c.ranking = read_numbers<int64_t>(line);
    if (tag == "num_queries") line >> c.num_queries;
    if (tag == "lone_queries") line >> c.lone_queries;
    if (tag == "expect") {
      std::string name, value;
      line >> name >> value;
      c.expected.emplace_back(name, std::stod(value));  // stod reads "nan"
    }
  }
  return cases;
}

TEST(MetricsGolden, MatchesNaiveReferenceCases) {
  const auto cases = read_golden_cases(PE_TEST_DATA_DIR "/metrics_cases.txt");
  ASSERT_GE(cases.size(), 50u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_EQ(static_cast<int64_t>(c.ranking.size()), c.q * c.depth);
    const Options options = make_options(c.ks, c.map_ks, pe::metrics::parse_ap_normalizer(c.normalizer), c.exclude_self);
    const Evaluation e =
        evaluate(c.ranking.data(), c.q, c.depth, c.n, c.query_ids.data(), c.gallery_ids.data(), options);
    EXPECT_EQ(e.num_queries, c.num_queries);
    EXPECT_EQ(e.lone_queries, c.lone_queries);
    ASSERT_EQ(c.expected.size(), e.metric_names().size());
    for (const auto& [name, expected] : c.expected) {
      const double got = e.value(name);
      if (std::isnan(expected)) {
        EXPECT_TRUE(std::isnan(got)) << name;
      } else {
        EXPECT_NEAR(got, expected, 1e-12) << name;
      }
    }
  }
}

// --- Report --------------------------------------------------------------

Evaluation toy_evaluation() {
  return evaluate(std::vector<int64_t>{0, 2, 3, 1, 4, 3, 4, 5, 0, 1, 3, 0, 4, 1, 5}, {10, 20, 30},
                  {10, 10, 20, 30, 30, 30});
}

TEST(Report, MarkdownCsvJsonOfTwoDatasets) {
  pe::metrics::Report report;
  report.add("toy", toy_evaluation());
  report.add("a|b, \"c\"", {{"P@1", 0.5}, {"P@5", 0.1}, {"R@1", 0.25}, {"R@5", 1.0}, {"mAP@10", 0.123456}}, 10, 2,
             APNormalizer::min_r_k);
  // Average = (toy + second) / 2: P@1 (66.667 + 50) / 2 = 58.33; mAP@10 (50.185 + 12.3456) / 2 = 31.27.
  EXPECT_EQ(report.to_markdown(),
            "| Dataset | P@1 | P@5 | R@1 | R@5 | mAP@10 |\n"
            "|---|---|---|---|---|---|\n"
            "| toy | 66.67 | 33.33 | 27.78 | 66.67 | 50.19 |\n"
            "| a\\|b, \"c\" | 50.00 | 10.00 | 25.00 | 100.00 | 12.35 |\n"
            "| Average | 58.33 | 21.67 | 26.39 | 83.33 | 31.27 |\n"
            "\nValues in percent. AP@k divided by min(R, k) (ap_normalizer=min_r_k). Queries scored / lone "
            "(R = 0, excluded): toy 3 / 0; a\\|b, \"c\" 10 / 2.\n");
  EXPECT_EQ(report.to_csv(),
            "dataset,P@1,P@5,R@1,R@5,mAP@10,queries,lone_queries,ap_normalizer\n"
            "toy,66.67,33.33,27.78,66.67,50.19,3,0,min_r_k\n"
            "\"a|b, \"\"c\"\"\",50.00,10.00,25.00,100.00,12.35,10,2,min_r_k\n"
            "Average,58.33,21.67,26.39,83.33,31.27,,,min_r_k\n");
  const std::string json = report.to_json();
  EXPECT_NE(json.find("\"ap_normalizer\": \"min_r_k\""), std::string::npos);
  EXPECT_NE(json.find("{\"dataset\": \"a|b, \\\"c\\\"\", \"P@1\": 50.00"), std::string::npos) << json;
  EXPECT_NE(json.find("\"average\": {\"P@1\": 58.33, \"P@5\": 21.67, \"R@1\": 26.39, \"R@5\": 83.33, \"mAP@10\": 31.27}"),
            std::string::npos)
      << json;
}

TEST(Report, RejectsMixedNormalizersDuplicatesAndMissingColumns) {
  pe::metrics::Report report;
  report.add("toy", toy_evaluation());
  Options r_options;
  r_options.ap_normalizer = APNormalizer::r;
  const Evaluation with_r = evaluate(std::vector<int64_t>{0, 1}, {10}, {10, 10}, r_options);
  EXPECT_THROW(report.add("other", with_r), pe::InvalidArgumentError);
  EXPECT_THROW(report.add("toy", toy_evaluation()), pe::InvalidArgumentError);
  const Evaluation only_k1 = evaluate(std::vector<int64_t>{0}, {10}, {10, 10}, make_options({1}, {10}));
  EXPECT_THROW(report.add("k1", only_k1), pe::InvalidArgumentError);  // no P@5
  EXPECT_THROW(report.add("bad", {{"P@1", 1.5}, {"P@5", 0}, {"R@1", 0}, {"R@5", 0}, {"mAP@10", 0}}, 1, 0,
                          APNormalizer::min_r_k),
               pe::InvalidArgumentError);
  EXPECT_EQ(report.rows().size(), 1u);  // failed adds left the report as it was
}

TEST(Report, NanPrintsAsNotAvailable) {
  pe::metrics::Report report({"P@1"});
  report.add("all-lone", evaluate(std::vector<int64_t>{0}, {5}, {1, 2}, make_options({1}, {1})));
  EXPECT_NE(report.to_markdown().find("| all-lone | n/a |"), std::string::npos);
  EXPECT_NE(report.to_json().find("\"P@1\": null"), std::string::npos);
  EXPECT_NE(report.to_csv().find("all-lone,,0,1,min_r_k"), std::string::npos);
}

}  // namespace
