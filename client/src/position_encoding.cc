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
  // The output is float32 with the input's element count. Reserving it lets protobuf parse the
  // bytes with one copy: it otherwise reserves at most 50 MB up front and regrows past that.
  const v1::Tensor& input = request.input();
  const size_t output_bytes = input.values_size() > 0 ? 4 * static_cast<size_t>(input.values_size())
                              : input.dtype() == v1::DATA_TYPE_BFLOAT16 ? 2 * input.data().size()
                                                                        : input.data().size();
  response.mutable_output()->mutable_data()->reserve(output_bytes);
  const grpc::Status status = stub_->ApplyRope(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return FromProto(response.output());
}

}  // namespace client
}  // namespace primserve
