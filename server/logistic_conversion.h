// Wire <-> core conversions of the LogisticRegression service: models (v1::LogisticModel <->
// LogisticModel) and sufficient statistics (v1::Statistics <-> SufficientStatistics). Reading
// checks shapes and sizes against the wire counts before copying, then the core's
// ValidateModel / ValidateStatistics; every failure is INVALID_ARGUMENT naming the field.
//
// Example:
//   ASSIGN_OR_RETURN(LogisticModel model, LogisticModelFromProto(request.model(), "model", limits));
//   StatisticsToProto(statistics, response->mutable_statistics());
#ifndef PRIMSERVE_SERVER_LOGISTIC_CONVERSION_H_
#define PRIMSERVE_SERVER_LOGISTIC_CONVERSION_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/logistic_regression.h"
#include "primserve/v1/logistic_regression.pb.h"
#include "server/limits.h"

namespace primserve {

// weights [K, d], bias [K] and priors as float32 tensors / doubles.
void LogisticModelToProto(const LogisticModel& model, v1::LogisticModel* proto);

// INVALID_ARGUMENT naming `field` (e.g. "model.weights.shape") for missing tensors, wrong ranks,
// or a model failing ValidateModel (whose messages say "model.<field>"; another `field`, such as
// a stored model's name, is added in parentheses).
absl::StatusOr<LogisticModel> LogisticModelFromProto(const v1::LogisticModel& proto, absl::string_view field,
                                                     const Limits& limits);

void StatisticsToProto(const SufficientStatistics& statistics, v1::Statistics* proto);

// INVALID_ARGUMENT naming `field` (e.g. "statistics[1].class_sums") when the sizes disagree with
// dim and the number of counts, or when ValidateStatistics fails.
absl::StatusOr<SufficientStatistics> StatisticsFromProto(const v1::Statistics& proto, absl::string_view field);

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_LOGISTIC_CONVERSION_H_
