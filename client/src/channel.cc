#include "primserve/client/channel.h"

#include <limits>

#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace primserve {
namespace client {

std::shared_ptr<grpc::Channel> CreateChannel(const ChannelOptions& options) {
  grpc::ChannelArguments args;
  const int max_bytes = static_cast<int>(
      std::min<int64_t>(options.max_message_bytes, std::numeric_limits<int>::max()));
  args.SetMaxReceiveMessageSize(max_bytes);
  args.SetMaxSendMessageSize(max_bytes);
  if (!options.load_balancing_policy.empty()) args.SetLoadBalancingPolicyName(options.load_balancing_policy);
  return grpc::CreateCustomChannel(options.address, grpc::InsecureChannelCredentials(), args);
}

void ConfigureContext(const CallOptions& options, grpc::ClientContext* context) {
  if (options.timeout != absl::InfiniteDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
  }
  if (!options.request_id.empty()) context->AddMetadata("x-request-id", options.request_id);
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::OK: return absl::OkStatus();
    case grpc::StatusCode::CANCELLED: return absl::CancelledError(status.error_message());
    case grpc::StatusCode::UNKNOWN: return absl::UnknownError(status.error_message());
    case grpc::StatusCode::INVALID_ARGUMENT: return absl::InvalidArgumentError(status.error_message());
    case grpc::StatusCode::DEADLINE_EXCEEDED: return absl::DeadlineExceededError(status.error_message());
    case grpc::StatusCode::NOT_FOUND: return absl::NotFoundError(status.error_message());
    case grpc::StatusCode::ALREADY_EXISTS: return absl::AlreadyExistsError(status.error_message());
    case grpc::StatusCode::PERMISSION_DENIED: return absl::PermissionDeniedError(status.error_message());
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return absl::ResourceExhaustedError(status.error_message());
    case grpc::StatusCode::FAILED_PRECONDITION: return absl::FailedPreconditionError(status.error_message());
    case grpc::StatusCode::ABORTED: return absl::AbortedError(status.error_message());
    case grpc::StatusCode::OUT_OF_RANGE: return absl::OutOfRangeError(status.error_message());
    case grpc::StatusCode::UNIMPLEMENTED: return absl::UnimplementedError(status.error_message());
    case grpc::StatusCode::INTERNAL: return absl::InternalError(status.error_message());
    case grpc::StatusCode::UNAVAILABLE: return absl::UnavailableError(status.error_message());
    case grpc::StatusCode::DATA_LOSS: return absl::DataLossError(status.error_message());
    case grpc::StatusCode::UNAUTHENTICATED: return absl::UnauthenticatedError(status.error_message());
    default: return absl::UnknownError(status.error_message());
  }
}

}  // namespace client
}  // namespace primserve
