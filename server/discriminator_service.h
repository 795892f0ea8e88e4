// The Discriminator gRPC service. Each method is one line: admit the call, run the handler, map
// the status (see services.h for the other services). Owns the compiled-network cache, so
// registered and repeated inline networks keep their oneDNN primitives between calls.
#ifndef PRIMSERVE_SERVER_DISCRIMINATOR_SERVICE_H_
#define PRIMSERVE_SERVER_DISCRIMINATOR_SERVICE_H_

#include "grpcpp/server_context.h"
#include "primserve/v1/discriminator.grpc.pb.h"
#include "server/call_cancellation.h"
#include "server/call_tracker.h"
#include "server/discriminator_cache.h"
#include "server/discriminator_handlers.h"
#include "server/limits.h"
#include "server/model_store.h"

namespace primserve {

class DiscriminatorService final : public v1::Discriminator::Service {
 public:
  DiscriminatorService(Limits limits, ModelStore* store, CallTracker* tracker)
      : limits_(limits), store_(*store), tracker_(*tracker) {}

  grpc::Status Register(grpc::ServerContext*, const v1::RegisterRequest* request,
                        v1::RegisterResponse* response) override {
    return Serve(tracker_, [&] { return HandleRegister(limits_, &store_, *request, response); });
  }

  grpc::Status Score(grpc::ServerContext* context, const v1::ScoreRequest* request,
                     v1::ScoreResponse* response) override {
    return Serve(tracker_, [&] {
      return HandleScore(limits_, &store_, &cache_, *request, response, CallCancellation::For(context));
    });
  }

  grpc::Status Losses(grpc::ServerContext* context, const v1::LossesRequest* request,
                      v1::LossesResponse* response) override {
    return Serve(tracker_, [&] {
      return HandleLosses(limits_, &store_, &cache_, *request, response, CallCancellation::For(context));
    });
  }

 private:
  const Limits limits_;
  ModelStore& store_;
  CallTracker& tracker_;
  DiscriminatorCache cache_;
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_DISCRIMINATOR_SERVICE_H_
