#include "core/attention_cost.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/number_format.h"

namespace primserve {
namespace {

absl::Status CheckSize(int64_t value, absl::string_view field) {
  if (value >= 1) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": expected an integer >= 1, got ", value));
}

absl::Status CheckMultiplier(double value, absl::string_view field) {
  // `!(value > 0)` also rejects NaN.
  if (std::isfinite(value) && value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": expected a finite number > 0, got ", NumberToString(value)));
}

}  // namespace

absl::StatusOr<AttentionCost> EstimateAttentionCost(const AttentionCostInput& input) {
  if (absl::Status s = CheckSize(input.seq_len, "seq_len"); !s.ok()) return s;
  if (absl::Status s = CheckSize(input.head_size, "head_size"); !s.ok()) return s;
  if (absl::Status s = CheckSize(input.num_heads, "num_heads"); !s.ok()) return s;
  if (absl::Status s = CheckMultiplier(input.ffn_multiplier, "ffn_multiplier"); !s.ok()) return s;
  if (absl::Status s = CheckMultiplier(input.linear_head_multiplier, "linear_head_multiplier"); !s.ok()) {
    return s;
  }
  // In double throughout: the counts pass 2^63 long before they stop being meaningful
  // (n = 2^20, h = 128, d = 128 already gives ~1e18), and the wire carries doubles anyway.
  const double n = static_cast<double>(input.seq_len);
  const double d = static_cast<double>(input.head_size);
  const double h = static_cast<double>(input.num_heads);
  const double f = input.ffn_multiplier;
  const double m = input.linear_head_multiplier;
  const double hd = h * d;  // The model width.

  AttentionCost cost;
  // Four [n, hd] x [hd, hd] products: Q, K, V and the output projection.
  cost.projections = 4 * n * hd * hd;
  // q k^T and p v: two [n, d] x [d, n]-sized products per head.
  cost.attention_quadratic = 2 * n * n * hd;
  cost.self_attention = cost.projections + cost.attention_quadratic;
  // Up- and down-projection of width f * hd.
  cost.ffn = 2 * f * n * hd * hd;
  // Per head, sum_j phi(k_j) v_j^T and phi(q_i)^T S with head size m d: 2 n (m d)^2.
  cost.linear_attention = h * 2 * n * (m * d) * (m * d);

  // Each crossover solves "left > right" for n after dividing both sides by n (n > 0):
  //   4 n h^2 d^2 + 2 n^2 h d > 2 f n h^2 d^2   <=>  n > (f - 2) h d
  // For f <= 2 self-attention exceeds the FFN at every length: report 0 ("for every n > 0").
  cost.attention_exceeds_ffn_length = std::max(0.0, (f - 2) * hd);
  //   2 n^2 h d > 4 n h^2 d^2 + 2 f n h^2 d^2   <=>  n > (2 + f) h d   (6 h d for f = 4)
  cost.quadratic_dominates_length = (2 + f) * hd;
  //   per head 2 n^2 d > 2 n m^2 d^2            <=>  n > m^2 d         (16 d for m = 4)
  cost.linear_attention_wins_length = m * m * d;
  // Multipliers near double's maximum pass the checks above but overflow the counts.
  const double counts[] = {cost.projections, cost.attention_quadratic, cost.self_attention, cost.ffn,
                           cost.linear_attention, cost.attention_exceeds_ffn_length, cost.quadratic_dominates_length,
                           cost.linear_attention_wins_length};
  for (double count : counts) {
    if (!std::isfinite(count)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "seq_len, head_size, num_heads, ffn_multiplier, linear_head_multiplier: the counts overflow double for (",
          input.seq_len, ", ", input.head_size, ", ", input.num_heads, ", ", input.ffn_multiplier, ", ",
          input.linear_head_multiplier, ")"));
    }
  }
  return cost;
}

}  // namespace primserve
