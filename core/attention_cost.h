// Su Jianlin's multiplication counts for one Transformer layer (archive 8610, MATH.md section 6).
//
// n = seq_len, d = head_size, h = num_heads:
//   projections          4 n h^2 d^2   (Q, K, V and output)
//   attention_quadratic  2 n^2 h d     (q k^T and p v)
//   self_attention       4 n h^2 d^2 + 2 n^2 h d
//   ffn                  2 * ffn_multiplier * n h^2 d^2   (8 n h^2 d^2 for the usual 4x)
//   linear_attention     2 n m^2 d^2 per head with head size m d (m = linear_head_multiplier),
//                        times h heads
// Crossovers, with f = ffn_multiplier: self-attention > FFN when n > (f - 2) h d (2hd for the
// 4x FFN); the quadratic term dominates the layer (> projections + FFN) when n > (2 + f) h d
// (6hd); linear attention with head size m d is cheaper than the quadratic term only when
// n > m^2 d (16d for m = 4). Each crossover is the length where both sides are equal.
// Check (h = 12, d = 64): n = 512 gives self_attention 1,610,612,736 and ffn 2,415,919,104;
// crossovers 1536, 4608, 1024.
#ifndef PRIMSERVE_CORE_ATTENTION_COST_H_
#define PRIMSERVE_CORE_ATTENTION_COST_H_

#include <cstdint>

#include "absl/status/statusor.h"

namespace primserve {

struct AttentionCostInput {
  int64_t seq_len = 0;               // n >= 1
  int64_t head_size = 0;             // d >= 1
  int64_t num_heads = 0;             // h >= 1
  double ffn_multiplier = 4.0;       // > 0 (0 on the wire means 4)
  double linear_head_multiplier = 4.0;  // m > 0 (0 on the wire means 4)
};

struct AttentionCost {
  double projections = 0;
  double attention_quadratic = 0;
  double self_attention = 0;
  double ffn = 0;
  double linear_attention = 0;
  // self_attention > ffn exactly when seq_len > this; 0 when it holds at every length (f <= 2).
  double attention_exceeds_ffn_length = 0;
  // attention_quadratic > projections + ffn exactly when seq_len > this.
  double quadratic_dominates_length = 0;
  // linear_attention < attention_quadratic exactly when seq_len > this.
  double linear_attention_wins_length = 0;
};

// Every count and length for `input`; the crossover lengths do not depend on seq_len.
// Errors: INVALID_ARGUMENT naming the field for sizes < 1 or multipliers that are not finite
// and > 0, and naming every argument when a count would overflow double (multipliers near
// 1e308): every count returned is finite.
absl::StatusOr<AttentionCost> EstimateAttentionCost(const AttentionCostInput& input);

}  // namespace primserve

#endif  // PRIMSERVE_CORE_ATTENTION_COST_H_
