#include "primserve/client/logistic_regression.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"

namespace primserve {
namespace client {
namespace {

// Rows [begin, end) of a rank-2 tensor, as wire bytes.
v1::Tensor RowsToProto(const Tensor& features, int64_t begin, int64_t end) {
  const int64_t dim = features.shape[1];
  v1::Tensor proto;
  proto.add_shape(end - begin);
  proto.add_shape(dim);
  proto.set_dtype(v1::DATA_TYPE_FLOAT32);
  proto.mutable_data()->assign(reinterpret_cast<const char*>(features.values.data() + begin * dim),
                               static_cast<size_t>((end - begin) * dim) * sizeof(float));
  return proto;
}

void SetLabels(const std::vector<int64_t>& labels, size_t begin, size_t end,
               google::protobuf::RepeatedField<int64_t>* field) {
  field->Clear();
  field->Reserve(static_cast<int>(end - begin));
  for (size_t i = begin; i < end && i < labels.size(); ++i) field->AddAlreadyReserved(labels[i]);
}

absl::Status CheckRows(const Tensor& features, const std::vector<int64_t>& labels) {
  if (features.shape.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("features: expected rank 2 [N, d], got rank ", features.shape.size()));
  }
  if (features.shape[0] < 0 || features.shape[1] < 0 ||
      static_cast<double>(features.values.size()) != static_cast<double>(features.shape[0]) * features.shape[1]) {
    return absl::InvalidArgumentError(absl::StrCat("features: shape [", features.shape[0], ", ", features.shape[1],
                                                   "] does not match its ", features.values.size(), " values"));
  }
  if (static_cast<int64_t>(labels.size()) != features.shape[0]) {
    return absl::InvalidArgumentError(
        absl::StrCat("labels: expected ", features.shape[0], " (one per row), got ", labels.size()));
  }
  return absl::OkStatus();
}

template <typename Response>
absl::StatusOr<FitResult> ToFitResult(const Response& response) {
  absl::StatusOr<LogisticModel> model = FromProto(response.model());
  if (!model.ok()) return model.status();
  return FitResult{*std::move(model), response.report()};
}

}  // namespace

v1::LogisticModel ToProto(const LogisticModel& model) {
  v1::LogisticModel proto;
  *proto.mutable_weights() = ToProto(model.weights);
  *proto.mutable_bias() = ToProto(model.bias);
  proto.mutable_priors()->Add(model.priors.begin(), model.priors.end());
  return proto;
}

absl::StatusOr<LogisticModel> FromProto(const v1::LogisticModel& proto) {
  LogisticModel model;
  absl::StatusOr<Tensor> weights = FromProto(proto.weights());
  if (!weights.ok()) return weights.status();
  absl::StatusOr<Tensor> bias = FromProto(proto.bias());
  if (!bias.ok()) return bias.status();
  model.weights = *std::move(weights);
  model.bias = *std::move(bias);
  model.priors.assign(proto.priors().begin(), proto.priors().end());
  return model;
}

LogisticRegressionClient::LogisticRegressionClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(v1::LogisticRegression::NewStub(std::move(channel))) {}

absl::StatusOr<FitResult> LogisticRegressionClient::Fit(const Tensor& features, const std::vector<int64_t>& labels,
                                                        const v1::FitRequest& options, const CallOptions& call) {
  v1::FitRequest request = options;
  *request.mutable_features() = ToProto(features);
  SetLabels(labels, 0, labels.size(), request.mutable_labels());
  return Fit(request, call);
}

absl::StatusOr<FitResult> LogisticRegressionClient::Fit(const v1::FitRequest& request, const CallOptions& call) {
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::FitResponse response;
  const grpc::Status status = stub_->Fit(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return ToFitResult(response);
}

absl::StatusOr<FitResult> LogisticRegressionClient::FitStream(const ChunkSource& next, const v1::FitRequest& options,
                                                              const CallOptions& call) {
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::FitResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::FitRequest>> writer = stub_->FitStream(&context, &response);
  v1::FitRequest message = options;
  message.clear_features();
  message.clear_labels();
  bool sent = false;
  FitChunk chunk;
  while (next(&chunk)) {
    *message.mutable_features() = ToProto(chunk.features);
    SetLabels(chunk.labels, 0, chunk.labels.size(), message.mutable_labels());
    sent = true;
    // false: the server has ended the call (an error); Finish() says why.
    if (!writer->Write(message)) break;
    message.Clear();  // Later messages carry data only.
  }
  if (!sent) writer->Write(message);  // The options alone (the server then says there is no data).
  writer->WritesDone();
  const grpc::Status status = writer->Finish();
  if (!status.ok()) return FromGrpcStatus(status);
  return ToFitResult(response);
}

absl::StatusOr<FitResult> LogisticRegressionClient::FitStream(const Tensor& features,
                                                              const std::vector<int64_t>& labels,
                                                              int64_t rows_per_chunk, const v1::FitRequest& options,
                                                              const CallOptions& call) {
  if (absl::Status rows = CheckRows(features, labels); !rows.ok()) return rows;
  if (rows_per_chunk <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("rows_per_chunk: expected > 0, got ", rows_per_chunk));
  }
  const int64_t rows = features.shape[0];
  const int64_t dim = features.shape[1];
  int64_t begin = 0;
  return FitStream(
      [&](FitChunk* chunk) {
        if (begin >= rows) return false;
        const int64_t end = std::min(rows, begin + rows_per_chunk);
        chunk->features.shape = {end - begin, dim};
        chunk->features.values.assign(features.values.begin() + begin * dim, features.values.begin() + end * dim);
        chunk->labels.assign(labels.begin() + begin, labels.begin() + end);
        begin = end;
        return true;
      },
      options, call);
}

absl::StatusOr<v1::Statistics> LogisticRegressionClient::ComputeStatistics(const Tensor& features,
                                                                          const std::vector<int64_t>& labels,
                                                                          int64_t num_classes,
                                                                          const CallOptions& call) {
  v1::ComputeStatisticsRequest request;
  *request.mutable_features() = ToProto(features);
  SetLabels(labels, 0, labels.size(), request.mutable_labels());
  request.set_num_classes(num_classes);
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::ComputeStatisticsResponse response;
  const grpc::Status status = stub_->ComputeStatistics(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return std::move(*response.mutable_statistics());
}

absl::StatusOr<FitResult> LogisticRegressionClient::FitFromStatistics(const std::vector<v1::Statistics>& statistics,
                                                                      const v1::FitFromStatisticsRequest& options,
                                                                      const CallOptions& call) {
  v1::FitFromStatisticsRequest request = options;
  request.clear_statistics();
  for (const v1::Statistics& shard : statistics) *request.add_statistics() = shard;
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::FitFromStatisticsResponse response;
  const grpc::Status status = stub_->FitFromStatistics(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return ToFitResult(response);
}

absl::StatusOr<FitResult> LogisticRegressionClient::FitSharded(const Tensor& features,
                                                               const std::vector<int64_t>& labels, int num_shards,
                                                               const v1::FitFromStatisticsRequest& options,
                                                               const CallOptions& call) {
  if (absl::Status rows = CheckRows(features, labels); !rows.ok()) return rows;
  const int64_t rows = features.shape[0];
  if (num_shards < 1 || num_shards > rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_shards: expected a value in [1, ", rows, "] (the number of rows), got ", num_shards));
  }
  std::vector<absl::StatusOr<v1::Statistics>> shards(static_cast<size_t>(num_shards),
                                                     absl::UnknownError("not computed"));
  std::vector<std::thread> threads;
  for (int s = 0; s < num_shards; ++s) {
    threads.emplace_back([&, s] {
      // Balanced contiguous shards: shard s holds rows [s N / S, (s + 1) N / S).
      const int64_t begin = rows * s / num_shards;
      const int64_t end = rows * (s + 1) / num_shards;
      v1::ComputeStatisticsRequest request;
      *request.mutable_features() = RowsToProto(features, begin, end);
      SetLabels(labels, static_cast<size_t>(begin), static_cast<size_t>(end), request.mutable_labels());
      request.set_num_classes(options.num_classes());
      grpc::ClientContext context;
      ConfigureContext(call, &context);
      v1::ComputeStatisticsResponse response;
      const grpc::Status status = stub_->ComputeStatistics(&context, request, &response);
      if (status.ok()) {
        shards[static_cast<size_t>(s)] = std::move(*response.mutable_statistics());
      } else {
        const absl::Status error = FromGrpcStatus(status);
        shards[static_cast<size_t>(s)] =
            absl::Status(error.code(), absl::StrCat(error.message(), " (shard ", s, " of ", num_shards, ")"));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::vector<v1::Statistics> statistics;
  statistics.reserve(shards.size());
  for (absl::StatusOr<v1::Statistics>& shard : shards) {
    if (!shard.ok()) return shard.status();
    statistics.push_back(*std::move(shard));
  }
  return FitFromStatistics(statistics, options, call);
}

absl::StatusOr<PredictResult> LogisticRegressionClient::Predict(const Tensor& features, const std::string& model_name,
                                                                const CallOptions& call) {
  v1::PredictRequest request;
  request.set_model_name(model_name);
  *request.mutable_features() = ToProto(features);
  return Predict(request, call);
}

absl::StatusOr<PredictResult> LogisticRegressionClient::Predict(const Tensor& features, const LogisticModel& model,
                                                                const CallOptions& call) {
  v1::PredictRequest request;
  *request.mutable_model() = ToProto(model);
  *request.mutable_features() = ToProto(features);
  return Predict(request, call);
}

absl::StatusOr<PredictResult> LogisticRegressionClient::Predict(const v1::PredictRequest& request,
                                                                const CallOptions& call) {
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  v1::PredictResponse response;
  const grpc::Status status = stub_->Predict(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  absl::StatusOr<Tensor> probabilities = FromProto(response.probabilities());
  if (!probabilities.ok()) return probabilities.status();
  PredictResult result;
  result.probabilities = *std::move(probabilities);
  result.labels.assign(response.labels().begin(), response.labels().end());
  return result;
}

}  // namespace client
}  // namespace primserve
