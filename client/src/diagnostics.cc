#include "primserve/client/diagnostics.h"

namespace primserve {
namespace client {

DiagnosticsClient::DiagnosticsClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(v1::Diagnostics::NewStub(std::move(channel))) {}

absl::StatusOr<Tensor> DiagnosticsClient::Echo(const Tensor& input, const CallOptions& call) {
  v1::EchoRequest request;
  *request.mutable_input() = ToProto(input);
  return Echo(request, call);
}

absl::StatusOr<Tensor> DiagnosticsClient::Echo(const v1::EchoRequest& request, const CallOptions& call) {
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::EchoResponse response;
  // Echo returns the input's bytes: reserving them lets protobuf parse with one copy (it
  // otherwise reserves at most 50 MB up front and regrows past that).
  response.mutable_output()->mutable_data()->reserve(request.input().data().size());
  const grpc::Status status = stub_->Echo(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return FromProto(response.output());
}

}  // namespace client
}  // namespace primserve
