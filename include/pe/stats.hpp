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
// Thread safety: every free function here is pure; concurrent calls are safe,
// also on shared inputs. A Xoshiro256StarStar is a plain value: one object must
// not be used by two threads at once (copy it instead). Work is split over
// std::threads by replicate (the `threads` argument, 0 = every hardware thread).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "pe/detail/parallel.hpp"

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
      throw std::invalid_argument("Xoshiro256StarStar: the all-zero state is not allowed (the generator would "
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

namespace detail {

inline void check_shape(int64_t num_queries, int64_t num_metrics, int64_t replicates, const char* what) {
  if (num_queries < 0 || num_metrics < 0 || replicates < 0) {
    throw std::invalid_argument(std::string(what) + ": sizes must be >= 0, got num_queries=" +
                                std::to_string(num_queries) + ", num_metrics=" + std::to_string(num_metrics) +
                                ", replicates=" + std::to_string(replicates));
  }
  if (num_queries > static_cast<int64_t>(std::numeric_limits<uint32_t>::max())) {
    throw std::invalid_argument(std::string(what) + ": at most 2^32 - 1 queries per call, got " +
                                std::to_string(num_queries) + "; split the queries into datasets");
  }
}

// A NaN would poison every replicate silently; lone queries (NaN metrics) must
// be dropped by the caller, and the error says so.
template <class T>
void check_finite(const T* values, int64_t num_queries, int64_t num_metrics, const char* argument) {
  for (int64_t i = 0; i < num_queries; ++i) {
    for (int64_t j = 0; j < num_metrics; ++j) {
      if (!std::isfinite(values[i * num_metrics + j])) {
        throw std::invalid_argument(std::string(argument) + "[" + std::to_string(i) + ", " + std::to_string(j) +
                                    "] is " + std::to_string(static_cast<double>(values[i * num_metrics + j])) +
                                    "; pass finite per-query values only (leave out lone queries, whose "
                                    "metrics are NaN)");
      }
    }
  }
}

// Replicates are independent jobs; each thread walks its contiguous range of
// substreams with one jump per replicate instead of re-seeding each one.
template <class PerReplicate>
void for_each_replicate(int64_t replicates, uint64_t seed, uint64_t stream, int threads, PerReplicate&& body) {
  pe::detail::parallel_for(replicates, threads, 1, [&](int64_t begin, int64_t end) {
    Xoshiro256StarStar cursor = stream_generator(seed, stream, static_cast<uint64_t>(begin));
    for (int64_t r = begin; r < end; ++r) {
      Xoshiro256StarStar generator = cursor;
      body(r, generator);
      cursor.jump();
    }
  });
}

// sums[j] = sum_i s_i * differences[i][j], s_i from one sign bit per row (64
// rows per output). Width > 0 fixes the number of columns at compile time, and
// then even and odd rows go to separate sums (added at the end): one chain of
// dependent additions per column would leave the adder idle most cycles.
template <class T, int Width>
void sign_flip_sums(const T* differences, int64_t num_queries, int64_t num_metrics, Xoshiro256StarStar& generator,
                    double* sums) {
  // +1 or -1 from a bit without a branch the predictor would miss half the time.
  auto sign = [](uint64_t bits, int64_t offset) { return 1.0 - 2.0 * static_cast<double>((bits >> offset) & 1u); };
  if constexpr (Width > 0) {
    double even[Width] = {}, odd[Width] = {};
    for (int64_t block = 0; block < num_queries; block += 64) {
      const uint64_t bits = generator.next();
      const int64_t end = std::min<int64_t>(num_queries, block + 64);
      int64_t i = block;
      for (; i + 1 < end; i += 2) {
        const double s0 = sign(bits, i - block), s1 = sign(bits, i + 1 - block);
        const T* row = differences + i * Width;
        for (int j = 0; j < Width; ++j) {
          even[j] += s0 * static_cast<double>(row[j]);
          odd[j] += s1 * static_cast<double>(row[Width + j]);
        }
      }
      if (i < end) {
        const double s0 = sign(bits, i - block);
        for (int j = 0; j < Width; ++j) even[j] += s0 * static_cast<double>(differences[i * Width + j]);
      }
    }
    for (int j = 0; j < Width; ++j) sums[j] = even[j] + odd[j];
  } else {
    for (int64_t j = 0; j < num_metrics; ++j) sums[j] = 0.0;
    for (int64_t block = 0; block < num_queries; block += 64) {
      const uint64_t bits = generator.next();
      const int64_t end = std::min<int64_t>(num_queries, block + 64);
      for (int64_t i = block; i < end; ++i) {
        const double s = sign(bits, i - block);
        const T* row = differences + i * num_metrics;
        for (int64_t j = 0; j < num_metrics; ++j) sums[j] += s * static_cast<double>(row[j]);
      }
    }
  }
}

}  // namespace detail

/// Bootstrap replicates of the per-metric means.
///
/// values: num_queries x num_metrics, row-major (query i's metrics at
///         values[i * num_metrics .. + num_metrics)), finite.
/// out:    resamples x num_metrics, row-major: row r holds the means of the
///         metrics over the num_queries rows drawn (with replacement) for
///         replicate r, from the generator (seed, stream, r). All NaN when
///         num_queries is 0.
/// Throws std::invalid_argument on negative sizes, more than 2^32 - 1 queries
/// or a non-finite value.
template <class T>
void bootstrap_means(const T* values, int64_t num_queries, int64_t num_metrics, int64_t resamples, uint64_t seed,
                     uint64_t stream, double* out, int threads = 0) {
  static_assert(std::is_floating_point_v<T>, "bootstrap_means: values must be float or double");
  detail::check_shape(num_queries, num_metrics, resamples, "bootstrap_means");
  if (num_queries == 0) {
    for (int64_t i = 0; i < resamples * num_metrics; ++i) out[i] = std::numeric_limits<double>::quiet_NaN();
    return;
  }
  detail::check_finite(values, num_queries, num_metrics, "values");
  const uint32_t n = static_cast<uint32_t>(num_queries);
  // Dividing (not multiplying by 1 / n) keeps a mean of values in [0, 1] inside
  // [0, 1]: rounding is monotonic, so a sum of n values <= 1 never exceeds n.
  const double count = static_cast<double>(num_queries);
  detail::for_each_replicate(resamples, seed, stream, threads, [&](int64_t r, Xoshiro256StarStar& generator) {
    double* sums = out + r * num_metrics;
    // The leaderboard's five metrics fit in registers; other widths take the general loop.
    if (num_metrics == 5) {
      double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0;
      for (uint32_t draw = 0; draw < n; ++draw) {
        const T* row = values + static_cast<int64_t>(generator.bounded(n)) * 5;
        s0 += row[0];
        s1 += row[1];
        s2 += row[2];
        s3 += row[3];
        s4 += row[4];
      }
      sums[0] = s0 / count;
      sums[1] = s1 / count;
      sums[2] = s2 / count;
      sums[3] = s3 / count;
      sums[4] = s4 / count;
      return;
    }
    for (int64_t j = 0; j < num_metrics; ++j) sums[j] = 0.0;
    for (uint32_t draw = 0; draw < n; ++draw) {
      const T* row = values + static_cast<int64_t>(generator.bounded(n)) * num_metrics;
      for (int64_t j = 0; j < num_metrics; ++j) sums[j] += row[j];
    }
    for (int64_t j = 0; j < num_metrics; ++j) sums[j] /= count;
  });
}

template <class T>
std::vector<double> bootstrap_means(const std::vector<T>& values, int64_t num_metrics, int64_t resamples,
                                    uint64_t seed, uint64_t stream = 0, int threads = 0) {
  if (num_metrics <= 0 || values.size() % static_cast<size_t>(num_metrics) != 0) {
    throw std::invalid_argument("bootstrap_means: values holds " + std::to_string(values.size()) +
                                " numbers, not a multiple of num_metrics=" + std::to_string(num_metrics));
  }
  std::vector<double> out(static_cast<size_t>(std::max<int64_t>(resamples, 0) * num_metrics));
  bootstrap_means(values.data(), static_cast<int64_t>(values.size()) / num_metrics, num_metrics, resamples, seed,
                  stream, out.data(), threads);
  return out;
}

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
template <class T>
void sign_flip_means(const T* differences, int64_t num_queries, int64_t num_metrics, int64_t permutations,
                     uint64_t seed, uint64_t stream, double* out, int threads = 0) {
  static_assert(std::is_floating_point_v<T>, "sign_flip_means: differences must be float or double");
  detail::check_shape(num_queries, num_metrics, permutations, "sign_flip_means");
  if (num_queries == 0) {
    for (int64_t i = 0; i < permutations * num_metrics; ++i) out[i] = std::numeric_limits<double>::quiet_NaN();
    return;
  }
  detail::check_finite(differences, num_queries, num_metrics, "differences");
  const double count = static_cast<double>(num_queries);
  detail::for_each_replicate(permutations, seed, stream, threads, [&](int64_t p, Xoshiro256StarStar& generator) {
    double* sums = out + p * num_metrics;
    if (num_metrics == 5) {  // the leaderboard's width, unrolled like bootstrap_means
      detail::sign_flip_sums<T, 5>(differences, num_queries, 5, generator, sums);
    } else {
      detail::sign_flip_sums<T, 0>(differences, num_queries, num_metrics, generator, sums);
    }
    for (int64_t j = 0; j < num_metrics; ++j) sums[j] /= count;
  });
}

template <class T>
std::vector<double> sign_flip_means(const std::vector<T>& differences, int64_t num_metrics, int64_t permutations,
                                    uint64_t seed, uint64_t stream = 0, int threads = 0) {
  if (num_metrics <= 0 || differences.size() % static_cast<size_t>(num_metrics) != 0) {
    throw std::invalid_argument("sign_flip_means: differences holds " + std::to_string(differences.size()) +
                                " numbers, not a multiple of num_metrics=" + std::to_string(num_metrics));
  }
  std::vector<double> out(static_cast<size_t>(std::max<int64_t>(permutations, 0) * num_metrics));
  sign_flip_means(differences.data(), static_cast<int64_t>(differences.size()) / num_metrics, num_metrics,
                  permutations, seed, stream, out.data(), threads);
  return out;
}

struct Interval {
  double low = std::numeric_limits<double>::quiet_NaN();
  double high = std::numeric_limits<double>::quiet_NaN();
};

/// The quantile q in [0, 1] of sorted values with linear interpolation between
/// order statistics (Hyndman and Fan type 7, numpy's default): h = (n - 1) q,
/// x[floor h] + (h - floor h) (x[floor h + 1] - x[floor h]), clamped to those
/// two values. NaN when empty.
inline double sorted_quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return std::numeric_limits<double>::quiet_NaN();
  const double h = static_cast<double>(sorted.size() - 1) * q;
  const size_t below = static_cast<size_t>(std::floor(h));
  if (below + 1 >= sorted.size()) return sorted.back();
  const double low = sorted[below], high = sorted[below + 1];
  // Clamped: rounding in the interpolation must not step outside its two
  // order statistics (an interval of fractions must stay within [0, 1]).
  return std::clamp(low + (h - static_cast<double>(below)) * (high - low), low, high);
}

