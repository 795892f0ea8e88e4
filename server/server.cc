#include "server/server.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <system_error>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/dnnl_context.h"
#include "core/parallel.h"
#include "google/protobuf/descriptor.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/server_builder.h"
#include "server/allocator.h"
#include "server/auth.h"
#include "server/limits.h"
#include "server/log.h"
#include "server/services.h"
#include "server/toolkit_service.h"
#include "server/diagnostics_service.h"
#include "server/discriminator_conversion.h"
#include "server/discriminator_service.h"
#include "server/logistic_conversion.h"

namespace primserve {
namespace {

// A stored model as the calls that use it (Predict, Score) check it, so that Models.List does
// not list as healthy a file whose checksum holds but whose model those calls refuse.
absl::Status CheckStoredModel(const v1::StoredModel& model, const Limits& limits) {
  switch (model.kind()) {
    case v1::MODEL_KIND_LOGISTIC:
      if (!model.has_logistic()) return absl::InvalidArgumentError("a logistic model holds no LogisticModel");
      return LogisticModelFromProto(model.logistic(), "model", limits).status();
    case v1::MODEL_KIND_DISCRIMINATOR:
      if (!model.has_discriminator()) return absl::InvalidArgumentError("a discriminator holds no network");
      return NetworkFromProto(model.discriminator(), "network", limits).status();
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown model kind ", model.kind()));
  }
}

// After a drain, how long new calls are still refused with UNAVAILABLE before the listener
// closes (see Shutdown).
constexpr absl::Duration kRefusalWindow = absl::Milliseconds(500);

// Threads beyond the compute stage's workers and queue (see Start).
constexpr int kThreadHeadroom = 32;
// Idle sync-API threads waiting for calls, at least (see where the builder is set up).
constexpr int kMinPollers = 8;

int MillisecondsArg(absl::Duration d) {
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d), std::numeric_limits<int>::max()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PrimServer>> PrimServer::Start(const ServerOptions& options) {
  // At least 4 KiB: the first 1 KiB of a response is kept for its envelope (server/limits.h).
  if (options.max_message_bytes < 4096 || options.max_message_bytes > (int64_t{2} << 30) - 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_message_bytes: expected a value in [4096, 2147483647] (gRPC's int limit), got ",
        options.max_message_bytes));
  }
  if (options.compute_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("compute_threads: expected >= 0 (0 = all available cores), got ", options.compute_threads));
  }
  if (options.max_attention_weights < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_attention_weights: expected >= 0 (elements of Attend's weights), got ", options.max_attention_weights));
  }
  if (options.max_idle_workspace_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_idle_workspace_bytes: expected >= 0, got ",
                                                   options.max_idle_workspace_bytes));
  }
  if (options.compute_workers < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "compute_workers: expected >= 0 (0 = cores / compute_threads), got ", options.compute_workers));
  }
  if (options.max_queue < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_queue: expected >= 0, got ", options.max_queue));
  }
  if (options.max_connection_age <= absl::ZeroDuration() || options.max_connection_age_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_connection_age: expected > 0 with a grace >= 0, got ", absl::FormatDuration(options.max_connection_age),
        " and ", absl::FormatDuration(options.max_connection_age_grace)));
  }
  // Bad TLS or token files stop the start before anything is created or listens. Calls the
  // token checks refuse never reach a handler: they are counted and logged here (serving_ is set
  // before any port listens).
  std::unique_ptr<PrimServer> server(new PrimServer());
  absl::StatusOr<PortCredentials> credentials =
      BuildPortCredentials(options.security, [raw = server.get()](absl::string_view path, grpc::StatusCode code,
                                                                  absl::string_view message) {
        raw->RecordRefusal(path, code, message);
      });
  if (!credentials.ok()) return credentials.status();
  const Limits limits = Limits::ForMessageBytes(options.max_message_bytes, options.max_attention_weights);
  absl::StatusOr<std::unique_ptr<ModelStore>> model_store =
      ModelStore::Open(options.model_dir, options.max_message_bytes + ModelStore::kFileOverheadBytes,
                       [limits](const v1::StoredModel& model) { return CheckStoredModel(model, limits); });
  if (!model_store.ok()) return model_store.status();
  SetComputeThreads(options.compute_threads);
  SetIdleWorkspaceBudget(options.max_idle_workspace_bytes);
  DnnlEngine();  // Create the engine now, not on the first request.
  const int workers =
      options.compute_workers > 0 ? options.compute_workers : std::max(1, AvailableCores() / ComputeThreads());

  server->model_store_ = *std::move(model_store);
  server->serving_ = std::make_unique<Serving>(workers, options.max_queue);
  Serving* serving = server->serving_.get();
  if (!options.metrics_address.empty()) {
    absl::StatusOr<int> metrics_port = serving->metrics.Expose(options.metrics_address);
    if (!metrics_port.ok()) return metrics_port.status();
    server->metrics_port_ = *metrics_port;
  }
  server->services_.push_back(std::make_unique<PositionEncodingService>(limits, serving));
  server->services_.push_back(std::make_unique<AttentionService>(limits, serving));
  server->services_.push_back(
      std::make_unique<LogisticRegressionService>(limits, server->model_store_.get(), serving));
  server->services_.push_back(std::make_unique<ModelsService>(server->model_store_.get(), serving));
  server->service_names_ = {v1::PositionEncoding::service_full_name(), v1::Attention::service_full_name(),
                            v1::LogisticRegression::service_full_name(), v1::Models::service_full_name()};
  server->services_.push_back(std::make_unique<ToolkitService>(limits, serving));
  server->service_names_.push_back(v1::Toolkit::service_full_name());
  server->services_.push_back(
      std::make_unique<DiscriminatorService>(limits, server->model_store_.get(), serving));
  server->service_names_.push_back(v1::Discriminator::service_full_name());
  server->services_.push_back(std::make_unique<DiagnosticsService>(limits, serving));
  server->service_names_.push_back(v1::Diagnostics::service_full_name());

  grpc::EnableDefaultHealthCheckService(true);
  // Reflection describes what the generated descriptor pool holds; gRPC's health service does not
  // use our health.pb.cc, which the linker then drops. Naming its descriptor keeps it, so grpcurl
  // can describe and call grpc.health.v1.Health.
  grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // TLS and tokens on the data port; the admin port stays plaintext for Kubernetes probes
  // (server/auth.h).
  builder.AddListeningPort(options.address, credentials->data, &server->port_);
  int admin_port = 0;
  if (!options.admin_address.empty() && options.admin_address != options.address) {
    builder.AddListeningPort(options.admin_address, credentials->admin, &admin_port);
  }
  // Sync API threads: the compute stage lets at most `workers` calls compute and `max_queue` wait
  // (compute_stage.h); the rest of the quota serves calls that skip the stage (health, cost
  // formulas, model listing) and gRPC's pollers. Past the quota gRPC itself answers
  // RESOURCE_EXHAUSTED, a backstop the stage should never reach.
  const int max_threads = workers + options.max_queue + kThreadHeadroom;
  grpc::ResourceQuota quota("primserve");
  quota.SetMaxThreads(max_threads);
  builder.SetResourceQuota(quota);
  // Pollers: gRPC's sync server keeps between MIN and MAX idle threads waiting for calls; a
  // thread that finishes a call while MAX others poll exits. With its defaults (1 and 2), the
  // threads churned under a few concurrent calls: measured here, 2,600 threads created for
  // 13,000 Echo calls from 2 clients, and calls/s at 2 clients fell to 0.65x of 1 client's.
  // At least 8 waiting, and as many kept as the quota allows, end the churn (4,600 threads
  // created in 10 s of 32 clients with a cap of 16); an idle poller costs its stack's touched
  // pages and its allocator cache.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, std::min(kMinPollers, max_threads));
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, max_threads);
  // Rebalancing and dead-peer detection (client defaults that match: client/channel.h).
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, MillisecondsArg(options.max_connection_age));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                             MillisecondsArg(options.max_connection_age_grace));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60 * 1000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20 * 1000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10 * 1000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // gRPC sets SO_REUSEPORT by default: a second server on a taken port would start and share its
  // connections with the first. Off, the bind fails and Start reports the address in use.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  for (auto& service : server->services_) builder.RegisterService(service.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("address: cannot listen on ", options.address,
                                               options.admin_address.empty() ? "" : " / ", options.admin_address,
                                               " (in use, or not a valid host:port)"));
  }
  grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService();
  health->SetServingStatus("", true);
  for (const std::string& name : server->service_names_) health->SetServingStatus(name, true);
  Log(LogLevel::kInfo, "primserve listening on ", options.address, " (port ", server->port_, ")",
      admin_port ? absl::StrCat(", admin on ", options.admin_address) : std::string(), "; ",
      workers, " compute worker(s) x ", ComputeThreads(), " thread(s), queue ", options.max_queue, "; ",
      server->metrics_port_ ? absl::StrCat("metrics on ", options.metrics_address, "; ") : std::string(), DnnlVersionString(), "; ", DescribeAllocator(), "; model_dir ", options.model_dir);
  const SecurityOptions& security = options.security;
  if (security.secured()) {
    Log(LogLevel::kInfo, "data port: ",
        !security.tls() ? "plaintext" : security.tls_client_ca_file.empty() ? "TLS" : "mTLS (client certificates required)",
        security.auth_token_file.empty() ? "" : ", bearer tokens required (health and reflection exempt)",
        admin_port ? "; admin port: plaintext, health and reflection only" : "");
  }
  return server;
}

