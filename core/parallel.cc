#include "core/parallel.h"

#include <sched.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <string>
#include <thread>

namespace primserve {
namespace {

std::atomic<int> g_compute_threads{0};

// cgroup v2 "cpu.max" holds "<quota> <period>" or "max <period>".
int CgroupCpuLimit() {
  std::ifstream file("/sys/fs/cgroup/cpu.max");
  std::string quota;
  long long period = 0;
  if (!(file >> quota >> period) || quota == "max" || period <= 0) return 0;
  try {
    const double cpus = std::stod(quota) / static_cast<double>(period);
    return std::max(1, static_cast<int>(std::ceil(cpus)));
  } catch (...) {
    return 0;
  }
}

}  // namespace

int AvailableCores() {
  int cores = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cores = CPU_COUNT(&set);
  if (cores <= 0) cores = static_cast<int>(std::thread::hardware_concurrency());
  const int quota = CgroupCpuLimit();
  if (quota > 0 && quota < cores) cores = quota;
  return std::max(cores, 1);
}

void SetComputeThreads(int threads) {
  const int n = threads > 0 ? threads : AvailableCores();
  g_compute_threads.store(n);
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
}

void BindComputeThreads() {
#ifdef _OPENMP
  const int n = ComputeThreads();
  if (omp_get_max_threads() != n) omp_set_num_threads(n);
#endif
}

int ComputeThreads() {
  int n = g_compute_threads.load(std::memory_order_relaxed);
  if (n <= 0) {
    n = AvailableCores();
    g_compute_threads.store(n);
  }
  return n;
}

}  // namespace primserve
