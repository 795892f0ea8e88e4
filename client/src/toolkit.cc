#include "primserve/client/toolkit.h"

#include <utility>

namespace primserve {
namespace client {

ToolkitClient::ToolkitClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(v1::Toolkit::NewStub(std::move(channel))) {}

absl::StatusOr<v1::EmbeddingDimensionResponse> ToolkitClient::EmbeddingDimension(int64_t vocab_size,
                                                                                 double coefficient,
                                                                                 const CallOptions& call) {
  v1::EmbeddingDimensionRequest request;
  request.set_vocab_size(vocab_size);
  request.set_coefficient(coefficient);
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::EmbeddingDimensionResponse response;
  const grpc::Status status = stub_->EmbeddingDimension(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<InitializeResult> ToolkitClient::InitializeParameters(const std::vector<int64_t>& shape,
                                                                     const v1::InitializeParametersRequest& options,
                                                                     const CallOptions& call) {
  v1::InitializeParametersRequest request = options;
  request.mutable_shape()->Assign(shape.begin(), shape.end());
  return InitializeParameters(request, call);
}

absl::StatusOr<InitializeResult> ToolkitClient::InitializeParameters(const v1::InitializeParametersRequest& request,
                                                                     const CallOptions& call) {
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::InitializeParametersResponse response;
  const grpc::Status status = stub_->InitializeParameters(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  absl::StatusOr<Tensor> parameters = FromProto(response.parameters());
  if (!parameters.ok()) return parameters.status();
  InitializeResult result;
  result.parameters = *std::move(parameters);
  result.stddev = response.stddev();
  result.fan_in = response.fan_in();
  result.fan_out = response.fan_out();
  return result;
}

absl::StatusOr<ChildTuningResult> ToolkitClient::ChildTuningMask(const Tensor& gradient,
                                                                 const v1::ChildTuningMaskRequest& options,
                                                                 const CallOptions& call) {
  v1::ChildTuningMaskRequest request = options;
  *request.mutable_gradient() = ToProto(gradient);
  return ChildTuningMask(request, call);
}

absl::StatusOr<ChildTuningResult> ToolkitClient::ChildTuningMask(const v1::ChildTuningMaskRequest& request,
                                                                 const CallOptions& call) {
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::ChildTuningMaskResponse response;
  const grpc::Status status = stub_->ChildTuningMask(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  absl::StatusOr<Tensor> gradient = FromProto(response.gradient());
  if (!gradient.ok()) return gradient.status();
  return ChildTuningResult{*std::move(gradient), response.kept_fraction()};
}

}  // namespace client
}  // namespace primserve
