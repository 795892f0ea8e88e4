// The Diagnostics gRPC service (Echo, the transport baseline). Each method is one line: Serve()
// admits the call, records metrics and the log line, maps the status (see services.h). Echo does
// no tensor compute, so it skips the compute queue (computes = false).
#ifndef PRIMSERVE_SERVER_DIAGNOSTICS_SERVICE_H_
#define PRIMSERVE_SERVER_DIAGNOSTICS_SERVICE_H_

#include "grpcpp/server_context.h"
#include "primserve/v1/diagnostics.grpc.pb.h"
#include "server/diagnostics_handlers.h"
#include "server/limits.h"
#include "server/serving.h"

namespace primserve {

// Echo's messages come from a pool (message_pool.h): it is the transport baseline of ApplyRope,
// which is served the same way.
class DiagnosticsService final : public v1::Diagnostics::Service {
 public:
  DiagnosticsService(Limits limits, Serving* serving) : limits_(limits), serving_(*serving) {
    MarkMethodStreamed(MethodIndex(v1::Diagnostics::service_full_name(), "Echo"),
                       PooledHandler([this](grpc::ServerContext* context, PooledStream* stream) {
                         return ServePooled(serving_, context, {"primserve.v1.Diagnostics/Echo", false}, stream,
                                            echo_messages_, [&](const v1::EchoRequest& request, v1::EchoResponse* response) {
                                              return HandleEcho(limits_, request, response);
                                            });
                       }));
  }

 private:
  const Limits limits_;
  Serving& serving_;
  MessagePool<v1::EchoRequest, v1::EchoResponse> echo_messages_{2, "input", "output"};
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_DIAGNOSTICS_SERVICE_H_
