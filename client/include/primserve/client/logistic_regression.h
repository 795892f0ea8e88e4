// Typed calls to the LogisticRegression service (MATH.md section 5): the closed-form fit (one
// message, streamed in chunks, or sharded over replicas), the maximum-likelihood reference,
// and predictions.
//
// Shapes: features [N, d] float32, labels N int64 in [0, K) -> model weights [K, d], bias [K],
// priors K; Predict: features [M, d] -> probabilities [M, K], labels M.
//
// Example:
//   LogisticRegressionClient logistic(CreateChannel(ChannelOptions()));  // localhost:50051
//   v1::FitRequest options;                                    // every Fit option; data is filled in
//   options.set_model_name("iris");                            // also store it on the server
//   absl::StatusOr<FitResult> fit = logistic.Fit(features, labels, options);
//   // fit->model.weights [K, d], fit->report.train_accuracy()
//   absl::StatusOr<PredictResult> p = logistic.Predict(test_features, "iris");
//   // p->probabilities [M, K], p->labels
//
// Data larger than one message or one machine:
//   logistic.FitStream(features, labels, /*rows_per_chunk=*/100000, options);   // one replica
//   ChannelOptions many;                                       // round_robin over replicas
//   many.address = "dns:///primserve-headless:50051";         // or "ipv4:10.0.0.1:50051,10.0.0.2:50051"
//   LogisticRegressionClient sharded(CreateChannel(many));
//   sharded.FitSharded(features, labels, /*num_shards=*/8);    // ComputeStatistics on each replica,
//                                                              // merged by FitFromStatistics
#ifndef PRIMSERVE_CLIENT_LOGISTIC_REGRESSION_H_
#define PRIMSERVE_CLIENT_LOGISTIC_REGRESSION_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "primserve/client/channel.h"
#include "primserve/client/tensor.h"
#include "primserve/v1/logistic_regression.grpc.pb.h"

namespace primserve {
namespace client {

struct LogisticModel {
  Tensor weights;              // [K, d]; p(c | x) = softmax_c(x . weights[c] + bias[c]).
  Tensor bias;                 // [K]
  std::vector<double> priors;  // [K] class frequencies of the training data (may be empty).
};

v1::LogisticModel ToProto(const LogisticModel& model);
// INVALID_ARGUMENT when a tensor's element count does not match its shape.
absl::StatusOr<LogisticModel> FromProto(const v1::LogisticModel& proto);

struct FitResult {
  LogisticModel model;
  // train_accuracy, log_loss (NaN for FitStream / FitFromStatistics / FitSharded), samples,
  // seconds; for MAXIMUM_LIKELIHOOD also iterations, gradient_norm, converged, solver_message.
  v1::FitReport report;
};

struct PredictResult {
  Tensor probabilities;         // [M, K], rows sum to 1.
  std::vector<int64_t> labels;  // [M] argmax.
};

// One FitStream chunk: features [rows, d] and rows labels.
struct FitChunk {
  Tensor features;
  std::vector<int64_t> labels;
};

class LogisticRegressionClient {
 public:
  explicit LogisticRegressionClient(std::shared_ptr<grpc::Channel> channel);

  // Fits with the options set in `options` (num_classes, covariance, ridge, solver, l2,
  // max_iterations, gradient_tolerance, model_name); its features and labels are replaced.
  absl::StatusOr<FitResult> Fit(const Tensor& features, const std::vector<int64_t>& labels,
                                const v1::FitRequest& options = {}, const CallOptions& call = {});
  // The full request.
  absl::StatusOr<FitResult> Fit(const v1::FitRequest& request, const CallOptions& call = {});

  // FitStream: `next` fills the next chunk and returns true, or returns false at the end. The
  // options (features and labels ignored) go in the first message. Only one chunk is in memory
  // on either side at a time. An error of the server ends the stream early (that status is
  // returned); an error of `next` cannot be expressed: stop the stream by returning false and
  // report it yourself.
  using ChunkSource = std::function<bool(FitChunk*)>;
  absl::StatusOr<FitResult> FitStream(const ChunkSource& next, const v1::FitRequest& options = {},
                                      const CallOptions& call = {});
  // FitStream over the rows of an in-memory data set, `rows_per_chunk` (> 0) at a time.
  // INVALID_ARGUMENT (locally) for rows_per_chunk <= 0 or features not of rank 2.
  absl::StatusOr<FitResult> FitStream(const Tensor& features, const std::vector<int64_t>& labels,
                                      int64_t rows_per_chunk, const v1::FitRequest& options = {},
                                      const CallOptions& call = {});

  // The sufficient statistics of one shard; num_classes 0 infers K from the labels.
  absl::StatusOr<v1::Statistics> ComputeStatistics(const Tensor& features, const std::vector<int64_t>& labels,
                                                   int64_t num_classes = 0, const CallOptions& call = {});
  // The fit of the merged statistics with the options set in `options` (num_classes,
  // covariance, ridge, model_name); its statistics are replaced.
  absl::StatusOr<FitResult> FitFromStatistics(const std::vector<v1::Statistics>& statistics,
                                              const v1::FitFromStatisticsRequest& options = {},
                                              const CallOptions& call = {});

  // The sharded fit: the rows are split into `num_shards` contiguous shards (1 <= num_shards
  // <= N), ComputeStatistics runs on every shard concurrently over this client's channel (with
  // round_robin over several replicas, consecutive calls go to different replicas), and one
  // FitFromStatistics merges them. The same model as Fit on all the data (up to rounding).
  // `call.timeout` applies to each call. The first failing shard's status is returned.
  absl::StatusOr<FitResult> FitSharded(const Tensor& features, const std::vector<int64_t>& labels, int num_shards,
                                       const v1::FitFromStatisticsRequest& options = {},
                                       const CallOptions& call = {});

  // Predictions of the model stored under `model_name`, or of an inline model.
  absl::StatusOr<PredictResult> Predict(const Tensor& features, const std::string& model_name,
                                        const CallOptions& call = {});
  absl::StatusOr<PredictResult> Predict(const Tensor& features, const LogisticModel& model,
                                        const CallOptions& call = {});
  // The full request.
  absl::StatusOr<PredictResult> Predict(const v1::PredictRequest& request, const CallOptions& call = {});

 private:
  std::unique_ptr<v1::LogisticRegression::Stub> stub_;
};

}  // namespace client
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_LOGISTIC_REGRESSION_H_
