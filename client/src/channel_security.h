// TLS credentials, the bearer-token interceptor and failing channels for CreateChannel
// (channel.cc). Internal to the client library.
#ifndef PRIMSERVE_CLIENT_SRC_CHANNEL_SECURITY_H_
#define PRIMSERVE_CLIENT_SRC_CHANNEL_SECURITY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/client_interceptor.h"
#include "primserve/client/channel.h"

namespace primserve {
namespace client {

// Plaintext, or TLS from the options' PEM files (read now); sets the server-name override on
// `args`. Errors: as CreateChannelOrError's.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> TransportCredentials(const ChannelOptions& options,
                                                                               grpc::ChannelArguments* args);

// The interceptors every channel carries: the bearer token when options.auth_token is set.
// INVALID_ARGUMENT for a token that cannot be a header value.
absl::StatusOr<std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>>
AuthInterceptors(const ChannelOptions& options);

// A channel on which every call fails at once with `status` (not OK).
std::shared_ptr<grpc::Channel> FailingChannel(const std::string& target, const absl::Status& status);

}  // namespace client
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_SRC_CHANNEL_SECURITY_H_
