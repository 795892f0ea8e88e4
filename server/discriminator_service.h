// The Discriminator gRPC service. Each method is one line: admit the call, run the handler, map
// the status (see services.h for the other services). Owns the compiled-network cache, so
// registered and repeated inline networks keep their oneDNN primitives between calls.
#ifndef PRIMSERVE_SERVER_DISCRIMINATOR_SERVICE_H_
#define PRIMSERVE_SERVER_DISCRIMINATOR_SERVICE_H_

#include "grpcpp/server_context.h"
#include "primserve/v1/discriminator.grpc.pb.h"
#include "server/call_cancellation.h"
#include "server/serving.h"
#include "server/discriminator_cache.h"
#include "server/discriminator_handlers.h"
#include "server/limits.h"
#include "server/model_store.h"

namespace primserve {

class DiscriminatorService final : public ParsedService<v1::Discriminator> {
 public:
  // Compiled networks of models the store no longer holds (deleted or replaced, here or through
  // another replica) are dropped as soon as the store lets them go.
  DiscriminatorService(Limits limits, ModelStore* store, Serving* serving)
      : limits_(limits), store_(*store), serving_(*serving) {
    ParseRequests(serving_, "Register", &DiscriminatorService::Register);
    ParseRequests(serving_, "Score", &DiscriminatorService::Score);
    ParseRequests(serving_, "Losses", &DiscriminatorService::Losses);
    store_.SetChangeListener([this] { cache_.DropGone(); });
  }
  ~DiscriminatorService() override { store_.SetChangeListener(nullptr); }

  grpc::Status Register(grpc::ServerContext* context, const v1::RegisterRequest* request,
                        v1::RegisterResponse* response) override {
    return Serve(serving_, context, {"primserve.v1.Discriminator/Register", true}, *request, response, [&] { return HandleRegister(limits_, &store_, *request, response); });
  }

  grpc::Status Score(grpc::ServerContext* context, const v1::ScoreRequest* request,
                     v1::ScoreResponse* response) override {
    return Serve(serving_, context, {"primserve.v1.Discriminator/Score", true}, *request, response, [&] {
      return HandleScore(limits_, &store_, &cache_, *request, response, CallCancellation::For(context));
    });
  }

  grpc::Status Losses(grpc::ServerContext* context, const v1::LossesRequest* request,
                      v1::LossesResponse* response) override {
    return Serve(serving_, context, {"primserve.v1.Discriminator/Losses", true}, *request, response, [&] {
      return HandleLosses(limits_, &store_, &cache_, *request, response, CallCancellation::For(context));
    });
  }

 private:
  const Limits limits_;
  ModelStore& store_;
  Serving& serving_;
  DiscriminatorCache cache_;
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_DISCRIMINATOR_SERVICE_H_
