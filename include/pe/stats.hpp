#pragma once
// pe::stats — uncertainty of retrieval scores: bootstrap intervals over queries
// and paired sign-flip permutation tests, with a fully specified random stream.
//
// Why a specified generator: a seed must give the same interval on every
// machine and standard library. std::mt19937 is portable, but
// std::uniform_int_distribution is not (libstdc++, libc++ and MSVC map the bits
// to integers differently), so the whole path from seed to integers is written
// out here and can be re-implemented in a few lines anywhere (the Python tests
// do, in pure Python).
//
// The random stream, exactly:
//  * SplitMix64 (Steele, Lea, Flood 2014): state += 0x9e3779b97f4a7c15;
//    z = state; z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
//    z = (z ^ (z >> 27)) * 0x94d049bb133111eb; output z ^ (z >> 31).
//  * xoshiro256** 1.0 (Blackman, Vigna 2018), its state s[0..3] = the first four
//    SplitMix64 outputs for the seed. Output rotl(s[1] * 5, 7) * 9, then the
//    reference update; jump() advances 2^128 steps, long_jump() 2^192 (the
//    reference polynomials).
//  * The generator of (seed, stream, substream): the seeded generator after
//    `stream` long jumps and then `substream` jumps. Distinct (stream,
//    substream) pairs use non-overlapping stretches of the 2^256 - 1 period as
//    long as each draws fewer than 2^128 numbers and substream < 2^64.
//  * An integer in [0, n), n < 2^32: x = next() >> 32 (the upper half, the
//    generator's strongest bits); m = x * n (64-bit); accept when
//    (m mod 2^32) >= (2^32 mod n), else draw x again; the result is m >> 32.
//    This is Lemire's multiply-shift method (2019), exactly unbiased.
//  * 64 random signs: one next(); bit j (least significant first) is the sign of
//    item j of a block of 64, 1 = negate.
//
// Bootstrap: replicate r of bootstrap_means(values, ..., seed, stream) uses the
// generator (seed, stream, r); it draws num_queries indices with replacement
// (bounded integers, in order) and averages each metric column over them. The
// same indices serve every column, so metrics stay paired. Sign flips:
// permutation p uses the generator (seed, stream, p) and negates each query's
// row where its sign bit is 1. Each replicate is computed by one thread in a
// fixed order, so the numbers do not depend on the thread count.
//
// Inputs are raw row-major buffers (num_queries x num_metrics, float or
// double), so numpy, Eigen and std::vector callers pass their memory without a
// copy; sums are accumulated in double.
//
// Errors: InvalidArgumentError (pe/error.hpp) naming the argument and the value.
//
// Thread safety: every free function here is pure; concurrent calls are safe,
// also on shared inputs. A Xoshiro256StarStar is a plain value: one object must
// not be used by two threads at once (copy it instead). Work is split over
// std::threads by replicate (the `threads` argument, 0 = every usable CPU).

#include <array>
#include <cstdint>
#include <limits>
#include <vector>

#include "pe/error.hpp"