/// Percentile bootstrap intervals, one per column of `replicates` (rows x
/// columns, row-major): the (1 - level) / 2 and (1 + level) / 2 quantiles
/// (sorted_quantile). A column holding a NaN, or an empty input, gives NaN bounds.
inline std::vector<Interval> percentile_intervals(const double* replicates, int64_t rows, int64_t columns,
                                                  double level = 0.95) {
  if (!(level > 0.0 && level < 1.0)) {
    throw std::invalid_argument("percentile_intervals: level must lie strictly between 0 and 1 (0.95 for a 95% "
                                "interval), got " + std::to_string(level));
  }
  if (rows < 0 || columns < 0) throw std::invalid_argument("percentile_intervals: sizes must be >= 0");
  std::vector<Interval> out(static_cast<size_t>(columns));
  std::vector<double> column(static_cast<size_t>(rows));
  for (int64_t j = 0; j < columns; ++j) {
    bool missing = rows == 0;
    for (int64_t r = 0; r < rows; ++r) {
      column[static_cast<size_t>(r)] = replicates[r * columns + j];
      missing = missing || std::isnan(column[static_cast<size_t>(r)]);
    }
    if (missing) continue;
    std::sort(column.begin(), column.end());
    out[static_cast<size_t>(j)] = Interval{sorted_quantile(column, (1.0 - level) / 2.0),
                                           sorted_quantile(column, (1.0 + level) / 2.0)};
  }
  return out;
}

