#include "server/discriminator_handlers.h"

#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/discriminator.h"
#include "core/number_format.h"
#include "core/status_macros.h"
#include "server/discriminator_conversion.h"
#include "server/tensor_conversion.h"

namespace primserve {
namespace {

absl::Status MissingTensor(absl::string_view field) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": required, got no tensor"));
}

// The network a Score or Losses request names: exactly one of a stored model's name or an
// inline network.
absl::StatusOr<std::shared_ptr<const CompiledNetwork>> ResolveNetwork(const Limits& limits, const ModelStore* store,
                                                                      DiscriminatorCache* cache,
                                                                      const std::string& model_name, bool has_network,
                                                                      const v1::Network& network) {
  const bool by_name = !model_name.empty();
  if (by_name == has_network) {
    return absl::InvalidArgumentError(absl::StrCat("model_name, network: expected exactly one of a registered "
                                                   "discriminator's name or an inline network, got ",
                                                   by_name ? "both" : "neither"));
  }
  if (!by_name) {
    if (cache != nullptr) return cache->ForInline(network, "network", limits);
    ASSIGN_OR_RETURN(Network core_network, NetworkFromProto(network, "network", limits));
    return CompiledNetwork::Create(std::move(core_network));
  }
  if (store == nullptr) return absl::FailedPreconditionError("model_name: this server has no model store");
  absl::StatusOr<ModelStore::EntryPtr> found = store->Get(model_name, "model_name");
  if (!found.ok()) {
    // The store's change listener drops a deleted model's network, but not while a call still
    // held its entry; that call has finished by now.
    if (cache != nullptr) cache->DropGone();
    return found.status();
  }
  const ModelStore::EntryPtr entry = *std::move(found);
  if (entry->model.kind() != v1::MODEL_KIND_DISCRIMINATOR) {
    return absl::FailedPreconditionError(absl::StrCat("model_name: \"", model_name, "\" is a ",
                                                      v1::ModelKind_Name(entry->model.kind()),
                                                      " model, not a discriminator (MODEL_KIND_DISCRIMINATOR)"));
  }
  if (!entry->model.has_discriminator()) {
    return absl::FailedPreconditionError(
        absl::StrCat("model_name: the stored discriminator \"", model_name, "\" holds no network"));
  }
  const std::string field = absl::StrCat("stored model \"", entry->name, "\" network");
  absl::StatusOr<std::shared_ptr<const CompiledNetwork>> compiled;
  if (cache != nullptr) {
    compiled = cache->ForStored(entry, field, limits);
  } else {
    absl::StatusOr<Network> core_network = NetworkFromProto(entry->model.discriminator(), field, limits);
    compiled = core_network.ok() ? CompiledNetwork::Create(*std::move(core_network))
                                 : absl::StatusOr<std::shared_ptr<const CompiledNetwork>>(core_network.status());
  }
  // Registered networks were validated; one failing now (e.g. a lower size limit after a
  // restart) is the server's state, not the request's fault.
  if (!compiled.ok() && compiled.status().code() == absl::StatusCode::kInvalidArgument) {
    return absl::FailedPreconditionError(
        absl::StrCat("model_name: the stored network is invalid: ", compiled.status().message()));
  }
  return compiled;
}

// normalization + epsilon -> ScoreOptions (epsilon only with GRAN; unset means 1e-8).
absl::StatusOr<ScoreOptions> ScoreOptionsFromProto(v1::Normalization normalization,
                                                   std::optional<double> epsilon, const Limits& limits,
                                                   std::function<bool()> cancelled) {
  ScoreOptions options;
  ASSIGN_OR_RETURN(options.normalization, NormalizationFromProto(normalization, "normalization"));
  if (options.normalization == Normalization::kGran) {
    options.epsilon = epsilon.value_or(kDefaultGranEpsilon);
    if (!(std::isfinite(options.epsilon) && options.epsilon > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("epsilon: expected a finite value > 0 with NORMALIZATION_GRAN, got ", NumberToString(options.epsilon)));
    }
  } else if (epsilon.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("epsilon: applies to NORMALIZATION_GRAN only, got ", NumberToString(*epsilon),
                                                   " with ", v1::Normalization_Name(normalization)));
  }
  options.max_elements = limits.max_elements;
  options.cancelled = std::move(cancelled);
  return options;
}

}  // namespace

