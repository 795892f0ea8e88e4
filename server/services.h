// gRPC service classes. Each method is one line: Serve() (serving.h) admits the call, queues it
// for a compute worker, runs the handler, records metrics and the log line, maps the status.
#ifndef PRIMSERVE_SERVER_SERVICES_H_
#define PRIMSERVE_SERVER_SERVICES_H_

#include "absl/strings/str_cat.h"
#include "grpcpp/server_context.h"
#include "primserve/v1/attention.grpc.pb.h"
#include "primserve/v1/logistic_regression.grpc.pb.h"
#include "primserve/v1/models.grpc.pb.h"
#include "primserve/v1/position_encoding.grpc.pb.h"
#include "server/attention_handlers.h"
#include "server/call_cancellation.h"
#include "server/serving.h"
#include "server/limits.h"
#include "server/logistic_handlers.h"
#include "server/model_store.h"
#include "server/models_handlers.h"
#include "server/position_encoding_handlers.h"
#include "server/status_mapping.h"

namespace primserve {

// ApplyRope's messages come from a pool (message_pool.h): its tensors are often tens of MiB.
class PositionEncodingService final : public ParsedService<v1::PositionEncoding> {
 public:
  PositionEncodingService(Limits limits, Serving* serving) : limits_(limits), serving_(*serving) {
    ParseRequests(serving_, "Sinusoidal", &PositionEncodingService::Sinusoidal);
    MarkMethodStreamed(MethodIndex(v1::PositionEncoding::service_full_name(), "ApplyRope"),
                       PooledHandler([this](grpc::ServerContext* context, PooledStream* stream) {
                         return ServePooled(serving_, context, {"primserve.v1.PositionEncoding/ApplyRope", true},
                                            stream, rope_messages_,
                                            [&](const v1::ApplyRopeRequest& request, v1::ApplyRopeResponse* response) {
                                              return HandleApplyRope(limits_, request, response);
                                            });
                       }));
  }

  grpc::Status Sinusoidal(grpc::ServerContext* context, const v1::SinusoidalRequest* request,
                          v1::SinusoidalResponse* response) override {
    return Serve(serving_, context, {"primserve.v1.PositionEncoding/Sinusoidal", true}, *request, response, [&] { return HandleSinusoidal(limits_, *request, response); });
  }

 private:
  const Limits limits_;
  Serving& serving_;
  MessagePool<v1::ApplyRopeRequest, v1::ApplyRopeResponse> rope_messages_{2, "input", "output"};
};

class AttentionService final : public ParsedService<v1::Attention> {
 public:
  AttentionService(Limits limits, Serving* serving) : limits_(limits), serving_(*serving) {
    ParseRequests(serving_, "Attend", &AttentionService::Attend);
    ParseRequests(serving_, "EstimateCost", &AttentionService::EstimateCost);
  }

  grpc::Status Attend(grpc::ServerContext* context, const v1::AttendRequest* request,
                      v1::AttendResponse* response) override {
    return Serve(serving_, context, {"primserve.v1.Attention/Attend", true}, *request, response, [&] { return HandleAttend(limits_, *request, response, CallCancellation::For(context)); });
  }

  grpc::Status EstimateCost(grpc::ServerContext* context, const v1::EstimateCostRequest* request,
                            v1::EstimateCostResponse* response) override {
    return Serve(serving_, context, {"primserve.v1.Attention/EstimateCost", false}, *request, response, [&] { return HandleEstimateCost(*request, response); });
  }

 private:
  const Limits limits_;
  Serving& serving_;
};

// FitStream reads the stream inside its handler, one message at a time, holding a compute slot
// only between reads.
class LogisticRegressionService final : public ParsedService<v1::LogisticRegression> {
 public:
  LogisticRegressionService(Limits limits, ModelStore* store, Serving* serving)
      : limits_(limits), store_(*store), serving_(*serving) {
    ParseRequests(serving_, "Fit", &LogisticRegressionService::Fit);
    ParseRequests(serving_, "ComputeStatistics", &LogisticRegressionService::ComputeStatistics);
    ParseRequests(serving_, "FitFromStatistics", &LogisticRegressionService::FitFromStatistics);
    ParseRequests(serving_, "Predict", &LogisticRegressionService::Predict);
    MarkMethodStreamed(MethodIndex(v1::LogisticRegression::service_full_name(), "FitStream"),
                       RawStreamHandler([this](grpc::ServerContext* context, RawStream* stream) {
                         return ServeFitStream(context, stream);
                       }));
  }

  grpc::Status Fit(grpc::ServerContext* context, const v1::FitRequest* request, v1::FitResponse* response) override {
    return Serve(serving_, context, {"primserve.v1.LogisticRegression/Fit", true}, *request, response, [&] {
      return HandleFit(limits_, &store_, *request, response, CallCancellation::For(context));
    });
  }

