#include "primserve/client/diagnostics.h"

#include "tensor_call.h"  // NOLINT: this directory's private header

namespace primserve {
namespace client {

DiagnosticsClient::DiagnosticsClient(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)) {}

absl::StatusOr<Tensor> DiagnosticsClient::Echo(const Tensor& input, const CallOptions& call) {
  v1::EchoRequest request;
  *request.mutable_input() = ToProto(input);
  return Echo(request, call);
}

absl::StatusOr<Tensor> DiagnosticsClient::Echo(const v1::EchoRequest& request, const CallOptions& call) {
  return internal::CallForTensor(channel_, "/primserve.v1.Diagnostics/Echo", request,
                                 v1::EchoResponse::kOutputFieldNumber, call);
}

}  // namespace client
}  // namespace primserve
