#include "primserve/client/channel.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpc/grpc.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "channel_security.h"
#include "primserve/v1/attention.grpc.pb.h"
#include "primserve/v1/diagnostics.grpc.pb.h"
#include "primserve/v1/discriminator.grpc.pb.h"
#include "primserve/v1/logistic_regression.grpc.pb.h"
#include "primserve/v1/models.grpc.pb.h"
#include "primserve/v1/position_encoding.grpc.pb.h"
#include "primserve/v1/toolkit.grpc.pb.h"

namespace primserve {
namespace client {
namespace {

int ClampToInt(int64_t value) {
  return static_cast<int>(std::clamp<int64_t>(value, 0, std::numeric_limits<int>::max()));
}

// A gRPC service-config duration: seconds with a trailing "s" ("0.05s").
std::string JsonDuration(absl::Duration duration) {
  return absl::StrCat("\"", absl::ToDoubleSeconds(duration), "s\"");
}

// Policy names go into the JSON unescaped, so only plain identifiers are accepted there (every
// gRPC policy name is one); anything else is left to the channel argument alone.
bool IsPlainIdentifier(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

}  // namespace

std::string DefaultServiceConfig(const ChannelOptions& options) {
  std::string json = "{";
  if (IsPlainIdentifier(options.load_balancing_policy)) {
    // healthCheckConfig: the balancer watches each replica's grpc.health.v1 status ("" service)
    // and stops picking one the moment it reports NOT_SERVING (SIGTERM drain), before its
    // listener closes; a server without the Health service counts as healthy (gRFC A17).
    absl::StrAppend(&json, "\"loadBalancingConfig\": [{\"", options.load_balancing_policy, "\": {}}]");
    if (options.health_checked_balancing) absl::StrAppend(&json, ", \"healthCheckConfig\": {\"serviceName\": \"\"}");
  }
  if (options.max_attempts > 1) {
    // Every service the server registers, listed by name rather than with gRPC's empty-name
    // wildcard so the policy cannot reach services this client does not know (reflection).
    const std::string services[] = {
        v1::PositionEncoding::service_full_name(), v1::Attention::service_full_name(),
        v1::LogisticRegression::service_full_name(), v1::Models::service_full_name(),
        v1::Toolkit::service_full_name(),          v1::Discriminator::service_full_name(),
        v1::Diagnostics::service_full_name(),      grpc::health::v1::Health::service_full_name()};
    if (json.size() > 1) json += ", ";
    absl::StrAppend(&json, "\"methodConfig\": [{\"name\": [",
                    absl::StrJoin(services, ", ",
                                  [](std::string* out, const std::string& service) {
                                    absl::StrAppend(out, "{\"service\": \"", service, "\"}");
                                  }),
                    "], \"retryPolicy\": {\"maxAttempts\": ", std::min(options.max_attempts, 5),
                    ", \"initialBackoff\": ", JsonDuration(kRetryInitialBackoff),
                    ", \"maxBackoff\": ", JsonDuration(kRetryMaxBackoff),
                    ", \"backoffMultiplier\": 2, \"retryableStatusCodes\": [\"UNAVAILABLE\"]}}]");
  }
  return json + "}";
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateChannelOrError(const ChannelOptions& options) {
  grpc::ChannelArguments args;
  const int max_bytes = static_cast<int>(
      std::min<int64_t>(options.max_message_bytes, std::numeric_limits<int>::max()));
  args.SetMaxReceiveMessageSize(max_bytes);
  args.SetMaxSendMessageSize(max_bytes);
  if (!options.load_balancing_policy.empty()) args.SetLoadBalancingPolicyName(options.load_balancing_policy);
  // Scale-out defaults (channel.h): retries on UNAVAILABLE, keepalive while calls are in flight.
  args.SetServiceConfigJSON(DefaultServiceConfig(options));
  // Stays on without a retryPolicy: 0 would also turn off gRPC's transparent retries (streams
  // a GOAWAY refused before the server saw them).
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 1);
  args.SetInt(GRPC_ARG_PER_RPC_RETRY_BUFFER_SIZE,
              ClampToInt(options.retry_buffer_bytes < 0 ? options.max_message_bytes : options.retry_buffer_bytes));
  if (options.keepalive_time != absl::InfiniteDuration()) {
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, ClampToInt(absl::ToInt64Milliseconds(options.keepalive_time)));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ClampToInt(absl::ToInt64Milliseconds(options.keepalive_timeout)));
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials = TransportCredentials(options, &args);
  if (!credentials.ok()) return credentials.status();
  auto interceptors = AuthInterceptors(options);
  if (!interceptors.ok()) return interceptors.status();
  if (interceptors->empty()) return grpc::CreateCustomChannel(options.address, *credentials, args);
  return grpc::experimental::CreateCustomChannelWithInterceptors(options.address, *credentials, args,
                                                                 *std::move(interceptors));
}

std::shared_ptr<grpc::Channel> CreateChannel(const ChannelOptions& options) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = CreateChannelOrError(options);
  if (!channel.ok()) return FailingChannel(options.address, channel.status());
  return *std::move(channel);
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
