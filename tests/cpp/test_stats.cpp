// Tests of pe::stats: the generator against published test vectors and
// re-derivations written here, bootstrap and sign-flip replicates against exact
// distributions and hand computations, intervals and p-values by hand; and the
// intervals in pe::metrics::Report's tables.
// (The jump polynomials are checked exactly, as powers of the transition matrix
// over GF(2), in tests/python/test_stats.py.)

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "pe/report.hpp"
#include "pe/error.hpp"
#include "pe/stats.hpp"

namespace {

using pe::stats::Xoshiro256StarStar;

// Published SplitMix64 outputs for seed 0 (the reference C code's first three).
TEST(Stats, SplitMix64MatchesPublishedVector) {
  uint64_t state = 0;
  EXPECT_EQ(pe::stats::splitmix64(state), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(pe::stats::splitmix64(state), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(pe::stats::splitmix64(state), 0x06c45d188009454fULL);
}

// xoshiro256** from the state {1, 2, 3, 4}: the reference implementation's outputs.
// The first two by hand: rotl(2 * 5, 7) * 9 = 1280 * 9 = 11520; after one step s[1] = 0.
TEST(Stats, XoshiroMatchesPublishedVector) {
  Xoshiro256StarStar generator(Xoshiro256StarStar::State{1, 2, 3, 4});
  EXPECT_EQ(generator.next(), 11520ULL);
  EXPECT_EQ(generator.next(), 0ULL);
  EXPECT_EQ(generator.next(), 1509978240ULL);
  EXPECT_EQ(generator.next(), 1215971899390074240ULL);
}

TEST(Stats, SeedingIsFourSplitMixOutputs) {
  uint64_t state = 12345;
  Xoshiro256StarStar::State expected{};
  for (auto& word : expected) word = pe::stats::splitmix64(state);
  EXPECT_EQ(Xoshiro256StarStar(12345).state(), expected);
  EXPECT_THROW(Xoshiro256StarStar(Xoshiro256StarStar::State{0, 0, 0, 0}), pe::InvalidArgumentError);
}

// A jump is a power of the (linear) transition: it commutes with a step and is
// linear over GF(2). Wrong polynomials fail the exact check in test_stats.py.
TEST(Stats, JumpsCommuteWithStepsAndAreLinear) {
  for (bool long_jump : {false, true}) {
    auto jump = [&](Xoshiro256StarStar g) {
      long_jump ? g.long_jump() : g.jump();
      return g;
    };
    Xoshiro256StarStar a(1), b(2);
    Xoshiro256StarStar stepped_then_jumped = a;
    stepped_then_jumped.next();
    stepped_then_jumped = jump(stepped_then_jumped);
    Xoshiro256StarStar jumped_then_stepped = jump(a);
    jumped_then_stepped.next();
    EXPECT_EQ(stepped_then_jumped.state(), jumped_then_stepped.state());

    Xoshiro256StarStar::State mixed{};
    for (int i = 0; i < 4; ++i) mixed[i] = a.state()[i] ^ b.state()[i];
    const auto ja = jump(a).state(), jb = jump(b).state(), jm = jump(Xoshiro256StarStar(mixed)).state();
    for (int i = 0; i < 4; ++i) EXPECT_EQ(jm[i], ja[i] ^ jb[i]);
    EXPECT_NE(jump(a).state(), a.state());
  }
  // stream_generator = seed, stream long jumps, substream jumps.
  Xoshiro256StarStar manual(99);
  manual.long_jump();
  manual.long_jump();
  manual.jump();
  EXPECT_EQ(pe::stats::stream_generator(99, 2, 1).state(), manual.state());
}

// bounded() re-derived from raw outputs: x = upper 32 bits, m = x * n, reject
// while m mod 2^32 < 2^32 mod n. n = 2^31 + 1 rejects about half the outputs:
// about one rejection per accepted draw (geometric, sd about 63 over 2000 draws).
TEST(Stats, BoundedFollowsLemireWithRejection) {
  for (uint32_t n : {1u, 2u, 3u, 7u, 1000u, 60502u, 2147483649u, 4294967295u}) {
    Xoshiro256StarStar generator(5), raw(5);
    int rejected = 0;
    for (int draw = 0; draw < 2000; ++draw) {
      const uint64_t threshold = (uint64_t{1} << 32) % n;
      uint64_t m = 0;
      while (true) {
        m = (raw.next() >> 32) * n;
        if ((m & 0xffffffffULL) >= threshold) break;
        ++rejected;
      }
      const uint32_t got = generator.bounded(n);
      ASSERT_EQ(got, static_cast<uint32_t>(m >> 32)) << "n=" << n << " draw " << draw;
      ASSERT_LT(got, n);
    }
    EXPECT_EQ(generator.state(), raw.state()) << n;  // same number of outputs consumed
    if (n == 2147483649u) {
      EXPECT_GT(rejected, 1700);
      EXPECT_LT(rejected, 2300);
    }
    if (n == 1u || n == 2u) {
      EXPECT_EQ(rejected, 0);
    }
  }
}

TEST(Stats, BoundedIsUniform) {
  Xoshiro256StarStar generator(2024);
  const uint32_t n = 10;
  const int draws = 200000;
  std::vector<int> counts(n);
  for (int i = 0; i < draws; ++i) ++counts[generator.bounded(n)];
  double chi_square = 0;
  for (int count : counts) chi_square += std::pow(count - draws / 10.0, 2) / (draws / 10.0);
  EXPECT_LT(chi_square, 27.9);  // 9 degrees of freedom: P(chi2 > 27.9) = 0.001
}

// Replicate r computed here from the generator (seed, stream, r) and its bounded draws.
TEST(Stats, BootstrapReplicateIsTheMeanOfItsDraws) {
  const std::vector<double> values{0.0, 1.0, 0.5, 0.25, 1.0, 0.0, 0.75, 0.5, 0.1, 0.9, 0.2, 0.3, 0.4, 0.6};
  const int64_t columns = 2, rows = 7, resamples = 9;
  const auto replicates = pe::stats::bootstrap_means(values, columns, resamples, /*seed=*/17, /*stream=*/3, 1);
  ASSERT_EQ(replicates.size(), static_cast<size_t>(resamples * columns));
  for (int64_t r = 0; r < resamples; ++r) {
    auto generator = pe::stats::stream_generator(17, 3, static_cast<uint64_t>(r));
    double sums[2] = {0, 0};
    for (int64_t draw = 0; draw < rows; ++draw) {
      const uint32_t i = generator.bounded(rows);
      sums[0] += values[i * 2];
      sums[1] += values[i * 2 + 1];
    }
    EXPECT_DOUBLE_EQ(replicates[r * 2], sums[0] / rows);
    EXPECT_DOUBLE_EQ(replicates[r * 2 + 1], sums[1] / rows);
  }
}

// n = 3 values {0, 1, 2}: the 27 equally likely draws give sums 0..6 with
// counts 1, 3, 6, 7, 6, 3, 1. The five-metric fast path and the general path
// (4 columns) must both follow that law.
TEST(Stats, BootstrapFollowsTheExactResamplingLaw) {
  const int expected_counts[7] = {1, 3, 6, 7, 6, 3, 1};
  for (int64_t columns : {4, 5}) {
    std::vector<double> values;
    for (int i = 0; i < 3; ++i) {
      for (int64_t j = 0; j < columns; ++j) values.push_back(static_cast<double>(i));
    }
    const int64_t resamples = 27000;
    const auto replicates = pe::stats::bootstrap_means(values, columns, resamples, 8, 0, 2);
    std::vector<int> counts(7);
    for (int64_t r = 0; r < resamples; ++r) {
      const double mean = replicates[r * columns];
      const int sum = static_cast<int>(std::lround(mean * 3));
      ASSERT_NEAR(mean * 3, sum, 1e-12);
      for (int64_t j = 1; j < columns; ++j) ASSERT_EQ(replicates[r * columns + j], mean);  // paired columns
      ++counts[sum];
    }
    double chi_square = 0;
    for (int s = 0; s < 7; ++s) {
      const double want = resamples * expected_counts[s] / 27.0;
      chi_square += std::pow(counts[s] - want, 2) / want;
    }
    EXPECT_LT(chi_square, 22.5) << columns;  // 6 degrees of freedom: P(chi2 > 22.5) = 0.001
  }
}

TEST(Stats, BootstrapDoesNotDependOnThreadsAndTakesFloats) {
  std::vector<double> values;
  std::vector<float> as_float;
  for (int i = 0; i < 5 * 301; ++i) {
    values.push_back((i * 37 % 16) / 16.0);  // exact in float too
    as_float.push_back(static_cast<float>(values.back()));
  }
  const auto one = pe::stats::bootstrap_means(values, 5, 50, 3, 1, 1);
  EXPECT_EQ(pe::stats::bootstrap_means(values, 5, 50, 3, 1, 3), one);
  EXPECT_EQ(pe::stats::bootstrap_means(values, 5, 50, 3, 1, 0), one);
  EXPECT_EQ(pe::stats::bootstrap_means(as_float, 5, 50, 3, 1, 2), one);
  EXPECT_NE(pe::stats::bootstrap_means(values, 5, 50, 4, 1, 1), one);  // another seed
  EXPECT_NE(pe::stats::bootstrap_means(values, 5, 50, 3, 2, 1), one);  // another stream
}

TEST(Stats, BootstrapEdgeCasesAndErrors) {
  const std::vector<double> constant(5 * 40, 0.375);
  for (double mean : pe::stats::bootstrap_means(constant, 5, 20, 1)) EXPECT_EQ(mean, 0.375);
  std::vector<double> out(6);
  pe::stats::bootstrap_means(static_cast<const double*>(nullptr), 0, 2, 3, 1, 0, out.data());
  for (double value : out) EXPECT_TRUE(std::isnan(value));
  EXPECT_TRUE(pe::stats::bootstrap_means(constant, 5, 0, 1).empty());

  std::vector<double> with_nan(10, 0.5);
  with_nan[7] = std::nan("");
  try {
    pe::stats::bootstrap_means(with_nan, 5, 4, 1);
    FAIL() << "NaN accepted";
  } catch (const pe::InvalidArgumentError& error) {
    EXPECT_NE(std::string(error.what()).find("values[1, 2]"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("lone queries"), std::string::npos) << error.what();
  }
  EXPECT_THROW(pe::stats::bootstrap_means(constant, 3, 4, 1), pe::InvalidArgumentError);  // 200 % 3 != 0
  EXPECT_THROW(pe::stats::bootstrap_means(constant.data(), -1, 5, 4, 1, 0, out.data()), pe::InvalidArgumentError);
}

// Permutation p flips row i where bit i % 64 of output i / 64 is set (rows past 64 use a second output).
TEST(Stats, SignFlipsFollowTheirBits) {
  std::vector<double> differences;
  for (int i = 0; i < 100; ++i) {
    differences.push_back(0.01 * (i % 13));
    differences.push_back(-0.5 + 0.01 * i);
  }
  const int64_t permutations = 6;
  const auto permuted = pe::stats::sign_flip_means(differences, 2, permutations, 21, 5, 2);
  for (int64_t p = 0; p < permutations; ++p) {
    auto generator = pe::stats::stream_generator(21, 5, static_cast<uint64_t>(p));
    const uint64_t words[2] = {generator.next(), generator.next()};
    double sums[2] = {0, 0};
    for (int i = 0; i < 100; ++i) {
      const bool flip = (words[i / 64] >> (i % 64)) & 1u;
      sums[0] += (flip ? -1 : 1) * differences[i * 2];
      sums[1] += (flip ? -1 : 1) * differences[i * 2 + 1];
    }
    EXPECT_NEAR(permuted[p * 2], sums[0] / 100, 1e-15);
    EXPECT_NEAR(permuted[p * 2 + 1], sums[1] / 100, 1e-15);
  }
  EXPECT_EQ(pe::stats::sign_flip_means(differences, 2, permutations, 21, 5, 1), permuted);
}

TEST(Stats, IdenticalModelsGiveDifferenceZeroAndPOne) {
  const std::vector<double> zeros(5 * 50, 0.0);
  const auto permuted = pe::stats::sign_flip_means(zeros, 5, 999, 0);
  const std::vector<double> observed(5, 0.0);
  const auto tolerance = pe::stats::tie_tolerances(zeros.data(), 50, 5);
  for (double p : pe::stats::permutation_p_values(permuted.data(), 999, 5, observed.data(), tolerance.data())) {
    EXPECT_EQ(p, 1.0);
  }
  const auto replicates = pe::stats::bootstrap_means(zeros, 5, 200, 0);
  for (const auto& interval : pe::stats::percentile_intervals(replicates.data(), 200, 5)) {
    EXPECT_EQ(interval.low, 0.0);
    EXPECT_EQ(interval.high, 0.0);
  }
}

// B beats A by 0.1 to 0.3 on every one of 200 queries: no sign assignment but
// the all-positive one (probability 2^-200) reaches the observed mean.
TEST(Stats, AClearlyBetterModelGetsTheSmallestP) {
  std::vector<double> differences;
  double total = 0;
  for (int i = 0; i < 200; ++i) {
    differences.push_back(0.1 + 0.001 * i);
    total += differences.back();
  }
  const int64_t permutations = 4999;
  const auto permuted = pe::stats::sign_flip_means(differences, 1, permutations, 3);
  const double observed = total / 200;
  const auto p = pe::stats::permutation_p_values(permuted.data(), permutations, 1, &observed);
  EXPECT_EQ(p[0], 1.0 / 5000);
}

TEST(Stats, PercentileIntervalsByHand) {
  // Column 0: 0, 1, ..., 100 (shuffled order); type 7 at 0.025 and 0.975: 2.5 and 97.5.
  // Column 1: 10 values 0..9: h = 9 * 0.025 = 0.225 -> 0.225; h = 8.775 -> 8.775.
  // ((1 - 0.95) / 2 is 0.025 + 2e-17 in binary, hence NEAR.)
  std::vector<double> replicates;
  for (int r = 0; r < 101; ++r) {
    replicates.push_back((r * 37) % 101);
    replicates.push_back(r < 10 ? 9 - r : 4.5);
  }
  const auto intervals = pe::stats::percentile_intervals(replicates.data(), 101, 2, 0.95);
  EXPECT_NEAR(intervals[0].low, 2.5, 1e-12);
  EXPECT_NEAR(intervals[0].high, 97.5, 1e-12);
  const auto small = pe::stats::percentile_intervals(replicates.data(), 10, 2, 0.95);
  EXPECT_NEAR(small[1].low, 0.225, 1e-12);
  EXPECT_NEAR(small[1].high, 8.775, 1e-12);
  const auto ninety = pe::stats::percentile_intervals(replicates.data(), 101, 2, 0.90);
  EXPECT_NEAR(ninety[0].low, 5.0, 1e-12);
  EXPECT_NEAR(ninety[0].high, 95.0, 1e-12);

  replicates[3] = std::nan("");
  const auto with_nan = pe::stats::percentile_intervals(replicates.data(), 101, 2);
  EXPECT_TRUE(std::isnan(with_nan[1].low) && std::isnan(with_nan[1].high));
  EXPECT_FALSE(std::isnan(with_nan[0].low));
  EXPECT_THROW(pe::stats::percentile_intervals(replicates.data(), 101, 2, 95.0), pe::InvalidArgumentError);
  EXPECT_TRUE(std::isnan(pe::stats::percentile_intervals(replicates.data(), 0, 1)[0].low));
}

TEST(Stats, PValuesByHand) {
  // Observed 0.3; permuted |T|: 0.1, 0.3 (tie counts), 0.5, 0.2 -> (1 + 2) / 5.
  const std::vector<double> permuted{0.1, -0.3, 0.5, -0.2};
  const double observed = 0.3;
  EXPECT_DOUBLE_EQ(pe::stats::permutation_p_values(permuted.data(), 4, 1, &observed)[0], 3.0 / 5);
  const double negative = -0.3;  // two-sided
  EXPECT_DOUBLE_EQ(pe::stats::permutation_p_values(permuted.data(), 4, 1, &negative)[0], 3.0 / 5);
  const double slack = 0.1 + 1e-12;  // 0.2 now ties as well
  EXPECT_DOUBLE_EQ(pe::stats::permutation_p_values(permuted.data(), 4, 1, &observed, &slack)[0], 4.0 / 5);
  EXPECT_TRUE(std::isnan(pe::stats::permutation_p_values(permuted.data(), 0, 1, &observed)[0]));
  const double bad = -1.0;
  EXPECT_THROW(pe::stats::permutation_p_values(permuted.data(), 4, 1, &observed, &bad), pe::InvalidArgumentError);
}

// The true mean difference is 0, but the observed mean, summed in another
// order (mean(b) - mean(a), say), comes out as a rounding residue of 1e-16.
// Exact comparisons would then call the 4 in 16 sign patterns whose exact mean
// is 0 (s1 = s2 and s3 = s4) less extreme; with tie_tolerances' slack they tie.
TEST(Stats, RoundingNeverDecidesATie) {
  const std::vector<double> differences{0.1, -0.1, 0.3, -0.3};
  const double observed = 1e-16;
  const auto permuted = pe::stats::sign_flip_means(differences, 1, 1999, 4);
  const auto tolerance = pe::stats::tie_tolerances(differences.data(), 4, 1);
  EXPECT_NEAR(tolerance[0], 1e-9 * 0.2, 1e-20);
  const double exact = pe::stats::permutation_p_values(permuted.data(), 1999, 1, &observed)[0];
  EXPECT_GT(exact, 0.6);
  EXPECT_LT(exact, 0.9);
  EXPECT_EQ(pe::stats::permutation_p_values(permuted.data(), 1999, 1, &observed, tolerance.data())[0], 1.0);
  const std::vector<double> zeros(6, 0.0);
  EXPECT_EQ(pe::stats::tie_tolerances(zeros.data(), 3, 2), (std::vector<double>{0.0, 0.0}));
}

TEST(StatsReport, IntervalsAppearBesideTheValues) {
  pe::metrics::Report report;
  report.add("SOP", {{"P@1", 0.5}, {"P@5", 0.4}, {"R@1", 0.3}, {"R@5", 0.2}, {"mAP@10", 0.1}}, 10, 1,
             pe::metrics::APNormalizer::min_r_k);
  const double none = std::nan("");
  report.set_intervals("SOP", {{0.4, 0.6}, {none, none}, {0.25, 0.35}, {0.1, 0.3}, {0.05, 0.15}});
  report.set_average_intervals({{0.4, 0.6}, {none, none}, {0.25, 0.35}, {0.1, 0.3}, {0.05, 0.15}});
  report.set_interval_method({0.95, 1000, 7});
  const std::string markdown = report.to_markdown();
  EXPECT_NE(markdown.find("| SOP | 50.00 [40.00, 60.00] | 40.00 | 30.00 [25.00, 35.00] | 20.00 [10.00, 30.00] | "
                          "10.00 [5.00, 15.00] |"),
            std::string::npos)
      << markdown;
  EXPECT_NE(markdown.find("In brackets: 95% bootstrap intervals over queries (percentile method, 1000 resamples, "
                          "seed 7;"),
            std::string::npos)
      << markdown;
  const std::string csv = report.to_csv();
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "dataset,P@1,P@1 ci95 low,P@1 ci95 high,P@5,P@5 ci95 low,P@5 ci95 high,R@1,R@1 ci95 low,R@1 ci95 high,"
            "R@5,R@5 ci95 low,R@5 ci95 high,mAP@10,mAP@10 ci95 low,mAP@10 ci95 high,queries,lone_queries,"
            "ap_normalizer,bootstrap_resamples,bootstrap_seed");
  EXPECT_NE(csv.find("\nSOP,50.00,40.00,60.00,40.00,,,30.00,25.00,35.00,20.00,10.00,30.00,10.00,5.00,15.00,10,1,"
                     "min_r_k,1000,7\n"),
            std::string::npos)
      << csv;
  const std::string json = report.to_json();
  EXPECT_NE(json.find("\"ci\": {\"P@1\": [40.00, 60.00], \"P@5\": null,"), std::string::npos) << json;
  EXPECT_NE(json.find("\"intervals\": {\"level\": 0.95, \"resamples\": 1000, \"seed\": 7,"), std::string::npos) << json;

  EXPECT_THROW(report.set_intervals("nope", std::vector<pe::stats::Interval>(5)), pe::InvalidArgumentError);
  EXPECT_THROW(report.set_intervals("SOP", std::vector<pe::stats::Interval>(4)), pe::InvalidArgumentError);
  EXPECT_THROW(report.set_intervals("SOP", {{0.4, 60.0}, {}, {}, {}, {}}), pe::InvalidArgumentError);  // percent given
  EXPECT_THROW(report.set_interval_method({95.0, 1000, 0}), pe::InvalidArgumentError);
}

TEST(StatsReport, NoIntervalsLeaveTheTableAsItWas) {
  pe::metrics::Report report;
  report.add("SOP", {{"P@1", 0.5}, {"P@5", 0.4}, {"R@1", 0.3}, {"R@5", 0.2}, {"mAP@10", 0.1}}, 10, 1,
             pe::metrics::APNormalizer::min_r_k);
  EXPECT_FALSE(report.has_intervals());
  EXPECT_EQ(report.to_markdown().find("In brackets"), std::string::npos);
  EXPECT_EQ(report.to_csv().substr(0, report.to_csv().find('\n')),
            "dataset,P@1,P@5,R@1,R@5,mAP@10,queries,lone_queries,ap_normalizer");
  EXPECT_EQ(report.to_json().find("\"ci\""), std::string::npos);
}

}  // namespace
