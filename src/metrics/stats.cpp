// pe::stats (see include/pe/stats.hpp for the random stream and the methods).

#include "pe/stats.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "common/parallel.hpp"

namespace pe::stats {

namespace detail {
namespace {

void check_shape(int64_t num_queries, int64_t num_metrics, int64_t replicates, const char* what) {
  if (num_queries < 0 || num_metrics < 0 || replicates < 0) {
    throw InvalidArgumentError(std::string(what) + ": sizes must be >= 0, got num_queries=" +
                                std::to_string(num_queries) + ", num_metrics=" + std::to_string(num_metrics) +
                                ", replicates=" + std::to_string(replicates));
  }
  if (num_queries > static_cast<int64_t>(std::numeric_limits<uint32_t>::max())) {
    throw InvalidArgumentError(std::string(what) + ": at most 2^32 - 1 queries per call, got " +
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
        throw InvalidArgumentError(std::string(argument) + "[" + std::to_string(i) + ", " + std::to_string(j) +
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

}  // namespace
}  // namespace detail

namespace {

template <class T>
void bootstrap_means_of(const T* values, int64_t num_queries, int64_t num_metrics, int64_t resamples, uint64_t seed,
                        uint64_t stream, double* out, int threads) {
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
void sign_flip_means_of(const T* differences, int64_t num_queries, int64_t num_metrics, int64_t permutations,
                        uint64_t seed, uint64_t stream, double* out, int threads) {
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
std::vector<double> tie_tolerances_of(const T* differences, int64_t num_queries, int64_t num_metrics) {
  detail::check_shape(num_queries, num_metrics, 0, "tie_tolerances");
  std::vector<double> out(static_cast<size_t>(num_metrics), 0.0);
  for (int64_t i = 0; i < num_queries; ++i) {
    for (int64_t j = 0; j < num_metrics; ++j) out[j] += std::fabs(static_cast<double>(differences[i * num_metrics + j]));
  }
  for (double& value : out) value = num_queries ? kTieTolerance * value / static_cast<double>(num_queries) : 0.0;
  return out;
}

}  // namespace

void bootstrap_means(const float* values, int64_t num_queries, int64_t num_metrics, int64_t resamples, uint64_t seed,
                     uint64_t stream, double* out, int threads) {
  bootstrap_means_of(values, num_queries, num_metrics, resamples, seed, stream, out, threads);
}

void bootstrap_means(const double* values, int64_t num_queries, int64_t num_metrics, int64_t resamples,
                     uint64_t seed, uint64_t stream, double* out, int threads) {
  bootstrap_means_of(values, num_queries, num_metrics, resamples, seed, stream, out, threads);
}

namespace {
template <class T>
std::vector<double> bootstrap_means_of_rows(const std::vector<T>& values, int64_t num_metrics, int64_t resamples,
                                            uint64_t seed, uint64_t stream, int threads) {
  if (num_metrics <= 0 || values.size() % static_cast<size_t>(num_metrics) != 0) {
    throw InvalidArgumentError("bootstrap_means: values holds " + std::to_string(values.size()) +
                               " numbers, not a multiple of num_metrics=" + std::to_string(num_metrics));
  }
  std::vector<double> out(static_cast<size_t>(std::max<int64_t>(resamples, 0) * num_metrics));
  bootstrap_means(values.data(), static_cast<int64_t>(values.size()) / num_metrics, num_metrics, resamples, seed,
                  stream, out.data(), threads);
  return out;
}
}  // namespace

std::vector<double> bootstrap_means(const std::vector<double>& values, int64_t num_metrics, int64_t resamples,
                                    uint64_t seed, uint64_t stream, int threads) {
  return bootstrap_means_of_rows(values, num_metrics, resamples, seed, stream, threads);
}

std::vector<double> bootstrap_means(const std::vector<float>& values, int64_t num_metrics, int64_t resamples,
                                    uint64_t seed, uint64_t stream, int threads) {
  return bootstrap_means_of_rows(values, num_metrics, resamples, seed, stream, threads);
}

void sign_flip_means(const float* differences, int64_t num_queries, int64_t num_metrics, int64_t permutations,
                     uint64_t seed, uint64_t stream, double* out, int threads) {
  sign_flip_means_of(differences, num_queries, num_metrics, permutations, seed, stream, out, threads);
}

void sign_flip_means(const double* differences, int64_t num_queries, int64_t num_metrics, int64_t permutations,
                     uint64_t seed, uint64_t stream, double* out, int threads) {
  sign_flip_means_of(differences, num_queries, num_metrics, permutations, seed, stream, out, threads);
}

std::vector<double> sign_flip_means(const std::vector<double>& differences, int64_t num_metrics,
                                    int64_t permutations, uint64_t seed, uint64_t stream, int threads) {
  if (num_metrics <= 0 || differences.size() % static_cast<size_t>(num_metrics) != 0) {
    throw InvalidArgumentError("sign_flip_means: differences holds " + std::to_string(differences.size()) +
                               " numbers, not a multiple of num_metrics=" + std::to_string(num_metrics));
  }
  std::vector<double> out(static_cast<size_t>(std::max<int64_t>(permutations, 0) * num_metrics));
  sign_flip_means(differences.data(), static_cast<int64_t>(differences.size()) / num_metrics, num_metrics,
                  permutations, seed, stream, out.data(), threads);
  return out;
}

std::vector<double> tie_tolerances(const float* differences, int64_t num_queries, int64_t num_metrics) {
  return tie_tolerances_of(differences, num_queries, num_metrics);
}

std::vector<double> tie_tolerances(const double* differences, int64_t num_queries, int64_t num_metrics) {
  return tie_tolerances_of(differences, num_queries, num_metrics);
}

double sorted_quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return std::numeric_limits<double>::quiet_NaN();
  const double h = static_cast<double>(sorted.size() - 1) * q;
  const size_t below = static_cast<size_t>(std::floor(h));
  if (below + 1 >= sorted.size()) return sorted.back();
  const double low = sorted[below], high = sorted[below + 1];
  // Clamped: rounding in the interpolation must not step outside its two
  // order statistics (an interval of fractions must stay within [0, 1]).
  return std::clamp(low + (h - static_cast<double>(below)) * (high - low), low, high);
}

std::vector<Interval> percentile_intervals(const double* replicates, int64_t rows, int64_t columns, double level) {
  if (!(level > 0.0 && level < 1.0)) {
    throw InvalidArgumentError("percentile_intervals: level must lie strictly between 0 and 1 (0.95 for a 95% "
                                "interval), got " + std::to_string(level));
  }
  if (rows < 0 || columns < 0) throw InvalidArgumentError("percentile_intervals: sizes must be >= 0");
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

std::vector<double> permutation_p_values(const double* permuted, int64_t rows, int64_t columns,
                                         const double* observed, const double* tolerance) {
  if (rows < 0 || columns < 0) throw InvalidArgumentError("permutation_p_values: sizes must be >= 0");
  std::vector<double> out(static_cast<size_t>(columns), std::numeric_limits<double>::quiet_NaN());
  for (int64_t j = 0; j < columns; ++j) {
    if (rows == 0 || std::isnan(observed[j])) continue;
    const double slack = tolerance ? tolerance[j] : 0.0;
    if (!(slack >= 0.0)) {
      throw InvalidArgumentError("permutation_p_values: tolerance[" + std::to_string(j) + "] = " +
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