namespace pe::stats {

/// One SplitMix64 step: advances `state` and returns the next output.
inline uint64_t splitmix64(uint64_t& state) {
  state += 0x9e3779b97f4a7c15ULL;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// xoshiro256** 1.0 with SplitMix64 seeding, jumps, unbiased bounded integers
/// and sign bits, as specified at the top of this header.
class Xoshiro256StarStar {
 public:
  using State = std::array<uint64_t, 4>;

  /// The state is the first four SplitMix64 outputs for `seed`.
  explicit Xoshiro256StarStar(uint64_t seed) {
    for (uint64_t& word : state_) word = splitmix64(seed);
  }

  /// A state given word by word (not all zero: that state never leaves zero).
  explicit Xoshiro256StarStar(const State& state) : state_(state) {
    if ((state[0] | state[1] | state[2] | state[3]) == 0) {
      throw InvalidArgumentError("Xoshiro256StarStar: the all-zero state is not allowed (the generator would "
                                  "only return zeros); seed it with an integer instead");
    }
  }

  const State& state() const { return state_; }

  uint64_t next() {
    const uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  /// An integer uniform in [0, n), n in [1, 2^32). Lemire's method on the
  /// upper 32 bits of each output; a rejected draw costs one more output.
  uint32_t bounded(uint32_t n) {
    uint64_t m = (next() >> 32) * static_cast<uint64_t>(n);
    uint32_t low = static_cast<uint32_t>(m);
    if (low < n) {
      const uint32_t threshold = static_cast<uint32_t>(0u - n) % n;  // 2^32 mod n
      while (low < threshold) {
        m = (next() >> 32) * static_cast<uint64_t>(n);
        low = static_cast<uint32_t>(m);
      }
    }
    return static_cast<uint32_t>(m >> 32);
  }

  /// Advances the state by 2^128 steps.
  void jump() { apply({0x180ec6d33cfd0abaULL, 0xd5a61266f0c9392cULL, 0xa9582618e03fc9aaULL, 0x39abdc4529b1661cULL}); }

  /// Advances the state by 2^192 steps.
  void long_jump() {
    apply({0x76e15d3efefdcbbfULL, 0xc5004e441c522fb3ULL, 0x77710069854ee241ULL, 0x39109bb02acbe635ULL});
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

  // The reference jump: the state times a fixed polynomial of the transition.
  void apply(const State& polynomial) {
    State accumulated{0, 0, 0, 0};
    for (uint64_t word : polynomial) {
      for (int bit = 0; bit < 64; ++bit) {
        if (word & (uint64_t{1} << bit)) {
          for (int i = 0; i < 4; ++i) accumulated[i] ^= state_[i];
        }
        next();
      }
    }
    state_ = accumulated;
  }

  State state_{};
};

/// The generator of (seed, stream, substream): seeded from `seed`, then
/// `stream` long jumps, then `substream` jumps. Costs 256 steps per jump.
inline Xoshiro256StarStar stream_generator(uint64_t seed, uint64_t stream, uint64_t substream) {
  Xoshiro256StarStar generator(seed);
  for (uint64_t i = 0; i < stream; ++i) generator.long_jump();
  for (uint64_t i = 0; i < substream; ++i) generator.jump();
  return generator;
}

/// Bootstrap replicates of the per-metric means.
///
/// values: num_queries x num_metrics, row-major (query i's metrics at
///         values[i * num_metrics .. + num_metrics)), finite.
/// out:    resamples x num_metrics, row-major: row r holds the means of the
///         metrics over the num_queries rows drawn (with replacement) for
///         replicate r, from the generator (seed, stream, r). All NaN when
///         num_queries is 0.
/// Throws InvalidArgumentError on negative sizes, more than 2^32 - 1 queries
/// or a non-finite value.
void bootstrap_means(const float* values, int64_t num_queries, int64_t num_metrics, int64_t resamples, uint64_t seed,
                     uint64_t stream, double* out, int threads = 0);
void bootstrap_means(const double* values, int64_t num_queries, int64_t num_metrics, int64_t resamples,
                     uint64_t seed, uint64_t stream, double* out, int threads = 0);

/// The same, for a vector of num_metrics-wide rows; returns resamples x num_metrics.
std::vector<double> bootstrap_means(const std::vector<double>& values, int64_t num_metrics, int64_t resamples,
                                    uint64_t seed, uint64_t stream = 0, int threads = 0);
std::vector<double> bootstrap_means(const std::vector<float>& values, int64_t num_metrics, int64_t resamples,
                                    uint64_t seed, uint64_t stream = 0, int threads = 0);

/// Sign-flip permutation replicates of the per-metric means of paired
/// differences (model B minus model A, one row per query).
///
/// differences: num_queries x num_metrics, row-major, finite.
/// out:         permutations x num_metrics: row p holds, per metric,
///              (1 / num_queries) * sum_i s_i * differences[i], with s_i = -1
///              where sign bit i of the generator (seed, stream, p) is 1, else +1.
///              All NaN when num_queries is 0.
/// Under the null hypothesis that A and B are exchangeable for each query, the
/// observed mean is one draw from this distribution; see permutation_p_values.
void sign_flip_means(const float* differences, int64_t num_queries, int64_t num_metrics, int64_t permutations,
                     uint64_t seed, uint64_t stream, double* out, int threads = 0);
void sign_flip_means(const double* differences, int64_t num_queries, int64_t num_metrics, int64_t permutations,
                     uint64_t seed, uint64_t stream, double* out, int threads = 0);

/// The same, for a vector of num_metrics-wide rows; returns permutations x num_metrics.
std::vector<double> sign_flip_means(const std::vector<double>& differences, int64_t num_metrics,
                                    int64_t permutations, uint64_t seed, uint64_t stream = 0, int threads = 0);

struct Interval {
  double low = std::numeric_limits<double>::quiet_NaN();
  double high = std::numeric_limits<double>::quiet_NaN();
};

/// The quantile q in [0, 1] of sorted values with linear interpolation between
/// order statistics (Hyndman and Fan type 7, numpy's default): h = (n - 1) q,
/// x[floor h] + (h - floor h) (x[floor h + 1] - x[floor h]), clamped to those
/// two values. NaN when empty.
double sorted_quantile(const std::vector<double>& sorted, double q);

/// Percentile bootstrap intervals, one per column of `replicates` (rows x
/// columns, row-major): the (1 - level) / 2 and (1 + level) / 2 quantiles
/// (sorted_quantile). A column holding a NaN, or an empty input, gives NaN bounds.
std::vector<Interval> percentile_intervals(const double* replicates, int64_t rows, int64_t columns,
                                           double level = 0.95);

/// Scale of the slack under which a permuted statistic ties with the observed
/// one (see tie_tolerances).
inline constexpr double kTieTolerance = 1e-9;

/// Per column, kTieTolerance * mean_i |differences[i][j]|: the slack for
/// permutation_p_values. Permuted and observed means are sums of the same
/// numbers in different orders and signs, so rounding (about n * 1e-16 of that
/// scale at most) must not decide "as extreme": when the true difference is 0
/// but rounding leaves 1e-17, every permutation whose exact mean is 0 must
/// still count. 0 for an all-zero column (then comparisons are exact).
std::vector<double> tie_tolerances(const float* differences, int64_t num_queries, int64_t num_metrics);
std::vector<double> tie_tolerances(const double* differences, int64_t num_queries, int64_t num_metrics);

/// Two-sided permutation p-values, one per column of `permuted` (rows x
/// columns, from sign_flip_means) against observed[column] (the mean of the
/// unflipped differences):
///   p = (1 + #{p : |T_p| >= |T_obs| - tolerance}) / (1 + rows),
/// tolerance[column] from tie_tolerances (nullptr: exact comparisons). The +1
/// counts the observed assignment itself, so p is never below 1 / (1 + rows)
/// and A vs A (every difference 0) gives exactly 1. NaN when rows is 0 or an
/// input is NaN.
std::vector<double> permutation_p_values(const double* permuted, int64_t rows, int64_t columns,
                                         const double* observed, const double* tolerance = nullptr);

}  // namespace pe::stats
