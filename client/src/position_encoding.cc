#include "primserve/client/position_encoding.h"

#include "tensor_call.h"  // NOLINT: this directory's private header

namespace primserve {
namespace client {

PositionEncodingClient::PositionEncodingClient(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)) {}

absl::StatusOr<Tensor> PositionEncodingClient::Sinusoidal(const v1::SinusoidalRequest& request,
                                                          const CallOptions& call) {
  return internal::CallForTensor(channel_, "/primserve.v1.PositionEncoding/Sinusoidal", request,
                                 v1::SinusoidalResponse::kOutputFieldNumber, call);
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
  return internal::CallForTensor(channel_, "/primserve.v1.PositionEncoding/ApplyRope", request,
                                 v1::ApplyRopeResponse::kOutputFieldNumber, call);
}

}  // namespace client
}  // namespace primserve