absl::Status HandleRegister(const Limits& limits, ModelStore* store, const v1::RegisterRequest& request,
                            v1::RegisterResponse* response) {
  if (store == nullptr) return absl::FailedPreconditionError("name: this server has no model store");
  RETURN_IF_ERROR(ModelStore::ValidateName(request.name(), "name"));
  if (!request.has_network()) return absl::InvalidArgumentError("network: required, got none");
  ASSIGN_OR_RETURN(const Network network, NetworkFromProto(request.network(), "network", limits));
  // What Score would refuse (one sample's work buffers too large) is refused now, not on every call.
  RETURN_IF_ERROR(CompiledNetwork::Create(network).status());
  v1::StoredModel model;
  model.set_kind(v1::MODEL_KIND_DISCRIMINATOR);
  // The canonical form: raw float32 data, defaults (stride, alpha) made explicit.
  NetworkToProto(network, model.mutable_discriminator());
  RETURN_IF_ERROR(store->Put(request.name(), std::move(model), "name"));
  response->mutable_input_shape()->Add(network.input_shape.begin(), network.input_shape.end());
  response->set_num_layers(static_cast<int64_t>(network.layers.size()));
  response->set_piecewise_linear(IsPiecewiseLinear(network));
  return absl::OkStatus();
}

absl::Status HandleScore(const Limits& limits, const ModelStore* store, DiscriminatorCache* cache,
                         const v1::ScoreRequest& request, v1::ScoreResponse* response,
                         std::function<bool()> cancelled) {
  ASSIGN_OR_RETURN(ScoreOptions options,
                   ScoreOptionsFromProto(request.normalization(),
                                         request.has_epsilon() ? std::optional<double>(request.epsilon()) : std::nullopt,
                                         limits, std::move(cancelled)));
  options.return_input_gradient = request.return_input_gradient();
  ASSIGN_OR_RETURN(options.precision, ComputePrecisionFromProto(request.compute_precision(), "compute_precision"));
  if (!request.has_inputs()) return MissingTensor("inputs");
  ASSIGN_OR_RETURN(const std::shared_ptr<const CompiledNetwork> network,
                   ResolveNetwork(limits, store, cache, request.model_name(), request.has_network(),
                                  request.network()));
  ASSIGN_OR_RETURN(const Tensor inputs, TensorFromProto(request.inputs(), "inputs", limits.max_elements));
  if (inputs.rank() >= 1) {
    // Three float scores per sample, plus the input gradients when asked: one response.
    const int64_t samples = inputs.dim(0);  // May be huge when another extent is 0: in double.
    const double elements = 3.0 * static_cast<double>(samples) +
                            (options.return_input_gradient ? static_cast<double>(inputs.values.size()) : 0.0);
    if (elements > static_cast<double>(limits.max_elements)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "inputs: ", samples, " samples give 3 x ", samples, " scores",
          options.return_input_gradient ? absl::StrCat(" + ", inputs.values.size(), " input gradient") : "",
          " elements = ", NumberToString(elements), ", above the limit of ", limits.max_elements, " for one response"));
    }
  }
  ASSIGN_OR_RETURN(const ScoreResult result, Score(*network, inputs, options));
  TensorToProto(result.raw_scores, response->mutable_raw_scores());
  TensorToProto(result.gradient_norms, response->mutable_gradient_norms());
  TensorToProto(result.scores, response->mutable_scores());
  if (result.input_gradients.has_value()) TensorToProto(*result.input_gradients, response->mutable_input_gradients());
  return absl::OkStatus();
}

absl::Status HandleLosses(const Limits& limits, const ModelStore* store, DiscriminatorCache* cache,
                          const v1::LossesRequest& request, v1::LossesResponse* response,
                          std::function<bool()> cancelled) {
  ASSIGN_OR_RETURN(const LossKind loss, LossFromProto(request.loss(), "loss"));
  ASSIGN_OR_RETURN(const ScoreOptions options,
                   ScoreOptionsFromProto(request.normalization(),
                                         request.has_epsilon() ? std::optional<double>(request.epsilon()) : std::nullopt,
                                         limits, std::move(cancelled)));
  if (!request.has_real_inputs()) return MissingTensor("real_inputs");
  if (!request.has_fake_inputs()) return MissingTensor("fake_inputs");
  ASSIGN_OR_RETURN(const std::shared_ptr<const CompiledNetwork> network,
                   ResolveNetwork(limits, store, cache, request.model_name(), request.has_network(),
                                  request.network()));
  ASSIGN_OR_RETURN(const Tensor real, TensorFromProto(request.real_inputs(), "real_inputs", limits.max_elements));
  ASSIGN_OR_RETURN(const Tensor fake, TensorFromProto(request.fake_inputs(), "fake_inputs", limits.max_elements));
  ASSIGN_OR_RETURN(const GanLosses losses, DiscriminatorLosses(*network, real, fake, loss, options));
  response->set_discriminator_loss(losses.discriminator);
  response->set_generator_loss(losses.generator);
  return absl::OkStatus();
}

}  // namespace primserve