  grpc::Status ComputeStatistics(grpc::ServerContext* context, const v1::ComputeStatisticsRequest* request,
                                 v1::ComputeStatisticsResponse* response) override {
    return Serve(serving_, context, {"primserve.v1.LogisticRegression/ComputeStatistics", true}, *request, response, [&] { return HandleComputeStatistics(limits_, *request, response); });
  }

  grpc::Status FitFromStatistics(grpc::ServerContext* context, const v1::FitFromStatisticsRequest* request,
                                 v1::FitFromStatisticsResponse* response) override {
    return Serve(serving_, context, {"primserve.v1.LogisticRegression/FitFromStatistics", true}, *request, response, [&] { return HandleFitFromStatistics(limits_, &store_, *request, response); });
  }

  grpc::Status Predict(grpc::ServerContext* context, const v1::PredictRequest* request,
                       v1::PredictResponse* response) override {
    return Serve(serving_, context, {"primserve.v1.LogisticRegression/Predict", true}, *request, response, [&] { return HandlePredict(limits_, &store_, *request, response); });
  }

 private:
  // The stream's messages are parsed here (see RawStream): one that does not parse fails the fit.
  grpc::Status ServeFitStream(grpc::ServerContext* context, RawStream* stream) {
    // The compute slot is held while a message is folded in, not while the client sends the
    // next one: a slow stream must not keep the workers from other calls.
    CallScope call(serving_, context, {"primserve.v1.LogisticRegression/FitStream", true}, 0);
    v1::FitResponse response;
    absl::Status status = call.Begin();
    if (status.ok()) {
      const FitMessageReader read = StreamReader(context, stream);
      status = HandleFitStream(
          limits_, &store_,
          [&](v1::FitRequest* message) -> absl::StatusOr<bool> {
            absl::StatusOr<bool> more = call.WithoutSlot([&] { return read(message); });
            if (more.ok() && *more) call.AddReceivedBytes(static_cast<int64_t>(message->ByteSizeLong()));
            return more;
          },
          &response, CallCancellation::For(context));
    }
    grpc::ByteBuffer wire;
    if (status.ok()) {
      bool own_buffer = false;
      const grpc::Status serialized = grpc::SerializationTraits<v1::FitResponse>::Serialize(response, &wire, &own_buffer);
      if (!serialized.ok()) status = absl::InternalError(absl::StrCat("FitStream: ", serialized.error_message()));
    }
    const grpc::Status wire_status = call.End(status, status.ok() ? static_cast<int64_t>(wire.Length()) : 0);
    if (wire_status.ok() && !stream->Write(wire)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the response could not be sent (the call ended)");
    }
    return wire_status;
  }

  // Read() is also false when the client cancelled: that must fail the fit, not end the data.
  static FitMessageReader StreamReader(grpc::ServerContext* context, RawStream* stream) {
    return [context, stream, count = int64_t{0}](v1::FitRequest* message) mutable -> absl::StatusOr<bool> {
      grpc::ByteBuffer wire;
      if (!stream->Read(&wire)) {
        if (!context->IsCancelled()) return false;
        return absl::CancelledError(
            "FitStream: the stream broke off (cancelled, or its deadline passed) before its end; "
            "nothing was fitted or stored");
      }
      ++count;
      if (!grpc::SerializationTraits<v1::FitRequest>::Deserialize(&wire, message).ok()) {
        return absl::InvalidArgumentError(absl::StrCat("FitStream message ", count,
                                                       ": cannot parse the bytes as a primserve.v1.FitRequest; "
                                                       "nothing was fitted or stored"));
      }
      return true;
    };
  }

  const Limits limits_;
  ModelStore& store_;
  Serving& serving_;
};

class ModelsService final : public ParsedService<v1::Models> {
 public:
  ModelsService(ModelStore* store, Serving* serving) : store_(*store), serving_(*serving) {
    ParseRequests(serving_, "List", &ModelsService::List);
    ParseRequests(serving_, "Get", &ModelsService::Get);
    ParseRequests(serving_, "Delete", &ModelsService::Delete);
  }

  grpc::Status List(grpc::ServerContext* context, const v1::ListRequest* request, v1::ListResponse* response) override {
    return Serve(serving_, context, {"primserve.v1.Models/List", false}, *request, response, [&] { return HandleListModels(store_, *request, response); });
  }

  grpc::Status Get(grpc::ServerContext* context, const v1::GetRequest* request, v1::GetResponse* response) override {
    return Serve(serving_, context, {"primserve.v1.Models/Get", false}, *request, response, [&] { return HandleGetModel(store_, *request, response); });
  }

  grpc::Status Delete(grpc::ServerContext* context, const v1::DeleteRequest* request, v1::DeleteResponse* response) override {
    return Serve(serving_, context, {"primserve.v1.Models/Delete", false}, *request, response, [&] { return HandleDeleteModel(store_, *request, response); });
  }

 private:
  ModelStore& store_;
  Serving& serving_;
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_SERVICES_H_
