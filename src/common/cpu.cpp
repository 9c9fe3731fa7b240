#include "pe/cpu.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

namespace pe {

namespace {

std::string read_first_line(const std::string& path) {
  std::ifstream file(path);
  std::string line;
  if (file) std::getline(file, line);
  return line;
}

// CPUs allowed by one quota/period pair, 0 for "no limit" or unreadable.
int cpus_from_quota(double quota, double period) {
  if (!(quota > 0) || !(period > 0)) return 0;
  return std::max(1, static_cast<int>(std::ceil(quota / period)));
}

// The cgroup's directory and each ancestor's, innermost first: a limit set on
// a parent applies to its children too, so the smallest one counts.
std::vector<std::string> cgroup_directories(const std::string& root, const std::string& relative) {
  std::vector<std::string> directories;
  std::string path = relative;
  while (!path.empty() && path.back() == '/') path.pop_back();
  for (;;) {
    directories.push_back(root + path);
    if (path.empty()) break;
    const size_t slash = path.rfind('/');
    path = slash == std::string::npos ? std::string() : path.substr(0, slash);
  }
  return directories;
}

int smallest_limit(int a, int b) { return a == 0 ? b : (b == 0 ? a : std::min(a, b)); }

}  // namespace

namespace detail {

int cgroup_cpu_limit(const std::string& proc_self_cgroup, const std::string& cgroup_root) {
  int limit = 0;
  std::istringstream lines(proc_self_cgroup);
  std::string line;
  while (std::getline(lines, line)) {
    // "hierarchy-id:controllers:path"; v2 is "0::path".
    const size_t first = line.find(':');
    const size_t second = first == std::string::npos ? first : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    const std::string path = line.substr(second + 1);
    if (controllers.empty()) {  // cgroup v2: "max 100000" or "200000 100000"
      for (const std::string& directory : cgroup_directories(cgroup_root, path)) {
        std::istringstream fields(read_first_line(directory + "/cpu.max"));
        std::string quota;
        double period = 0;
        if (fields >> quota >> period && quota != "max") {
          limit = smallest_limit(limit, cpus_from_quota(std::atof(quota.c_str()), period));
        }
      }
      continue;
    }
    std::istringstream names(controllers);
    std::string controller;
    bool has_cpu = false;
    while (std::getline(names, controller, ',')) has_cpu = has_cpu || controller == "cpu";
    if (!has_cpu) continue;
    // cgroup v1: the cpu controller is mounted as cpu, cpu,cpuacct or cpuacct,cpu.
    for (const char* mount : {"/cpu", "/cpu,cpuacct", "/cpuacct,cpu"}) {
      for (const std::string& directory : cgroup_directories(cgroup_root + mount, path)) {
        const std::string quota = read_first_line(directory + "/cpu.cfs_quota_us");
        const std::string period = read_first_line(directory + "/cpu.cfs_period_us");
        if (!quota.empty() && !period.empty()) {
          limit = smallest_limit(limit, cpus_from_quota(std::atof(quota.c_str()), std::atof(period.c_str())));
        }
      }
    }
  }
  return limit;
}

}  // namespace detail

int usable_cpu_count() {
  static const int count = [] {
    int cpus = 0;
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
    std::ifstream file("/proc/self/cgroup");
    std::stringstream text;
    text << file.rdbuf();
    const int quota = detail::cgroup_cpu_limit(text.str(), "/sys/fs/cgroup");
    if (quota > 0) cpus = cpus > 0 ? std::min(cpus, quota) : quota;
#endif
    if (cpus <= 0) cpus = static_cast<int>(std::thread::hardware_concurrency());
    return std::max(1, cpus);
  }();
  return count;
}

std::string cpu_features() {
  static const std::string features = [] {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    std::string text = "x86-64";
    if (__builtin_cpu_supports("avx2")) text += " avx2";
    if (__builtin_cpu_supports("fma")) text += " fma";
    if (__builtin_cpu_supports("avx512f")) text += " avx512f";
    if (__builtin_cpu_supports("avx512bw")) text += " avx512bw";
    if (__builtin_cpu_supports("avx512vnni")) text += " avx512vnni";
    return text;
#elif defined(__aarch64__)
    return std::string("aarch64 neon");
#else
    return std::string("portable");
#endif
  }();
  return features;
}

}  // namespace pe
