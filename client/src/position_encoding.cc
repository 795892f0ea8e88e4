#include "primserve/client/position_encoding.h"

namespace primserve {
namespace client {

PositionEncodingClient::PositionEncodingClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(v1::PositionEncoding::NewStub(std::move(channel))) {}

absl::StatusOr<Tensor> PositionEncodingClient::Sinusoidal(const v1::SinusoidalRequest& request,
                                                          const CallOptions& call) {
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::SinusoidalResponse response;
  const grpc::Status status = stub_->Sinusoidal(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return FromProto(response.output());
}

absl::StatusOr<Tensor> PositionEncodingClient::Sinusoidal(int64_t length, int64_t dim, const CallOptions& call) {
  v1::SinusoidalRequest request;
  request.set_length(length);
  request.set_dim(dim);
  return Sinusoidal(request, call);
}

absl::StatusOr<Tensor> PositionEncodingClient::ApplyRope(const Tensor& input, const v1::ApplyRopeRequest& options,
                                                         const CallOptions& call) {
  v1::ApplyRopeRequest request = options;
  *request.mutable_input() = ToProto(input);
  return ApplyRope(request, call);
}

absl::StatusOr<Tensor> PositionEncodingClient::ApplyRope(const v1::ApplyRopeRequest& request,
                                                         const CallOptions& call) {
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::ApplyRopeResponse response;
  const grpc::Status status = stub_->ApplyRope(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return FromProto(response.output());
}

}  // namespace client
}  // namespace primserve