PrimServer::~PrimServer() {
  Shutdown(absl::ZeroDuration());
  Wait();
}

void PrimServer::Shutdown(absl::Duration grace) {
  if (server_ == nullptr || shut_down_.exchange(true)) return;
  // New calls are refused (UNAVAILABLE) from before health turns NOT_SERVING, so a client that
  // sees NOT_SERVING finds every new call refused; both come well before the listener closes,
  // so load balancers and probes stop sending first.
  serving_->tracker.StopAdmitting();
  server_->GetHealthCheckService()->Shutdown();
  const absl::Time deadline = absl::Now() + grace;
  const int64_t unfinished = serving_->tracker.Drain(deadline);
  if (unfinished > 0) {
    Log(LogLevel::kWarning, "grace period over: cancelling ", unfinished, " unfinished call(s)");
  } else {
    // Keep refusing (UNAVAILABLE, which clients retry elsewhere) a little longer before the
    // listener closes: gRPC's Shutdown cancels calls that arrived but have no handler thread yet,
    // and CANCELLED is not retried. By then health-checking clients have moved away.
    absl::SleepFor(std::max(absl::ZeroDuration(), std::min(kRefusalWindow, deadline - absl::Now())));
  }
  // Every handler has returned; their responses may still be on the wire. Give them a short
  // flush window rather than the rest of the grace period: gRPC keeps polling until the
  // Shutdown deadline before the process can exit (see call_tracker.h).
  constexpr absl::Duration kFlushWindow = absl::Seconds(2);
  server_->Shutdown(absl::ToChronoTime(std::min(deadline, absl::Now() + kFlushWindow)));
}

