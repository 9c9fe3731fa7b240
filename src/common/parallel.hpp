#pragma once
// pe::detail::parallel_for — split [0, n) into contiguous chunks over std::threads (internal).
//
// Why std::thread and not OpenMP: the Python module lives in the same process as
// LibTorch, which brings its own OpenMP runtime; a second one (libgomp vs libomp)
// next to it oversubscribes cores or crashes. Plain threads coexist with anything.
//
// Thread safety: parallel_for itself holds no state. The body must only write
// to disjoint data per index range. After every thread has joined, the exception
// of the lowest failing chunk is rethrown in the caller, so the error a user sees
// does not depend on thread timing.

#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

#include "pe/cpu.hpp"

namespace pe::detail {

/// Number of threads to use for `requested` (0 = every CPU this process may
/// use: its affinity mask and cgroup quota, not the machine's core count).
inline int resolve_threads(int requested) { return requested > 0 ? requested : usable_cpu_count(); }

/// Calls body(begin, end) on disjoint chunks covering [0, n). Runs inline when
/// one thread suffices or the work is smaller than `min_chunk` items per thread.
template <class Body>
void parallel_for(int64_t n, int threads, int64_t min_chunk, Body&& body) {
  if (n <= 0) return;
  const int64_t max_useful = std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk));
  const int64_t workers = std::min<int64_t>(resolve_threads(threads), max_useful);
  if (workers <= 1) {
    body(int64_t{0}, n);
    return;
  }
  const int64_t chunk = (n + workers - 1) / workers;
  const int64_t num_chunks = (n + chunk - 1) / chunk;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(num_chunks));
  auto run_chunk = [&](int64_t index) {
    try {
      body(index * chunk, std::min(n, (index + 1) * chunk));
    } catch (...) {
      errors[static_cast<size_t>(index)] = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(num_chunks - 1));
  for (int64_t index = 1; index < num_chunks; ++index) pool.emplace_back(run_chunk, index);
  run_chunk(0);  // the calling thread takes the first chunk
  for (auto& thread : pool) thread.join();
  for (const auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
}

}  // namespace pe::detail
