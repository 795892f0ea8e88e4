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

class DiagnosticsService final : public v1::Diagnostics::Service {
 public:
  DiagnosticsService(Limits limits, Serving* serving) : limits_(limits), serving_(*serving) {}

  grpc::Status Echo(grpc::ServerContext* context, const v1::EchoRequest* request,
                    v1::EchoResponse* response) override {
    return Serve(serving_, context, {"primserve.v1.Diagnostics/Echo", false}, *request, response, [&] { return HandleEcho(limits_, *request, response); });
  }

 private:
  const Limits limits_;
  Serving& serving_;
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_DIAGNOSTICS_SERVICE_H_
