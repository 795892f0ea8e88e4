#include "primserve/client/discriminator.h"

#include <utility>

namespace primserve {
namespace client {
namespace {

template <typename Request>
void SetOptions(const DiscriminatorScoreOptions& options, Request* request) {
  request->set_normalization(options.normalization);
  if (options.epsilon.has_value()) request->set_epsilon(*options.epsilon);
}

}  // namespace

v1::Layer MakeDense(const Tensor& weight, const Tensor& bias) {
  v1::Layer layer;
  *layer.mutable_dense()->mutable_weight() = ToProto(weight);
  *layer.mutable_dense()->mutable_bias() = ToProto(bias);
  return layer;
}

v1::Layer MakeConv2d(const Tensor& weight, const Tensor& bias, int64_t stride, int64_t padding) {
  v1::Layer layer;
  v1::Conv2d* conv = layer.mutable_conv2d();
  *conv->mutable_weight() = ToProto(weight);
  *conv->mutable_bias() = ToProto(bias);
  conv->set_stride(stride);
  conv->set_padding(padding);
  return layer;
}

v1::Layer MakeActivation(v1::ActivationKind kind, std::optional<double> alpha) {
  v1::Layer layer;
  layer.mutable_activation()->set_kind(kind);
  if (alpha.has_value()) layer.mutable_activation()->set_alpha(*alpha);
  return layer;
}

v1::Layer MakeFlatten() {
  v1::Layer layer;
  layer.mutable_flatten();
  return layer;
}

DiscriminatorClient::DiscriminatorClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(v1::Discriminator::NewStub(std::move(channel))) {}

absl::StatusOr<v1::RegisterResponse> DiscriminatorClient::Register(const std::string& name,
                                                                   const v1::Network& network,
                                                                   const CallOptions& call) {
  v1::RegisterRequest request;
  request.set_name(name);
  *request.mutable_network() = network;
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::RegisterResponse response;
  const grpc::Status status = stub_->Register(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<DiscriminatorScores> DiscriminatorClient::Score(const Tensor& inputs, const std::string& model_name,
                                                               const DiscriminatorScoreOptions& options,
                                                               const CallOptions& call) {
  v1::ScoreRequest request;
  request.set_model_name(model_name);
  *request.mutable_inputs() = ToProto(inputs);
  SetOptions(options, &request);
  request.set_return_input_gradient(options.return_input_gradient);
  request.set_compute_precision(options.compute_precision);
  return Score(request, call);
}

absl::StatusOr<DiscriminatorScores> DiscriminatorClient::Score(const Tensor& inputs, const v1::Network& network,
                                                               const DiscriminatorScoreOptions& options,
                                                               const CallOptions& call) {
  v1::ScoreRequest request;
  *request.mutable_network() = network;
  *request.mutable_inputs() = ToProto(inputs);
  SetOptions(options, &request);
  request.set_return_input_gradient(options.return_input_gradient);
  request.set_compute_precision(options.compute_precision);
  return Score(request, call);
}

absl::StatusOr<DiscriminatorScores> DiscriminatorClient::Score(const v1::ScoreRequest& request,
                                                               const CallOptions& call) {
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::ScoreResponse response;
  const grpc::Status status = stub_->Score(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  DiscriminatorScores scores;
  absl::StatusOr<Tensor> raw = FromProto(response.raw_scores());
  if (!raw.ok()) return raw.status();
  absl::StatusOr<Tensor> norms = FromProto(response.gradient_norms());
  if (!norms.ok()) return norms.status();
  absl::StatusOr<Tensor> normalized = FromProto(response.scores());
  if (!normalized.ok()) return normalized.status();
  scores.raw_scores = *std::move(raw);
  scores.gradient_norms = *std::move(norms);
  scores.scores = *std::move(normalized);
  if (response.has_input_gradients()) {
    absl::StatusOr<Tensor> gradients = FromProto(response.input_gradients());
    if (!gradients.ok()) return gradients.status();
    scores.input_gradients = *std::move(gradients);
  }
  return scores;
}

absl::StatusOr<DiscriminatorLosses> DiscriminatorClient::Losses(const Tensor& real_inputs, const Tensor& fake_inputs,
                                                                const std::string& model_name, v1::Loss loss,
                                                                const DiscriminatorScoreOptions& options,
                                                                const CallOptions& call) {
  v1::LossesRequest request;
  request.set_model_name(model_name);
  *request.mutable_real_inputs() = ToProto(real_inputs);
  *request.mutable_fake_inputs() = ToProto(fake_inputs);
  request.set_loss(loss);
  SetOptions(options, &request);
  return Losses(request, call);
}

absl::StatusOr<DiscriminatorLosses> DiscriminatorClient::Losses(const v1::LossesRequest& request,
                                                                const CallOptions& call) {
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::LossesResponse response;
  const grpc::Status status = stub_->Losses(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return DiscriminatorLosses{response.discriminator_loss(), response.generator_loss()};
}

}  // namespace client
}  // namespace primserve
