#include "primserve/client/health.h"

namespace primserve {
namespace client {

HealthClient::HealthClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(grpc::health::v1::Health::NewStub(std::move(channel))) {}

absl::StatusOr<ServingStatus> HealthClient::Check(const std::string& service, const CallOptions& call) {
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub_->Check(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response.status();
}

std::string ServingStatusName(ServingStatus status) {
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(status);
}

}  // namespace client
}  // namespace primserve
