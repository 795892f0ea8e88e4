#include "server/server.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "core/dnnl_context.h"
#include "core/parallel.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_builder.h"
#include "server/limits.h"
#include "server/log.h"
#include "server/services.h"
#include "server/toolkit_service.h"
#include "server/discriminator_service.h"
#include "server/call_tracker.h"

namespace primserve {

absl::StatusOr<std::unique_ptr<PrimServer>> PrimServer::Start(const ServerOptions& options) {
  if (options.max_message_bytes < 1024 || options.max_message_bytes > (int64_t{2} << 30) - 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_message_bytes: expected a value in [1024, 2147483647] (gRPC's int limit), got ",
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
  absl::StatusOr<std::unique_ptr<ModelStore>> model_store = ModelStore::Open(options.model_dir);
  if (!model_store.ok()) return model_store.status();
  SetComputeThreads(options.compute_threads);
  DnnlEngine();  // Create the engine now, not on the first request.

  std::unique_ptr<PrimServer> server(new PrimServer());
  server->model_store_ = *std::move(model_store);
  const Limits limits = Limits::ForMessageBytes(options.max_message_bytes, options.max_attention_weights);
  server->services_.push_back(std::make_unique<PositionEncodingService>(limits, &server->tracker_));
  server->services_.push_back(std::make_unique<AttentionService>(limits, &server->tracker_));
  server->services_.push_back(
      std::make_unique<LogisticRegressionService>(limits, server->model_store_.get(), &server->tracker_));
  server->services_.push_back(std::make_unique<ModelsService>(server->model_store_.get(), &server->tracker_));
  server->service_names_ = {v1::PositionEncoding::service_full_name(), v1::Attention::service_full_name(),
                            v1::LogisticRegression::service_full_name(), v1::Models::service_full_name()};
  server->services_.push_back(std::make_unique<ToolkitService>(limits, &server->tracker_));
  server->service_names_.push_back(v1::Toolkit::service_full_name());
  server->services_.push_back(
      std::make_unique<DiscriminatorService>(limits, server->model_store_.get(), &server->tracker_));
  server->service_names_.push_back(v1::Discriminator::service_full_name());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // Plaintext for now; TLS and tokens arrive with the production-serving work.
  builder.AddListeningPort(options.address, grpc::InsecureServerCredentials(), &server->port_);
  int admin_port = 0;
  if (!options.admin_address.empty() && options.admin_address != options.address) {
    builder.AddListeningPort(options.admin_address, grpc::InsecureServerCredentials(), &admin_port);
  }
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
      ComputeThreads(), " compute threads; ", DnnlVersionString(), "; model_dir ", options.model_dir);
  return server;
}

PrimServer::~PrimServer() {
  Shutdown(absl::ZeroDuration());
  Wait();
}

void PrimServer::Shutdown(absl::Duration grace) {
  if (server_ == nullptr || shut_down_.exchange(true)) return;
  // NOT_SERVING first, so load balancers and probes stop sending before the listener closes.
  server_->GetHealthCheckService()->Shutdown();
  const absl::Time deadline = absl::Now() + grace;
  const int64_t unfinished = tracker_.Drain(deadline);
  if (unfinished > 0) {
    Log(LogLevel::kWarning, "grace period over: cancelling ", unfinished, " unfinished call(s)");
  }
  // Every handler has returned; their responses may still be on the wire. Give them a short
  // flush window rather than the rest of the grace period: gRPC keeps polling until the
  // Shutdown deadline before the process can exit (see call_tracker.h).
  constexpr absl::Duration kFlushWindow = absl::Seconds(2);
  server_->Shutdown(absl::ToChronoTime(std::min(deadline, absl::Now() + kFlushWindow)));
}

void PrimServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace primserve
