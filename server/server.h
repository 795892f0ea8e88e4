// PrimServer: builds, starts and stops the gRPC server with every primserve service, the
// standard grpc.health.v1.Health service and server reflection.
//
// Example:
//   ASSIGN_OR_RETURN(auto server, PrimServer::Start(options));
//   ... server->Shutdown(absl::Seconds(10)); server->Wait();
#ifndef PRIMSERVE_SERVER_SERVER_H_
#define PRIMSERVE_SERVER_SERVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/discriminator.h"
#include "grpcpp/server.h"
#include "server/auth.h"
#include "server/limits.h"
#include "server/model_store.h"
#include "server/serving.h"

namespace primserve {

struct ServerOptions {
  std::string address = "0.0.0.0:50051";
  // Health (and, later, metrics) also listen here; empty means only `address`.
  std::string admin_address;
  std::string model_dir = "models";
  int64_t max_message_bytes = int64_t{64} << 20;
  int compute_threads = 0;  // 0: the cores available to the process (cgroup-aware).
  // Calls computing at once; each uses compute_threads threads. 0: cores / compute_threads
  // (so workers x threads = cores, never more busy threads than cores).
  int compute_workers = 0;
  // Calls that may wait for a worker; beyond them RESOURCE_EXHAUSTED at once.
  int max_queue = 64;
  // host:port serving Prometheus text at /metrics over HTTP; empty: no metrics listener.
  std::string metrics_address;
  // Connections are closed gracefully (GOAWAY) after this long, so that clients re-resolve and
  // spread onto new replicas; calls in flight then get max_connection_age_grace to finish.
  absl::Duration max_connection_age = absl::Minutes(5);
  absl::Duration max_connection_age_grace = absl::Minutes(1);
  // Largest Attend `weights` tensor (elements) served with return_weights; also capped by
  // (max_message_bytes - 1 KiB) / 4 with the output. 0 refuses every non-empty weights request.
  int64_t max_attention_weights = kDefaultMaxWeightElements;
  // Discriminator work buffers kept idle between calls, over every network of the process
  // (SetIdleWorkspaceBudget in core/discriminator.h); 0 keeps none.
  int64_t max_idle_workspace_bytes = kDefaultIdleWorkspaceBudget;
  // TLS / mTLS on `address` and bearer tokens (server/auth.h); every file is read and checked
  // before anything listens. `admin_address` stays plaintext and token-free, and once TLS or
  // tokens are on it answers only health and reflection.
  SecurityOptions security;
};

class PrimServer {
 public:
  // Creates the model directory and loads every stored model (unreadable model files are logged
  // and skipped), sizes the compute threads, binds and starts serving; health is SERVING for ""
  // and every primserve service once this returns.
  // Errors: INVALID_ARGUMENT (bad option, bad TLS or token file), NOT_FOUND / PERMISSION_DENIED
  // (TLS or token file missing / unreadable), UNAVAILABLE (address cannot be bound),
  // FAILED_PRECONDITION (model directory cannot be created or listed).
  static absl::StatusOr<std::unique_ptr<PrimServer>> Start(const ServerOptions& options);

  ~PrimServer();

  // The bound port of `address` (useful with port 0).
  int port() const { return port_; }
  // The bound port of `metrics_address`, 0 without one.
  int metrics_port() const { return metrics_port_; }
  int compute_workers() const { return serving_->stage.workers(); }
  const std::vector<std::string>& service_names() const { return service_names_; }

  // Health turns NOT_SERVING at once, new calls get UNAVAILABLE, in-flight calls get up to
  // `grace` to finish and are cancelled after it. Idempotent; blocks until done.
  void Shutdown(absl::Duration grace);
  // Blocks until the server has shut down.
  void Wait();

 private:
  PrimServer() = default;
  // Counts and logs a call the token checks refused (server/auth.h); thread-safe.
  void RecordRefusal(absl::string_view path, grpc::StatusCode code, absl::string_view message);

  std::unique_ptr<Serving> serving_;  // Outlives the services that use it.
  std::unique_ptr<ModelStore> model_store_;  // Outlives the services that use it.
  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::vector<std::string> service_names_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  int metrics_port_ = 0;
  std::atomic<bool> shut_down_{false};
  // RecordRefusal's log rate limit.
  absl::Mutex refusal_log_mu_;
  absl::Time refusal_window_start_ ABSL_GUARDED_BY(refusal_log_mu_) = absl::InfinitePast();
  int refusal_lines_ ABSL_GUARDED_BY(refusal_log_mu_) = 0;
  int64_t refusals_left_out_ ABSL_GUARDED_BY(refusal_log_mu_) = 0;
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_SERVER_H_
