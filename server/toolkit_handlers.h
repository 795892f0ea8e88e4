// Toolkit handlers: request proto -> core -> response proto, no network involved, so each is
// unit-testable directly. Statuses are those of core/toolkit.h plus INVALID_ARGUMENT for a
// missing tensor or an unknown enum value (naming the field).
#ifndef PRIMSERVE_SERVER_TOOLKIT_HANDLERS_H_
#define PRIMSERVE_SERVER_TOOLKIT_HANDLERS_H_

#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/toolkit.h"
#include "primserve/v1/toolkit.pb.h"
#include "server/limits.h"

namespace primserve {

// `coefficient` 0 on the wire means 8.33.
absl::Status HandleEmbeddingDimension(const v1::EmbeddingDimensionRequest& request,
                                      v1::EmbeddingDimensionResponse* response);

// The shape is checked against limits.max_elements before anything is allocated. `cancelled`
// (may be empty) is polled between blocks; true abandons the call with CANCELLED.
absl::Status HandleInitializeParameters(const Limits& limits, const v1::InitializeParametersRequest& request,
                                        v1::InitializeParametersResponse* response,
                                        std::function<bool()> cancelled = nullptr);

absl::Status HandleChildTuningMask(const Limits& limits, const v1::ChildTuningMaskRequest& request,
                                   v1::ChildTuningMaskResponse* response,
                                   std::function<bool()> cancelled = nullptr);

// Wire enums -> core enums (UNSPECIFIED means the first listed value; unknown values are
// INVALID_ARGUMENT naming `field`).
absl::StatusOr<InitDistribution> InitDistributionFromProto(v1::InitDistribution distribution,
                                                           absl::string_view field);
absl::StatusOr<InitScheme> InitSchemeFromProto(v1::InitScheme scheme, absl::string_view field);
absl::StatusOr<ChildTuningMode> ChildTuningModeFromProto(v1::ChildTuningMode mode, absl::string_view field);

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_TOOLKIT_HANDLERS_H_
