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
// "dns:///primserve.default.svc.cluster.local:50051", or a static list such as
// "ipv4:10.0.0.1:50051,10.0.0.2:50051"; the channel balances round-robin over every address.
//
// Scale-out defaults every channel carries (see ChannelOptions for the knobs):
// * A default service config (DefaultServiceConfig below): the load-balancing policy with
//   client-side health checking (the balancer watches each replica's grpc.health.v1 status and
//   sends nothing to one that reports NOT_SERVING, e.g. while it drains), and, for
//   every primserve.v1 service and grpc.health.v1.Health, a retry policy for UNAVAILABLE only:
//   up to kDefaultMaxAttempts attempts, backoff kRetryInitialBackoff doubling up to
//   kRetryMaxBackoff (with gRPC's random jitter). UNAVAILABLE is what a replica that died
//   (connection reset) or is draining (SIGTERM) answers, and the retry goes through the balancer
//   again, so it lands on another replica. The per-call deadline bounds all attempts together.
//   gRPC does not retry once response headers arrived, nor a call whose request messages
//   outgrew the retry buffer (ChannelOptions::retry_buffer_bytes). A retried call may have run
//   on the replica that died: every primserve RPC is safe to repeat (model writes replace the
//   file atomically; a repeated Models.Delete can answer NOT_FOUND).
// * Keepalive: while calls are in flight the client pings a quiet connection every
//   kKeepaliveTime and drops it when the ack takes longer than kKeepaliveTimeout, so a replica
//   that vanished without a FIN/RST (node lost, network cut) fails the call as UNAVAILABLE
//   (retried) instead of at the deadline. No pings without calls, and gRPC sends at most 2 pings
//   until the client sends data again (grpc.http2.max_pings_without_data), so detection covers
//   the first ~70 s of a silent call and even a server with gRPC's default ping policy (5 min,
//   2 strikes) never answers GOAWAY "too_many_pings". The server should still allow a ping every
//   20 s (GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS <= kKeepaliveTime) and set a max
//   connection age, so clients reconnect, re-resolve DNS and reach new replicas (README "Deploy").
#ifndef PRIMSERVE_CLIENT_CHANNEL_H_
#define PRIMSERVE_CLIENT_CHANNEL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"

namespace primserve {
namespace client {

inline constexpr int kDefaultMaxAttempts = 5;  // gRPC caps maxAttempts at 5.
inline constexpr absl::Duration kRetryInitialBackoff = absl::Milliseconds(50);
inline constexpr absl::Duration kRetryMaxBackoff = absl::Seconds(1);
inline constexpr absl::Duration kKeepaliveTime = absl::Seconds(30);
inline constexpr absl::Duration kKeepaliveTimeout = absl::Seconds(10);

struct ChannelOptions {
  std::string address = "localhost:50051";
  int64_t max_message_bytes = int64_t{64} << 20;  // Both directions; match the server's limit.
  // In the default service config; empty: gRPC's default (pick_first). Letters, digits, '_'.
  std::string load_balancing_policy = "round_robin";
  // Client-side health checking in the service config (see above). Turn it off for a channel
  // that asks one server for its health: through a health-checked channel a draining server's
  // Health.Check fails with UNAVAILABLE ("backend unhealthy") instead of answering NOT_SERVING.
  bool health_checked_balancing = true;
  // Attempts per call (first try included) on UNAVAILABLE; 0 or 1 disables retries; values
  // above 5 act as 5 (gRPC's cap).
  int max_attempts = kDefaultMaxAttempts;
  // Request bytes a call keeps for retrying (grpc.per_rpc_retry_buffer_size, gRPC's default is
  // 256 KiB); a call whose request is larger is not retried. -1: max_message_bytes, so every
  // request the server accepts can be retried. The cost: a call holds its serialized request
  // until the response starts instead of until it is written, i.e. up to this many extra bytes
  // per in-flight call while the server computes.
  int64_t retry_buffer_bytes = -1;
  // Client keepalive pings while calls are in flight; InfiniteDuration: none.
  absl::Duration keepalive_time = kKeepaliveTime;
  absl::Duration keepalive_timeout = kKeepaliveTimeout;
  // TLS to the server when `tls` is set or any tls_*_file is given. The server certificate is
  // verified against tls_ca_file (PEM; empty: the system's trusted roots).
  bool tls = false;
  std::string tls_ca_file;
  // The client certificate chain and its private key (PEM), for servers that require mTLS.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Verify the server certificate for this name instead of the address's host (also sent as
  // SNI); for tests with a "localhost" certificate, or an address that is an IP.
  std::string tls_server_name_override;
  // Sent as "authorization: Bearer <auth_token>" on every call when not empty, over TLS and
  // plaintext alike (over plaintext anyone on the path can read it: keep that to trusted
  // networks, e.g. behind a TLS-terminating mesh).
  std::string auth_token;
};

// The default service config JSON CreateChannel installs: {"loadBalancingConfig": [...],
// "healthCheckConfig": {"serviceName": ""}, "methodConfig": [{"name": [every primserve.v1 service, grpc.health.v1.Health],
// "retryPolicy": {...}}]}, without retryPolicy when max_attempts <= 1. For channels made
// elsewhere: grpc::ChannelArguments::SetServiceConfigJSON(DefaultServiceConfig(options)).
std::string DefaultServiceConfig(const ChannelOptions& options);

// A channel to options.address: plaintext, or TLS / mTLS as the tls fields say, with the
// bearer token on every call. Reads the PEM files now.
// Errors (each names the field and the path): NOT_FOUND / PERMISSION_DENIED (a file missing or
// unreadable), INVALID_ARGUMENT (a file without a PEM block; tls_cert_file without
// tls_key_file or the other way round; an auth_token with spaces or control characters).
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateChannelOrError(const ChannelOptions& options);

// CreateChannelOrError for callers that handle errors per call: on an error it returns a
// channel on which every call fails with that error's code and message.
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
