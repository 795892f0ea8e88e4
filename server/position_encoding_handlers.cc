#include "server/position_encoding_handlers.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/tensor_conversion.h"

namespace primserve {
namespace {

absl::Status UnknownEnum(absl::string_view field, int value) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": unknown enum value ", value));
}

double BaseOrDefault(double base) { return base == 0.0 ? kDefaultRopeBase : base; }

}  // namespace

absl::StatusOr<RopeKind> RopeKindFromProto(v1::RopeKind kind, absl::string_view field) {
  switch (kind) {
    case v1::ROPE_KIND_UNSPECIFIED:
    case v1::ROPE_KIND_ROPE_1D: return RopeKind::k1D;
    case v1::ROPE_KIND_ROPE_2D: return RopeKind::k2D;
    default: return UnknownEnum(field, kind);
  }
}

absl::StatusOr<RopePairing> RopePairingFromProto(v1::RopePairing pairing, absl::string_view field) {
  switch (pairing) {
    case v1::ROPE_PAIRING_UNSPECIFIED:
    case v1::ROPE_PAIRING_INTERLEAVED: return RopePairing::kInterleaved;
    case v1::ROPE_PAIRING_HALF_SPLIT: return RopePairing::kHalfSplit;
    default: return UnknownEnum(field, pairing);
  }
}

absl::Status HandleSinusoidal(const Limits& limits, const v1::SinusoidalRequest& request,
                              v1::SinusoidalResponse* response) {
  SinusoidalOptions options;
  options.dim = request.dim();
  options.base = BaseOrDefault(request.base());
  options.max_elements = limits.max_elements;
  switch (request.layout()) {
    case v1::SINUSOIDAL_LAYOUT_UNSPECIFIED:
    case v1::SINUSOIDAL_LAYOUT_INTERLEAVED: options.layout = SinusoidalLayout::kInterleaved; break;
    case v1::SINUSOIDAL_LAYOUT_SPLIT: options.layout = SinusoidalLayout::kSplit; break;
    default: return UnknownEnum("layout", request.layout());
  }
  Tensor table;
  if (request.positions_size() > 0) {
    if (request.length() != 0 && request.length() != request.positions_size()) {
      return absl::InvalidArgumentError(absl::StrCat("length: expected 0 or the number of positions (",
                                                     request.positions_size(), ") when positions are given, got ",
                                                     request.length()));
    }
    ASSIGN_OR_RETURN(table, SinusoidalTable(request.positions(), options));
  } else {
    ASSIGN_OR_RETURN(table, SinusoidalTable(request.length(), options));
  }
  TensorToProto(table, response->mutable_output());
  return absl::OkStatus();
}

absl::Status HandleApplyRope(const Limits& limits, const v1::ApplyRopeRequest& request,
                             v1::ApplyRopeResponse* response) {
  if (!request.has_input()) {
    return absl::InvalidArgumentError("input: required, got no tensor");
  }
  RopeSpec spec;
  ASSIGN_OR_RETURN(spec.kind, RopeKindFromProto(request.kind(), "kind"));
  ASSIGN_OR_RETURN(spec.pairing, RopePairingFromProto(request.pairing(), "pairing"));
  spec.base = BaseOrDefault(request.base());
  spec.rotary_dim = request.rotary_dim();
  spec.inverse = request.inverse();
  spec.positions.assign(request.positions().begin(), request.positions().end());
  spec.positions_x.assign(request.positions_x().begin(), request.positions_x().end());
  spec.positions_y.assign(request.positions_y().begin(), request.positions_y().end());
  spec.grid_height = request.grid_height();
  spec.grid_width = request.grid_width();
  // Zero-copy: rotate from the request's bytes straight into the response's (no Tensor in
  // between; the server's only payload copies are gRPC's own parse and serialize). A response
  // reused from the message pool already has the bytes' capacity. On an error nothing is sent.
  ASSIGN_OR_RETURN(const TensorView input, TensorViewFromProto(request.input(), "input", limits.max_elements));
  const absl::Span<float> out = MutableTensorData(input.shape, response->mutable_output());
  return ApplyRope(input.values, input.shape, spec, out);
}

}  // namespace primserve
