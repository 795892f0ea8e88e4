// Internal to the attention kernels: a validated problem description shared by attention.cc
// (validation, RoPE, dispatch) and the SOFTMAX / LINEAR kernels.
#ifndef PRIMSERVE_CORE_ATTENTION_INTERNAL_H_
#define PRIMSERVE_CORE_ATTENTION_INTERNAL_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include <omp.h>

#include <atomic>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "core/dnnl_context.h"
#include "core/parallel.h"
#include "core/position_encoding.h"

namespace primserve {
namespace attention_internal {

struct Problem {
  int64_t batch = 0, heads = 0, kv_heads = 0, q_len = 0, k_len = 0, head_dim = 0, value_dim = 0;
  const float* q = nullptr;  // [batch, heads, q_len, head_dim]
  const float* k = nullptr;  // [batch, kv_heads, k_len, head_dim]
  const float* v = nullptr;  // [batch, kv_heads, k_len, value_dim]
  // BF16 compute precision (SOFTMAX): q, k, v rounded to bfloat16 once per call, same layouts.
  bool bf16 = false;
  const uint16_t* q_bf16 = nullptr;
  const uint16_t* k_bf16 = nullptr;
  const uint16_t* v_bf16 = nullptr;
  const float* bias = nullptr;
  int64_t bias_stride[4] = {0, 0, 0, 0};  // (b, h, i, j); 0 on broadcast axes.
  std::vector<int64_t> key_lengths;       // [batch], resolved (k_len when not given).
  bool causal = false;
  float scale = 1.0f;
  float* out = nullptr;      // [batch, heads, q_len, value_dim]
  float* weights = nullptr;  // [batch, heads, q_len, k_len] or null.
  const std::function<bool()>* cancelled = nullptr;
  // LINEAR with RoPE: tables for the numerator's rotated phi(q) [q_len] and phi(k) [k_len].
  const RopeTable* q_rope = nullptr;
  const RopeTable* k_rope = nullptr;

  int64_t kv_head(int64_t h) const { return h / (heads / kv_heads); }
  const float* q_rows(int64_t b, int64_t h) const { return q + ((b * heads + h) * q_len) * head_dim; }
  const float* k_rows(int64_t b, int64_t h) const { return k + ((b * kv_heads + kv_head(h)) * k_len) * head_dim; }
  const float* v_rows(int64_t b, int64_t h) const { return v + ((b * kv_heads + kv_head(h)) * k_len) * value_dim; }
  const uint16_t* q_bf16_rows(int64_t b, int64_t h) const { return q_bf16 + ((b * heads + h) * q_len) * head_dim; }
  const uint16_t* k_bf16_rows(int64_t b, int64_t h) const {
    return k_bf16 + ((b * kv_heads + kv_head(h)) * k_len) * head_dim;
  }
  const uint16_t* v_bf16_rows(int64_t b, int64_t h) const {
    return v_bf16 + ((b * kv_heads + kv_head(h)) * k_len) * value_dim;
  }
  float* out_rows(int64_t b, int64_t h) const { return out + ((b * heads + h) * q_len) * value_dim; }
  // Keys [0, VisibleEnd(b, i)) are visible to query row i of batch b.
  int64_t VisibleEnd(int64_t b, int64_t i) const {
    int64_t end = key_lengths[static_cast<size_t>(b)];
    if (causal) end = std::min(end, i + (k_len - q_len) + 1);
    return std::max<int64_t>(end, 0);
  }
  bool Cancelled() const { return cancelled != nullptr && *cancelled && (*cancelled)(); }
};

// Runs run(unit, workspace) for every unit in [0, units) on the compute threads, handed out
// dynamically (units differ in cost), with one Workspace per thread set up by init(workspace).
// oneDNN errors become statuses; the first error, or a cancellation seen between units, stops
// the remaining units and is returned.
template <typename Workspace, typename Init, typename Run>
absl::Status ForEachUnit(const Problem& p, int64_t units, absl::string_view what, const Init& init, const Run& run) {
  std::atomic<bool> stop{false};
  absl::Mutex mu;
  absl::Status first_error;
  const int threads = static_cast<int>(std::min<int64_t>(ComputeThreads(), units));
#pragma omp parallel num_threads(threads)
  {
    // oneDNN sizes its work split by omp_get_max_threads(); inside this region each primitive
    // runs on one thread, so say so (this ICV is per thread) rather than let it split for
    // threads that never come.
    omp_set_num_threads(1);
    Workspace ws;
    absl::Status status = RunDnnl(what, [&] { init(ws); });
#pragma omp for schedule(dynamic, 1)
    for (int64_t unit = 0; unit < units; ++unit) {
      if (!status.ok() || stop.load(std::memory_order_relaxed)) continue;
      if (p.Cancelled()) {
        status = absl::CancelledError("attention: cancelled by the caller");
      } else {
        absl::Status unit_status;
        status = RunDnnl(what, [&] { unit_status = run(unit, ws); });
        if (status.ok()) status = unit_status;
      }
      if (!status.ok()) stop.store(true);
    }
    if (!status.ok()) {
      absl::MutexLock lock(&mu);
      if (first_error.ok()) first_error = status;
    }
  }
  return first_error;
}

absl::Status RunSoftmax(const Problem& problem);
absl::Status RunLinear(const Problem& problem);

}  // namespace attention_internal
}  // namespace primserve

#endif  // PRIMSERVE_CORE_ATTENTION_INTERNAL_H_
