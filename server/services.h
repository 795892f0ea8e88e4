// gRPC service classes. Each method is one line: admit the call, run the handler, map the status.
#ifndef PRIMSERVE_SERVER_SERVICES_H_
#define PRIMSERVE_SERVER_SERVICES_H_

#include "grpcpp/server_context.h"
#include "primserve/v1/attention.grpc.pb.h"
#include "primserve/v1/logistic_regression.grpc.pb.h"
#include "primserve/v1/models.grpc.pb.h"
#include "primserve/v1/position_encoding.grpc.pb.h"
#include "server/attention_handlers.h"
#include "server/call_cancellation.h"
#include "server/call_tracker.h"
#include "server/limits.h"
#include "server/logistic_handlers.h"
#include "server/model_store.h"
#include "server/models_handlers.h"
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

// FitStream reads the stream inside its handler, one message at a time.
class LogisticRegressionService final : public v1::LogisticRegression::Service {
 public:
  LogisticRegressionService(Limits limits, ModelStore* store, CallTracker* tracker)
      : limits_(limits), store_(*store), tracker_(*tracker) {}

  grpc::Status Fit(grpc::ServerContext*, const v1::FitRequest* request, v1::FitResponse* response) override {
    return Serve(tracker_, [&] { return HandleFit(limits_, &store_, *request, response); });
  }

  grpc::Status FitStream(grpc::ServerContext* context, grpc::ServerReader<v1::FitRequest>* reader,
                         v1::FitResponse* response) override {
    return Serve(tracker_, [&] {
      return HandleFitStream(limits_, &store_, StreamReader(context, reader), response, CallCancellation::For(context));
    });
  }

  grpc::Status ComputeStatistics(grpc::ServerContext*, const v1::ComputeStatisticsRequest* request,
                                 v1::ComputeStatisticsResponse* response) override {
    return Serve(tracker_, [&] { return HandleComputeStatistics(limits_, *request, response); });
  }

  grpc::Status FitFromStatistics(grpc::ServerContext*, const v1::FitFromStatisticsRequest* request,
                                 v1::FitFromStatisticsResponse* response) override {
    return Serve(tracker_, [&] { return HandleFitFromStatistics(limits_, &store_, *request, response); });
  }

  grpc::Status Predict(grpc::ServerContext*, const v1::PredictRequest* request,
                       v1::PredictResponse* response) override {
    return Serve(tracker_, [&] { return HandlePredict(limits_, &store_, *request, response); });
  }

 private:
  // Read() is also false when the client cancelled: that must fail the fit, not end the data.
  static FitMessageReader StreamReader(grpc::ServerContext* context, grpc::ServerReader<v1::FitRequest>* reader) {
    return [context, reader](v1::FitRequest* message) -> absl::StatusOr<bool> {
      if (reader->Read(message)) return true;
      if (!context->IsCancelled()) return false;
      return absl::CancelledError("FitStream: the stream broke off (cancelled, or its deadline passed) before its end; "
                                  "nothing was fitted or stored");
    };
  }

  const Limits limits_;
  ModelStore& store_;
  CallTracker& tracker_;
};

class ModelsService final : public v1::Models::Service {
 public:
  ModelsService(ModelStore* store, CallTracker* tracker) : store_(*store), tracker_(*tracker) {}

  grpc::Status List(grpc::ServerContext*, const v1::ListRequest* request, v1::ListResponse* response) override {
    return Serve(tracker_, [&] { return HandleListModels(store_, *request, response); });
  }

  grpc::Status Get(grpc::ServerContext*, const v1::GetRequest* request, v1::GetResponse* response) override {
    return Serve(tracker_, [&] { return HandleGetModel(store_, *request, response); });
  }

  grpc::Status Delete(grpc::ServerContext*, const v1::DeleteRequest* request, v1::DeleteResponse* response) override {
    return Serve(tracker_, [&] { return HandleDeleteModel(store_, *request, response); });
  }

 private:
  ModelStore& store_;
  CallTracker& tracker_;
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_SERVICES_H_
