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
  const grpc::Status status = stub_->Echo(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return FromProto(response.output());
}

}  // namespace client
}  // namespace primserve