void PrimServer::RecordRefusal(absl::string_view path, grpc::StatusCode code, absl::string_view message) {
  // The path is the caller's choice: only methods this server defines get their own label, in
  // their canonical "package.Service/Method" spelling, so the metric's series stay bounded.
  // Exactly "/<service>/<method>", as gRPC routes it; any other spelling is "unknown".
  const google::protobuf::MethodDescriptor* known = nullptr;
  if (absl::StartsWith(path, "/")) {
    const absl::string_view requested = path.substr(1);
    const size_t slash = requested.find('/');
    if (slash != absl::string_view::npos && requested.find('/', slash + 1) == absl::string_view::npos) {
      const google::protobuf::ServiceDescriptor* service =
          google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(std::string(requested.substr(0, slash)));
      if (service != nullptr) known = service->FindMethodByName(std::string(requested.substr(slash + 1)));
    }
  }
  const std::string method = known != nullptr ? absl::StrCat(known->service()->full_name(), "/", known->name())
                                              : std::string("unknown");
  serving_->metrics.RecordRefused(method, code);
  // Unauthenticated callers choose how many of these lines there are: at most kRefusalLines a
  // second are written, and the next written line says how many were left out.
  constexpr int kRefusalLines = 20;
  int64_t left_out = 0;
  {
    absl::MutexLock lock(&refusal_log_mu_);
    const absl::Time now = absl::Now();
    if (now - refusal_window_start_ >= absl::Seconds(1)) {
      refusal_window_start_ = now;
      refusal_lines_ = 0;
    }
    if (++refusal_lines_ > kRefusalLines) {
      ++refusals_left_out_;
      return;
    }
    std::swap(left_out, refusals_left_out_);
  }
  // The message may quote the path (the caller's bytes, up to gRPC's 8 KiB of metadata): escaped,
  // as is the path of an unknown method, and cut to a few hundred bytes.
  auto quoted = [](absl::string_view text) {
    constexpr size_t kMaxQuoted = 256;
    return text.size() <= kMaxQuoted ? absl::CHexEscape(text)
                                     : absl::StrCat(absl::CHexEscape(text.substr(0, kMaxQuoted)), "... (",
                                                    text.size(), " bytes)");
  };
  Log(LogLevel::kInfo, "rpc ", method, " ", absl::StatusCodeToString(static_cast<absl::StatusCode>(code)),
      " refused before any handler: ", quoted(message), known != nullptr ? "" : absl::StrCat(" (path ", quoted(path), ")"),
      left_out > 0 ? absl::StrCat(" (", left_out, " more refused calls not logged)") : "");
}

void PrimServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace primserve
