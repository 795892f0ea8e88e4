// Attention handlers: request proto -> core -> response proto, no network involved, so each is
// unit-testable directly. Statuses are those of core/attention.h and core/attention_cost.h plus
// INVALID_ARGUMENT for a missing tensor or an unknown enum value (naming the field).
#ifndef PRIMSERVE_SERVER_ATTENTION_HANDLERS_H_
#define PRIMSERVE_SERVER_ATTENTION_HANDLERS_H_

#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/attention.h"
#include "primserve/v1/attention.pb.h"
#include "server/limits.h"

namespace primserve {

// `cancelled` (may be empty) is polled by the kernel between tiles; returning true abandons the
// call with CANCELLED (a passed deadline or a cancelled RPC).
absl::Status HandleAttend(const Limits& limits, const v1::AttendRequest& request, v1::AttendResponse* response,
                          std::function<bool()> cancelled = nullptr);

absl::Status HandleEstimateCost(const v1::EstimateCostRequest& request, v1::EstimateCostResponse* response);

// Wire enums -> core enums (UNSPECIFIED means the first listed value; unknown values are
// INVALID_ARGUMENT naming `field`).
absl::StatusOr<AttentionKind> AttentionKindFromProto(v1::AttentionKind kind, absl::string_view field);

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_ATTENTION_HANDLERS_H_
