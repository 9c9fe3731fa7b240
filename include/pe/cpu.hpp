#pragma once
// pe/cpu.hpp — how many CPUs this process may use, and what they can do.
//
// "All cores" (a thread count of 0 anywhere in the library) means
// usable_cpu_count(), not std::thread::hardware_concurrency(): in a container
// or under taskset the machine may have 64 cores while this process may use 2,
// and 64 busy threads on 2 CPUs run slower than 2.
//
// Thread safety: both functions compute once (thread-safe static) and then
// only read.

#include <string>

namespace pe {

/// CPUs this process may run on: the CPUs in its affinity mask
/// (sched_getaffinity), capped by a CPU quota of its cgroup (v2 cpu.max or v1
/// cpu.cfs_quota_us / cpu.cfs_period_us, rounded up), at least 1. Read once.
int usable_cpu_count();

/// The SIMD extensions of this CPU that the library's kernels can use, for
/// benchmark and log output, e.g. "x86-64 avx2 fma f16c avx512f avx512bw".
std::string cpu_features();

namespace detail {
/// The cgroup CPU limit in CPUs (ceil(quota / period)), or 0 when there is
/// none, from the text of /proc/self/cgroup and the cgroup file system
/// mounted at `cgroup_root` (normally /sys/fs/cgroup). Exposed for tests.
int cgroup_cpu_limit(const std::string& proc_self_cgroup, const std::string& cgroup_root);
}  // namespace detail

}  // namespace pe
