// PositionEncoding handlers: request proto -> core -> response proto, no network involved, so
// each is unit-testable directly. Statuses are those of core/position_encoding.h plus
// INVALID_ARGUMENT for a missing tensor or an unknown enum value.
#ifndef PRIMSERVE_SERVER_POSITION_ENCODING_HANDLERS_H_
#define PRIMSERVE_SERVER_POSITION_ENCODING_HANDLERS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/position_encoding.h"
#include "primserve/v1/position_encoding.pb.h"
#include "server/limits.h"

namespace primserve {

absl::Status HandleSinusoidal(const Limits& limits, const v1::SinusoidalRequest& request,
                              v1::SinusoidalResponse* response);

absl::Status HandleApplyRope(const Limits& limits, const v1::ApplyRopeRequest& request,
                             v1::ApplyRopeResponse* response);

// Wire enums -> core enums (UNSPECIFIED means the first listed value; unknown values are
// INVALID_ARGUMENT naming `field`). Shared with the Attention service's RopeSpec.
absl::StatusOr<RopeKind> RopeKindFromProto(v1::RopeKind kind, absl::string_view field);
absl::StatusOr<RopePairing> RopePairingFromProto(v1::RopePairing pairing, absl::string_view field);

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_POSITION_ENCODING_HANDLERS_H_
