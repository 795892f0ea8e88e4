// gRPC service classes. Each method is one line: admit the call, run the handler, map the status.
#ifndef PRIMSERVE_SERVER_SERVICES_H_
#define PRIMSERVE_SERVER_SERVICES_H_

#include "grpcpp/server_context.h"
#include "primserve/v1/attention.grpc.pb.h"
#include "primserve/v1/position_encoding.grpc.pb.h"
#include "server/attention_handlers.h"
#include "server/call_cancellation.h"
#include "server/call_tracker.h"
#include "server/limits.h"
#include "server/position_encoding_handlers.h"
#include "server/status_mapping.h"

namespace primserve {

class PositionEncodingService final : public v1::PositionEncoding::Service {
 public:
  PositionEncodingService(Limits limits, CallTracker* tracker) : limits_(limits), tracker_(*tracker) {}

  grpc::Status Sinusoidal(grpc::ServerContext*, const v1::SinusoidalRequest* request,
                          v1::SinusoidalResponse* response) override {
    return Serve(tracker_, [&] { return HandleSinusoidal(limits_, *request, response); });
  }

  grpc::Status ApplyRope(grpc::ServerContext*, const v1::ApplyRopeRequest* request,
                         v1::ApplyRopeResponse* response) override {
    return Serve(tracker_, [&] { return HandleApplyRope(limits_, *request, response); });
  }

 private:
  const Limits limits_;
  CallTracker& tracker_;
};

class AttentionService final : public v1::Attention::Service {
 public:
  AttentionService(Limits limits, CallTracker* tracker) : limits_(limits), tracker_(*tracker) {}

  grpc::Status Attend(grpc::ServerContext* context, const v1::AttendRequest* request,
                      v1::AttendResponse* response) override {
    return Serve(tracker_, [&] { return HandleAttend(limits_, *request, response, CallCancellation::For(context)); });
  }

  grpc::Status EstimateCost(grpc::ServerContext*, const v1::EstimateCostRequest* request,
                            v1::EstimateCostResponse* response) override {
    return Serve(tracker_, [&] { return HandleEstimateCost(*request, response); });
  }

 private:
  const Limits limits_;
  CallTracker& tracker_;
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_SERVICES_H_
