// LogisticRegression handlers: request proto -> core/logistic_regression.h -> response proto, no
// network involved, so each is unit-testable directly (FitStream reads its messages through a
// callback). Statuses are those of the core functions plus, naming the field:
//   INVALID_ARGUMENT  a missing tensor, an unknown enum value, an option that does not apply to
//                     the solver (e.g. `l2` with ANALYTIC), options in a later FitStream
//                     message, a bad `model_name`, both or neither of Predict's model_name/model
//   RESOURCE_EXHAUSTED  statistics or a result that would not fit in one message (d x d scatter,
//                     K x d weights, M x K probabilities), checked before allocating
//   NOT_FOUND / FAILED_PRECONDITION  Predict's model_name unknown / not a logistic model
//   CANCELLED          the call's deadline passed or it was cancelled (between stream messages)
//   the model store's write statuses when `model_name` is set (see server/model_store.h).
// A model is stored only after the whole fit succeeded, so an error stores nothing.
#ifndef PRIMSERVE_SERVER_LOGISTIC_HANDLERS_H_
#define PRIMSERVE_SERVER_LOGISTIC_HANDLERS_H_

#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/logistic_regression.h"
#include "primserve/v1/logistic_regression.pb.h"
#include "server/limits.h"
#include "server/logistic_conversion.h"
#include "server/model_store.h"

namespace primserve {

// `store` may be null only when no request sets `model_name`. `cancelled` (may be null) is
// polled between the maximum-likelihood solver's iterations.
absl::Status HandleFit(const Limits& limits, ModelStore* store, const v1::FitRequest& request,
                       v1::FitResponse* response, std::function<bool()> cancelled = nullptr);

// Reads the next stream message into its argument: true, false at the end of the stream, or an
// error when the stream broke off (e.g. CANCELLED: the client went away), which fails the call.
using FitMessageReader = std::function<absl::StatusOr<bool>(v1::FitRequest*)>;

// Accumulates the statistics message by message (memory: the statistics plus one message).
// `cancelled` (may be empty) is polled before each message.
absl::Status HandleFitStream(const Limits& limits, ModelStore* store, const FitMessageReader& read,
                             v1::FitResponse* response, std::function<bool()> cancelled = nullptr);

absl::Status HandleComputeStatistics(const Limits& limits, const v1::ComputeStatisticsRequest& request,
                                     v1::ComputeStatisticsResponse* response);

absl::Status HandleFitFromStatistics(const Limits& limits, ModelStore* store,
                                     const v1::FitFromStatisticsRequest& request,
                                     v1::FitFromStatisticsResponse* response);

// `store` may be null only when requests carry inline models.
absl::Status HandlePredict(const Limits& limits, const ModelStore* store, const v1::PredictRequest& request,
                           v1::PredictResponse* response);

// Wire enum -> core enum (UNSPECIFIED means POOLED_WITHIN; unknown values are INVALID_ARGUMENT
// naming `field`).
absl::StatusOr<Covariance> CovarianceFromProto(v1::Covariance covariance, absl::string_view field);

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_LOGISTIC_HANDLERS_H_