/// Scale of the slack under which a permuted statistic ties with the observed
/// one (see tie_tolerances).
inline constexpr double kTieTolerance = 1e-9;

/// Per column, kTieTolerance * mean_i |differences[i][j]|: the slack for
/// permutation_p_values. Permuted and observed means are sums of the same
/// numbers in different orders and signs, so rounding (about n * 1e-16 of that
/// scale at most) must not decide "as extreme": when the true difference is 0
/// but rounding leaves 1e-17, every permutation whose exact mean is 0 must
/// still count. 0 for an all-zero column (then comparisons are exact).
template <class T>
std::vector<double> tie_tolerances(const T* differences, int64_t num_queries, int64_t num_metrics) {
  detail::check_shape(num_queries, num_metrics, 0, "tie_tolerances");
  std::vector<double> out(static_cast<size_t>(num_metrics), 0.0);
  for (int64_t i = 0; i < num_queries; ++i) {
    for (int64_t j = 0; j < num_metrics; ++j) out[j] += std::fabs(static_cast<double>(differences[i * num_metrics + j]));
  }
  for (double& value : out) value = num_queries ? kTieTolerance * value / static_cast<double>(num_queries) : 0.0;
  return out;
}

/// Two-sided permutation p-values, one per column of `permuted` (rows x
/// columns, from sign_flip_means) against observed[column] (the mean of the
/// unflipped differences):
///   p = (1 + #{p : |T_p| >= |T_obs| - tolerance}) / (1 + rows),
/// tolerance[column] from tie_tolerances (nullptr: exact comparisons). The +1
/// counts the observed assignment itself, so p is never below 1 / (1 + rows)
/// and A vs A (every difference 0) gives exactly 1. NaN when rows is 0 or an
/// input is NaN.
inline std::vector<double> permutation_p_values(const double* permuted, int64_t rows, int64_t columns,
                                                const double* observed, const double* tolerance = nullptr) {
  if (rows < 0 || columns < 0) throw std::invalid_argument("permutation_p_values: sizes must be >= 0");
  std::vector<double> out(static_cast<size_t>(columns), std::numeric_limits<double>::quiet_NaN());
  for (int64_t j = 0; j < columns; ++j) {
    if (rows == 0 || std::isnan(observed[j])) continue;
    const double slack = tolerance ? tolerance[j] : 0.0;
    if (!(slack >= 0.0)) {
      throw std::invalid_argument("permutation_p_values: tolerance[" + std::to_string(j) + "] = " +
                                  std::to_string(slack) + "; give a slack >= 0 (tie_tolerances)");
    }
    const double threshold = std::fabs(observed[j]) - slack;
    int64_t extreme = 0;
    bool missing = false;
    for (int64_t r = 0; r < rows; ++r) {
      const double value = permuted[r * columns + j];
      missing = missing || std::isnan(value);
      extreme += std::fabs(value) >= threshold ? 1 : 0;
    }
    if (!missing) out[static_cast<size_t>(j)] = static_cast<double>(1 + extreme) / static_cast<double>(1 + rows);
  }
  return out;
}

}  // namespace pe::stats
