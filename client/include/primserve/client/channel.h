// Channels and call options for the primserve C++ client.
//
// Example:
//   primserve::client::ChannelOptions options;
//   options.address = "localhost:50051";
//   auto channel = primserve::client::CreateChannel(options);
//   primserve::client::PositionEncodingClient rope(channel);
//   absl::StatusOr<Tensor> table = rope.Sinusoidal(/*length=*/16, /*dim=*/64);
//
// For scale-out behind a Kubernetes headless Service use an address such as
// "dns:///primserve.default.svc.cluster.local:50051"; the channel balances round-robin.
#ifndef PRIMSERVE_CLIENT_CHANNEL_H_
#define PRIMSERVE_CLIENT_CHANNEL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"

namespace primserve {
namespace client {

struct ChannelOptions {
  std::string address = "localhost:50051";
  int64_t max_message_bytes = int64_t{64} << 20;  // Both directions; match the server's limit.
  std::string load_balancing_policy = "round_robin";
};

// An insecure channel (TLS options arrive with the production-serving work).
std::shared_ptr<grpc::Channel> CreateChannel(const ChannelOptions& options);

struct CallOptions {
  absl::Duration timeout = absl::Seconds(60);  // Per-call deadline; InfiniteDuration for none.
  std::string request_id;                      // Sent as x-request-id when not empty.
};

// Fills a ClientContext from CallOptions.
void ConfigureContext(const CallOptions& options, grpc::ClientContext* context);

// The inverse of the server's status mapping: same code, same message.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace client
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_CHANNEL_H_
