// The Toolkit gRPC service. Each method is one line: admit the call, run the handler, map the
// status (see services.h for the other services).
#ifndef PRIMSERVE_SERVER_TOOLKIT_SERVICE_H_
#define PRIMSERVE_SERVER_TOOLKIT_SERVICE_H_

#include "grpcpp/server_context.h"
#include "primserve/v1/toolkit.grpc.pb.h"
#include "server/call_cancellation.h"
#include "server/serving.h"
#include "server/limits.h"
#include "server/toolkit_handlers.h"

namespace primserve {

class ToolkitService final : public ParsedService<v1::Toolkit> {
 public:
  ToolkitService(Limits limits, Serving* serving) : limits_(limits), serving_(*serving) {
    ParseRequests(serving_, "EmbeddingDimension", &ToolkitService::EmbeddingDimension);
    ParseRequests(serving_, "InitializeParameters", &ToolkitService::InitializeParameters);
    ParseRequests(serving_, "ChildTuningMask", &ToolkitService::ChildTuningMask);
  }

  grpc::Status EmbeddingDimension(grpc::ServerContext* context, const v1::EmbeddingDimensionRequest* request,
                                  v1::EmbeddingDimensionResponse* response) override {
    return Serve(serving_, context, {"primserve.v1.Toolkit/EmbeddingDimension", false}, *request, response, [&] { return HandleEmbeddingDimension(*request, response); });
  }

  grpc::Status InitializeParameters(grpc::ServerContext* context, const v1::InitializeParametersRequest* request,
                                    v1::InitializeParametersResponse* response) override {
    return Serve(serving_, context, {"primserve.v1.Toolkit/InitializeParameters", true}, *request, response, [&] {
      return HandleInitializeParameters(limits_, *request, response, CallCancellation::For(context));
    });
  }

  grpc::Status ChildTuningMask(grpc::ServerContext* context, const v1::ChildTuningMaskRequest* request,
                               v1::ChildTuningMaskResponse* response) override {
    return Serve(serving_, context, {"primserve.v1.Toolkit/ChildTuningMask", true}, *request, response,
                 [&] { return HandleChildTuningMask(limits_, *request, response, CallCancellation::For(context)); });
  }

 private:
  const Limits limits_;
  Serving& serving_;
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_TOOLKIT_SERVICE_H_
