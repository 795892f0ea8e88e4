// Internal to the attention kernels: a validated problem description shared by attention.cc
// (validation, RoPE, dispatch) and the SOFTMAX / LINEAR kernels.
#ifndef PRIMSERVE_CORE_ATTENTION_INTERNAL_H_
#define PRIMSERVE_CORE_ATTENTION_INTERNAL_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "core/position_encoding.h"

namespace primserve {
namespace attention_internal {

struct Problem {
  int64_t batch = 0, heads = 0, kv_heads = 0, q_len = 0, k_len = 0, head_dim = 0, value_dim = 0;
  const float* q = nullptr;  // [batch, heads, q_len, head_dim]
  const float* k = nullptr;  // [batch, kv_heads, k_len, head_dim]
  const float* v = nullptr;  // [batch, kv_heads, k_len, value_dim]
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
  float* out_rows(int64_t b, int64_t h) const { return out + ((b * heads + h) * q_len) * value_dim; }
  // Keys [0, VisibleEnd(b, i)) are visible to query row i of batch b.
  int64_t VisibleEnd(int64_t b, int64_t i) const {
    int64_t end = key_lengths[static_cast<size_t>(b)];
    if (causal) end = std::min(end, i + (k_len - q_len) + 1);
    return std::max<int64_t>(end, 0);
  }
  bool Cancelled() const { return cancelled != nullptr && *cancelled && (*cancelled)(); }
};

absl::Status RunSoftmax(const Problem& problem);
absl::Status RunLinear(const Problem& problem);

}  // namespace attention_internal
}  // namespace primserve

#endif  // PRIMSERVE_CORE_ATTENTION_INTERNAL_H_
