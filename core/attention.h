// Attention (MATH.md sections 2 and 6): scaled dot-product (softmax) attention as a blocked
// ("flash") kernel that never materialises the [Lq, Lk] score matrix, and linear attention
// (phi = elu + 1) with its causal running-sum form.
//
// Shapes (row-major float32):
//   query [batch, num_heads, q_len, head_dim]
//   key   [batch, num_kv_heads, k_len, head_dim]
//   value [batch, num_kv_heads, k_len, value_dim]
//   bias  (optional, SOFTMAX only) any shape broadcastable to [batch, num_heads, q_len, k_len]:
//         rank <= 4, right-aligned, each axis 1 or the full extent (-Inf entries mask; finite
//         ones, down to torch.finfo(float32).min, are logits, as in PyTorch: a row biased by
//         finfo.min everywhere gets the uniform softmax). Without a bias, a product scale q.k
//         below about -2.4e38 (float's lowest over log2 e: the kernel's softmax is in base 2)
//         counts as -Inf, i.e. masked.
//   output  [batch, num_heads, q_len, value_dim]
//   weights [batch, num_heads, q_len, k_len] (only when return_weights; SOFTMAX only)
// num_heads % num_kv_heads == 0: query head h reads key/value head h / (num_heads / num_kv_heads)
// (grouped-query and multi-query attention, without copying K/V).
//
// Masks: with `causal`, query i sees keys j <= i + (k_len - q_len) (bottom-right aligned, as in
// FlashAttention); `key_lengths[b]` masks keys j >= key_lengths[b] of batch b. A query row that
// sees no key yields zeros (and zero weights), never NaN. Values near float32's maximum give
// their finite weighted mean (the elements whose running sum overflowed are computed again with
// the values scaled by a power of two).
//
// RoPE: `rope` rotates q and k inside the call with the PositionEncoding core. Empty key
// positions mean 0..k_len-1, empty query positions (k_len-q_len)..(k_len-1). A 2-D RoPE takes
// grid_height * grid_width == k_len; query i sits at key index (k_len - q_len) + i.
// For LINEAR (Su, archive 8265) the rotation applies to phi(q), phi(k) in the numerator only;
// the denominator keeps the unrotated phi(q) . sum phi(k).
//
// Precision: F32 computes in float32 throughout. BF16 (SOFTMAX only, on CPUs with native
// bfloat16) rounds q, k, v (after RoPE) and each probability tile to bfloat16 (nearest even) for
// the two tile products, which accumulate in float32; max, exp, the normaliser and the output
// stay float32. Its error is set by bfloat16's 8-bit significand: about 2^-8 of max|v| (see the
// BF16 rows of tests/core/attention_test.cc), against float32's ~1e-6. The bfloat16 copies of
// q, k, v live in a per-thread buffer reused by the next call on the same thread (kept up to
// 32 MiB per thread; larger ones are freed after the call).
//
// Example:
//   AttentionOptions options;
//   options.causal = true;
//   ASSIGN_OR_RETURN(AttentionResult result, Attend(query, key, value, options));
#ifndef PRIMSERVE_CORE_ATTENTION_H_
#define PRIMSERVE_CORE_ATTENTION_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "core/position_encoding.h"
#include "core/tensor.h"

namespace primserve {

enum class AttentionKind {
  kSoftmax,  // softmax(q k^T * scale + bias) v
  kLinear,   // phi(q) (sum phi(k) v^T) / (phi(q) . sum phi(k)), phi = elu + 1
};

struct AttentionRope {
  RopeKind kind = RopeKind::k1D;
  RopePairing pairing = RopePairing::kInterleaved;
  double base = kDefaultRopeBase;
  int64_t rotary_dim = 0;                // 0: all of head_dim.
  std::vector<double> query_positions;   // 1-D: q_len values, or empty (see above).
  std::vector<double> key_positions;     // 1-D: k_len values, or empty.
  int64_t grid_height = 0;               // 2-D only.
  int64_t grid_width = 0;
};

struct AttentionOptions {
  AttentionKind kind = AttentionKind::kSoftmax;
  bool causal = false;
  std::vector<int64_t> key_lengths;      // Empty, or one per batch in [0, k_len].
  const Tensor* bias = nullptr;          // Optional (SOFTMAX only); not owned.
  double scale = 0.0;                    // 0: 1/sqrt(head_dim). Must be finite and >= 0.
  std::optional<AttentionRope> rope;
  bool return_weights = false;
  ComputePrecision precision = ComputePrecision::kF32;
  // Limits, checked before allocating: elements of any input/output, and of `weights`.
  int64_t max_elements = kDefaultMaxElements;
  int64_t max_weight_elements = int64_t{1} << 24;
  // Polled between tiles; returning true abandons the call with CANCELLED.
  std::function<bool()> cancelled;
};

struct AttentionResult {
  Tensor output;                  // [batch, num_heads, q_len, value_dim]
  std::optional<Tensor> weights;  // [batch, num_heads, q_len, k_len] when requested.
};

// Errors: INVALID_ARGUMENT naming the argument (rank != 4; batch / head_dim / k_len mismatches
// between query, key and value; num_heads % num_kv_heads != 0; key_lengths of the wrong size or
// out of [0, k_len]; a bias that does not broadcast; a bias or return_weights with LINEAR; a
// negative or non-finite scale; NaN or Inf in query/key/value, NaN or +Inf in bias; RoPE errors
// as in RopeTable::Create); RESOURCE_EXHAUSTED (weights above max_weight_elements, or any
// tensor above max_elements); INVALID_ARGUMENT also when a visible SOFTMAX logit scale q.k + bias
// overflows float32 in base 2 (above about 2.4e38, float's maximum over log2 e), including an
// overflowed q.k against a -Inf bias, or an output element (a weighted mean of values) that
// rounds past float32's maximum; UNIMPLEMENTED (BF16 with LINEAR, or where this CPU has no
// native bfloat16 kernels, HasNativeBf16() false);
// CANCELLED (options.cancelled returned true).
absl::StatusOr<AttentionResult> Attend(const Tensor& query, const Tensor& key, const Tensor& value,
                                       const AttentionOptions& options);

}  // namespace primserve

#endif  // PRIMSERVE_CORE_ATTENTION_H_
