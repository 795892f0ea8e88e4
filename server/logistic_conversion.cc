#include "server/logistic_conversion.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/number_format.h"
#include "core/status_macros.h"
#include "server/tensor_conversion.h"

namespace primserve {
namespace {

absl::Status Missing(absl::string_view field) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": required, got no tensor"));
}

// The same status with `context` appended to its message (which keeps naming the field first).
absl::Status WithContext(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(status.message(), " (", context, ")"));
}

}  // namespace

void LogisticModelToProto(const LogisticModel& model, v1::LogisticModel* proto) {
  proto->Clear();
  Tensor weights;
  weights.shape = {model.num_classes, model.dim};
  weights.values = model.weights;
  TensorToProto(weights, proto->mutable_weights());
  Tensor bias;
  bias.shape = {model.num_classes};
  bias.values = model.bias;
  TensorToProto(bias, proto->mutable_bias());
  proto->mutable_priors()->Add(model.priors.begin(), model.priors.end());
}

absl::StatusOr<LogisticModel> LogisticModelFromProto(const v1::LogisticModel& proto, absl::string_view field,
                                                     const Limits& limits) {
  if (!proto.has_weights()) return Missing(absl::StrCat(field, ".weights"));
  if (!proto.has_bias()) return Missing(absl::StrCat(field, ".bias"));
  ASSIGN_OR_RETURN(Tensor weights, TensorFromProto(proto.weights(), absl::StrCat(field, ".weights"), limits.max_elements));
  ASSIGN_OR_RETURN(Tensor bias, TensorFromProto(proto.bias(), absl::StrCat(field, ".bias"), limits.max_elements));
  if (weights.rank() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".weights.shape: expected [num_classes, dim] (rank 2), got ",
                                                   ShapeToString(weights.shape)));
  }
  if (bias.rank() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".bias.shape: expected [num_classes] (rank 1), got ",
                                                   ShapeToString(bias.shape)));
  }
  LogisticModel model;
  model.num_classes = weights.dim(0);
  model.dim = weights.dim(1);
  model.weights = std::move(weights.values);
  model.bias = std::move(bias.values);
  model.priors.assign(proto.priors().begin(), proto.priors().end());
  // ValidateModel names "model.<field>"; other prefixes (a stored model) are said alongside.
  absl::Status valid = ValidateModel(model);
  if (!valid.ok() && field != "model") return WithContext(valid, field);
  RETURN_IF_ERROR(valid);
  return model;
}

void StatisticsToProto(const SufficientStatistics& statistics, v1::Statistics* proto) {
  proto->Clear();
  proto->set_dim(statistics.dim);
  proto->mutable_counts()->Add(statistics.counts.begin(), statistics.counts.end());
  proto->mutable_class_shifts()->Add(statistics.class_shifts.begin(), statistics.class_shifts.end());
  proto->mutable_class_sums()->Add(statistics.class_sums.begin(), statistics.class_sums.end());
  proto->mutable_scatter()->Add(statistics.scatter.begin(), statistics.scatter.end());
}

absl::StatusOr<SufficientStatistics> StatisticsFromProto(const v1::Statistics& proto, absl::string_view field) {
  const int64_t num_classes = proto.counts_size();
  const int64_t dim = proto.dim();
  // Sizes against the wire counts first (so dim * dim cannot overflow for any dim that could
  // have arrived in one message).
  auto size_error = [&](absl::string_view name, double expected, int64_t got) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".", name, ": expected ", NumberToString(expected), " values (",
                                                   num_classes, " classes, dim ", dim, "), got ", got));
  };
  if (dim < 0 || dim > (int64_t{1} << 31)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".dim: expected a value in [0, 2^31], got ", dim));
  }
  const double per_class = static_cast<double>(num_classes) * static_cast<double>(dim);
  if (proto.class_shifts_size() != per_class) return size_error("class_shifts", per_class, proto.class_shifts_size());
  if (proto.class_sums_size() != per_class) return size_error("class_sums", per_class, proto.class_sums_size());
  if (proto.scatter_size() != static_cast<double>(dim) * static_cast<double>(dim)) {
    return size_error("scatter", static_cast<double>(dim) * static_cast<double>(dim), proto.scatter_size());
  }
  SufficientStatistics statistics;
  statistics.num_classes = num_classes;
  statistics.dim = dim;
  statistics.counts.assign(proto.counts().begin(), proto.counts().end());
  statistics.class_shifts.assign(proto.class_shifts().begin(), proto.class_shifts().end());
  statistics.class_sums.assign(proto.class_sums().begin(), proto.class_sums().end());
  statistics.scatter.assign(proto.scatter().begin(), proto.scatter().end());
  // ValidateStatistics names "statistics.<field>"; which shard is said alongside.
  absl::Status valid = ValidateStatistics(statistics);
  if (!valid.ok() && field != "statistics") return WithContext(valid, field);
  RETURN_IF_ERROR(valid);
  return statistics;
}

}  // namespace primserve
