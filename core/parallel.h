// Thread-level parallelism for core kernels, on the OpenMP runtime oneDNN also uses, so that
// kernels and oneDNN primitives share one pool and never oversubscribe the cores.
//
// Example:
//   ParallelForRange(rows, rows * dim >= 65536, [&](int64_t begin, int64_t end) { ... });
#ifndef PRIMSERVE_CORE_PARALLEL_H_
#define PRIMSERVE_CORE_PARALLEL_H_

#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace primserve {

// Cores this process may use: the cgroup CPU quota (containers) if set, else the affinity mask.
int AvailableCores();

// Sets the threads each parallel kernel (and each oneDNN primitive) uses. `threads` <= 0 means
// AvailableCores().
void SetComputeThreads(int threads);
int ComputeThreads();
// Makes OpenMP regions (ours and oneDNN's) opened from the calling thread use ComputeThreads()
// threads. OpenMP's team size is a per-thread setting: call this on every thread that runs
// kernels and was not the one that called SetComputeThreads (e.g. gRPC handler threads).
void BindComputeThreads();

// Calls fn(begin, end) on contiguous, disjoint chunks covering [0, n), one chunk per thread,
// in parallel when `parallel` is true and more than one thread is configured.
template <typename Fn>
void ParallelForRange(int64_t n, bool parallel, const Fn& fn) {
  if (n <= 0) return;
#ifdef _OPENMP
  const int threads = parallel ? static_cast<int>(std::min<int64_t>(ComputeThreads(), n)) : 1;
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    {
      const int64_t t = omp_get_thread_num();
      const int64_t team = omp_get_num_threads();
      const int64_t begin = n * t / team;
      const int64_t end = n * (t + 1) / team;
      if (begin < end) fn(begin, end);
    }
    return;
  }
#else
  (void)parallel;
#endif
  fn(0, n);
}

// Calls fn(i) for every i in [0, n).
template <typename Fn>
void ParallelFor(int64_t n, bool parallel, const Fn& fn) {
  ParallelForRange(n, parallel, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) fn(i);
  });
}

}  // namespace primserve

#endif  // PRIMSERVE_CORE_PARALLEL_H_
