// The standard gRPC health check (grpc.health.v1.Health/Check).
#ifndef PRIMSERVE_CLIENT_HEALTH_H_
#define PRIMSERVE_CLIENT_HEALTH_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "primserve/client/channel.h"

namespace primserve {
namespace client {

using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

class HealthClient {
 public:
  explicit HealthClient(std::shared_ptr<grpc::Channel> channel);

  // The status of `service` ("" is the whole server). NOT_FOUND for an unknown service.
  absl::StatusOr<ServingStatus> Check(const std::string& service = "", const CallOptions& call = {});

 private:
  std::unique_ptr<grpc::health::v1::Health::Stub> stub_;
};

// "SERVING", "NOT_SERVING", ...
std::string ServingStatusName(ServingStatus status);

}  // namespace client
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_HEALTH_H_
