#include "server/toolkit_handlers.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/tensor_conversion.h"

namespace primserve {
namespace {

absl::Status UnknownEnum(absl::string_view field, int value) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": unknown enum value ", value));
}

}  // namespace

absl::StatusOr<InitDistribution> InitDistributionFromProto(v1::InitDistribution distribution,
                                                           absl::string_view field) {
  switch (distribution) {
    case v1::INIT_DISTRIBUTION_UNSPECIFIED:
    case v1::INIT_DISTRIBUTION_NORMAL: return InitDistribution::kNormal;
    case v1::INIT_DISTRIBUTION_UNIFORM: return InitDistribution::kUniform;
    case v1::INIT_DISTRIBUTION_TRUNCATED_NORMAL: return InitDistribution::kTruncatedNormal;
    default: return UnknownEnum(field, distribution);
  }
}

absl::StatusOr<InitScheme> InitSchemeFromProto(v1::InitScheme scheme, absl::string_view field) {
  switch (scheme) {
    case v1::INIT_SCHEME_UNSPECIFIED:
    case v1::INIT_SCHEME_LECUN: return InitScheme::kLecun;
    case v1::INIT_SCHEME_HE: return InitScheme::kHe;
    case v1::INIT_SCHEME_XAVIER: return InitScheme::kXavier;
    case v1::INIT_SCHEME_STDDEV: return InitScheme::kStddev;
    default: return UnknownEnum(field, scheme);
  }
}

absl::StatusOr<ChildTuningMode> ChildTuningModeFromProto(v1::ChildTuningMode mode, absl::string_view field) {
  switch (mode) {
    case v1::CHILD_TUNING_MODE_UNSPECIFIED:
    case v1::CHILD_TUNING_MODE_TASK_FREE: return ChildTuningMode::kTaskFree;
    case v1::CHILD_TUNING_MODE_TASK_DRIVEN: return ChildTuningMode::kTaskDriven;
    default: return UnknownEnum(field, mode);
  }
}

absl::Status HandleEmbeddingDimension(const v1::EmbeddingDimensionRequest& request,
                                      v1::EmbeddingDimensionResponse* response) {
  const double coefficient = request.coefficient() == 0.0 ? kDefaultEmbeddingCoefficient : request.coefficient();
  ASSIGN_OR_RETURN(const EmbeddingBound result, EmbeddingDimension(request.vocab_size(), coefficient));
  response->set_bound(result.bound);
  response->set_dimension(result.dimension);
  return absl::OkStatus();
}

absl::Status HandleInitializeParameters(const Limits& limits, const v1::InitializeParametersRequest& request,
                                        v1::InitializeParametersResponse* response,
                                        std::function<bool()> cancelled) {
  InitOptions options;
  options.shape.assign(request.shape().begin(), request.shape().end());
  ASSIGN_OR_RETURN(options.distribution, InitDistributionFromProto(request.distribution(), "distribution"));
  ASSIGN_OR_RETURN(options.scheme, InitSchemeFromProto(request.scheme(), "scheme"));
  options.stddev = request.stddev();
  options.fan_in = request.fan_in();
  options.fan_out = request.fan_out();
  options.seed = request.seed();
  options.max_elements = limits.max_elements;
  options.cancelled = std::move(cancelled);
  ASSIGN_OR_RETURN(const InitResult result, InitializeParameters(options));
  TensorToProto(result.parameters, response->mutable_parameters());
  response->set_stddev(result.stddev);
  response->set_fan_in(result.fans.fan_in);
  response->set_fan_out(result.fans.fan_out);
  return absl::OkStatus();
}

absl::Status HandleChildTuningMask(const Limits& limits, const v1::ChildTuningMaskRequest& request,
                                   v1::ChildTuningMaskResponse* response, std::function<bool()> cancelled) {
  if (!request.has_gradient()) return absl::InvalidArgumentError("gradient: required, got no tensor");
  ChildTuningOptions options;
  ASSIGN_OR_RETURN(options.mode, ChildTuningModeFromProto(request.mode(), "mode"));
  options.keep_probability = request.keep_probability();
  options.rescale = request.rescale();
  options.seed = request.seed();
  options.cancelled = std::move(cancelled);
  ASSIGN_OR_RETURN(Tensor gradient, TensorFromProto(request.gradient(), "gradient", limits.max_elements));
  std::optional<Tensor> fisher;
  if (request.has_fisher()) {
    ASSIGN_OR_RETURN(fisher, TensorFromProto(request.fisher(), "fisher", limits.max_elements));
    options.fisher = &*fisher;
  }
  ASSIGN_OR_RETURN(const ChildTuningResult result, ChildTuningMask(std::move(gradient), options));
  TensorToProto(result.gradient, response->mutable_gradient());
  response->set_kept_fraction(result.kept_fraction);
  return absl::OkStatus();
}

}  // namespace primserve
