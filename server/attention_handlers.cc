#include "server/attention_handlers.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/attention_cost.h"
#include "core/status_macros.h"
#include "server/position_encoding_handlers.h"
#include "server/tensor_conversion.h"

namespace primserve {
namespace {

absl::Status UnknownEnum(absl::string_view field, int value) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": unknown enum value ", value));
}

absl::Status Missing(absl::string_view field) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": required, got no tensor"));
}

// 0 on the wire is the documented default; anything else goes to the core to judge.
double OrDefault(double value, double default_value) { return value == 0.0 ? default_value : value; }

absl::StatusOr<AttentionRope> RopeFromProto(const v1::RopeSpec& proto) {
  AttentionRope rope;
  ASSIGN_OR_RETURN(rope.kind, RopeKindFromProto(proto.kind(), "rope.kind"));
  ASSIGN_OR_RETURN(rope.pairing, RopePairingFromProto(proto.pairing(), "rope.pairing"));
  rope.base = OrDefault(proto.base(), kDefaultRopeBase);
  rope.rotary_dim = proto.rotary_dim();
  rope.query_positions.assign(proto.query_positions().begin(), proto.query_positions().end());
  rope.key_positions.assign(proto.key_positions().begin(), proto.key_positions().end());
  rope.grid_height = proto.grid_height();
  rope.grid_width = proto.grid_width();
  return rope;
}

}  // namespace

absl::StatusOr<AttentionKind> AttentionKindFromProto(v1::AttentionKind kind, absl::string_view field) {
  switch (kind) {
    case v1::ATTENTION_KIND_UNSPECIFIED:
    case v1::ATTENTION_KIND_SOFTMAX: return AttentionKind::kSoftmax;
    case v1::ATTENTION_KIND_LINEAR: return AttentionKind::kLinear;
    default: return UnknownEnum(field, kind);
  }
}

absl::Status HandleAttend(const Limits& limits, const v1::AttendRequest& request, v1::AttendResponse* response,
                          std::function<bool()> cancelled) {
  // Cheap wire-only checks first; everything about shapes and values is the core's to judge.
  if (!request.has_query()) return Missing("query");
  if (!request.has_key()) return Missing("key");
  if (!request.has_value()) return Missing("value");
  AttentionOptions options;
  ASSIGN_OR_RETURN(options.kind, AttentionKindFromProto(request.kind(), "kind"));
  ASSIGN_OR_RETURN(options.precision, ComputePrecisionFromProto(request.compute_precision(), "compute_precision"));
  options.causal = request.causal();
  options.key_lengths.assign(request.key_lengths().begin(), request.key_lengths().end());
  options.scale = request.scale();
  options.return_weights = request.return_weights();
  if (request.has_rope()) {
    ASSIGN_OR_RETURN(options.rope, RopeFromProto(request.rope()));
  }
  options.max_elements = limits.max_elements;
  options.max_weight_elements = limits.max_weight_elements;
  options.cancelled = std::move(cancelled);

  ASSIGN_OR_RETURN(const Tensor query, TensorFromProto(request.query(), "query", limits.max_elements));
  ASSIGN_OR_RETURN(const Tensor key, TensorFromProto(request.key(), "key", limits.max_elements));
  ASSIGN_OR_RETURN(const Tensor value, TensorFromProto(request.value(), "value", limits.max_elements));
  std::optional<Tensor> bias;
  if (request.has_bias()) {
    ASSIGN_OR_RETURN(bias, TensorFromProto(request.bias(), "bias", limits.max_elements));
    options.bias = &*bias;
  }
  ASSIGN_OR_RETURN(const AttentionResult result, Attend(query, key, value, options));
  TensorToProto(result.output, response->mutable_output());
  if (result.weights.has_value()) TensorToProto(*result.weights, response->mutable_weights());
  return absl::OkStatus();
}

absl::Status HandleEstimateCost(const v1::EstimateCostRequest& request, v1::EstimateCostResponse* response) {
  const AttentionCostInput defaults;
  AttentionCostInput input;
  input.seq_len = request.seq_len();
  input.head_size = request.head_size();
  input.num_heads = request.num_heads();
  input.ffn_multiplier = OrDefault(request.ffn_multiplier(), defaults.ffn_multiplier);
  input.linear_head_multiplier = OrDefault(request.linear_head_multiplier(), defaults.linear_head_multiplier);
  ASSIGN_OR_RETURN(const AttentionCost cost, EstimateAttentionCost(input));
  response->set_projections(cost.projections);
  response->set_attention_quadratic(cost.attention_quadratic);
  response->set_self_attention(cost.self_attention);
  response->set_ffn(cost.ffn);
  response->set_linear_attention(cost.linear_attention);
  response->set_attention_exceeds_ffn_length(cost.attention_exceeds_ffn_length);
  response->set_quadratic_dominates_length(cost.quadratic_dominates_length);
  response->set_linear_attention_wins_length(cost.linear_attention_wins_length);
  return absl::OkStatus();
}

}  // namespace primserve
