#include "server/logistic_handlers.h"

#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/number_format.h"
#include "core/status_macros.h"
#include "server/log.h"
#include "server/tensor_conversion.h"

namespace primserve {
namespace {

constexpr int64_t kMaxFitIterations = 10000;  // FitRequest.max_iterations (CheckSolverOptions).

enum class Solver { kAnalytic, kMaxLikelihood };

absl::Status UnknownEnum(absl::string_view field, int value) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": unknown enum value ", value));
}

absl::Status Missing(absl::string_view field) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": required, got no tensor"));
}

// The same status with `context` appended to its message (which keeps naming the field first).
absl::Status WithContext(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(status.message(), " (", context, ")"));
}

absl::StatusOr<Solver> SolverFromProto(v1::Solver solver, absl::string_view field) {
  switch (solver) {
    case v1::SOLVER_UNSPECIFIED:
    case v1::SOLVER_ANALYTIC: return Solver::kAnalytic;
    case v1::SOLVER_MAXIMUM_LIKELIHOOD: return Solver::kMaxLikelihood;
    default: return UnknownEnum(field, solver);
  }
}

absl::Status OnlyFor(absl::string_view field, absl::string_view solver, double value) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": applies to ", solver, " only, got ", NumberToString(value), " with the other solver"));
}

// Options that belong to one solver must be left at 0 with the other, rather than silently ignored.
absl::Status CheckSolverOptions(const v1::FitRequest& request, Solver solver) {
  if (solver == Solver::kAnalytic) {
    if (request.l2() != 0) return OnlyFor("l2", "SOLVER_MAXIMUM_LIKELIHOOD", request.l2());
    if (request.max_iterations() != 0) {
      return OnlyFor("max_iterations", "SOLVER_MAXIMUM_LIKELIHOOD", static_cast<double>(request.max_iterations()));
    }
    if (request.gradient_tolerance() != 0) {
      return OnlyFor("gradient_tolerance", "SOLVER_MAXIMUM_LIKELIHOOD", request.gradient_tolerance());
    }
    return absl::OkStatus();
  }
  if (request.ridge() != 0) return OnlyFor("ridge", "SOLVER_ANALYTIC", request.ridge());
  if (request.covariance() == v1::COVARIANCE_TOTAL) {
    return absl::InvalidArgumentError("covariance: applies to SOLVER_ANALYTIC only, got COVARIANCE_TOTAL with "
                                      "SOLVER_MAXIMUM_LIKELIHOOD");
  }
  // A bound on the work one call may ask for: without it, max_iterations = 2^31 with a zero
  // gradient tolerance held a worker until the deadline, or for hours without one (the fuzzer
  // found it). 10,000 is 20 times the default and 100 times scikit-learn's.
  if (request.max_iterations() < 0 || request.max_iterations() > kMaxFitIterations) {
    return absl::InvalidArgumentError(absl::StrCat("max_iterations: expected a value in [0, ", kMaxFitIterations,
                                                   "] (0 means 500), got ", request.max_iterations()));
  }
  return absl::OkStatus();
}

// ridge is checked by FitAnalytic too; FitStream checks it before reading any data so that a
// bad option does not cost a pass over the stream.
absl::Status CheckRidge(double ridge) {
  if (std::isfinite(ridge) && ridge >= 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("ridge: expected a finite value >= 0, got ", NumberToString(ridge)));
}

absl::Status CheckModelName(const std::string& name, const ModelStore* store) {
  if (name.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(ModelStore::ValidateName(name, "model_name"));
  if (store == nullptr) return absl::FailedPreconditionError("model_name: this server has no model store");
  return absl::OkStatus();
}

// The statistics (d x d scatter and two K x d matrices of doubles) and the model (K x d floats)
// must each fit in one message: checked before the core allocates them, so a huge d or K
// (e.g. a label of 10^12 with num_classes inferred) is RESOURCE_EXHAUSTED, not an allocation.
absl::Status CheckStatisticsSize(const Limits& limits, double num_classes, double dim, absl::string_view field) {
  const double max_bytes = static_cast<double>(limits.max_elements) * sizeof(float);
  const double statistics_bytes = 8.0 * (dim * dim + 2.0 * num_classes * dim + num_classes);
  if (statistics_bytes <= max_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrFormat(
      "%s: %.0f classes x %.0f features need %.4g bytes of statistics (a d x d scatter and K x d sums in double), "
      "more than the %.0f-byte message limit",
      field, num_classes, dim, statistics_bytes, max_bytes));
}

// Names what makes the statistics too large: d (features.shape) when the d x d scatter alone
// does not fit, otherwise K: num_classes, or the largest label when K is inferred from it.
absl::Status CheckFeaturesSize(const Limits& limits, const Tensor& features, int64_t num_classes,
                               absl::Span<const int64_t> labels) {
  if (features.rank() != 2) return absl::OkStatus();  // The core names the shape problem.
  const double dim = static_cast<double>(features.dim(1));
  const double max_bytes = static_cast<double>(limits.max_elements) * sizeof(float);
  if (8.0 * dim * dim > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "features.shape: %.0f features need a %.0f x %.0f scatter matrix in double, %.4g bytes, more than the "
        "%.0f-byte message limit",
        dim, dim, dim, 8.0 * dim * dim, max_bytes));
  }
  // K as the core will infer it (num_classes, or the largest label + 1), for the size check only;
  // label validity is the core's to judge. One scan finds the largest label and where it is.
  double classes = static_cast<double>(num_classes);
  std::string field = "num_classes";
  if (num_classes <= 0) {
    classes = 0;
    if (!labels.empty()) {
      const auto largest = std::max_element(labels.begin(), labels.end());
      classes = static_cast<double>(*largest) + 1;
      field = absl::StrCat("labels[", largest - labels.begin(), "] (num_classes inferred as the largest label + 1)");
    }
  }
  return CheckStatisticsSize(limits, classes, dim, field);
}

absl::Span<const int64_t> LabelsOf(const google::protobuf::RepeatedField<int64_t>& labels) {
  return absl::Span<const int64_t>(labels.data(), static_cast<size_t>(labels.size()));
}

double Seconds(absl::Time start) { return absl::ToDoubleSeconds(absl::Now() - start); }

void FillReport(double samples, double seconds, v1::FitReport* report) {
  report->set_samples(samples);
  report->set_seconds(seconds);
  report->set_converged(true);
  // Accuracy and log-loss need the data again: NaN unless the caller evaluates.
  report->set_train_accuracy(std::numeric_limits<double>::quiet_NaN());
  report->set_log_loss(std::numeric_limits<double>::quiet_NaN());
}

absl::Status Store(ModelStore* store, const std::string& name, const LogisticModel& model) {
  if (name.empty()) return absl::OkStatus();
  v1::StoredModel stored;
  stored.set_kind(v1::MODEL_KIND_LOGISTIC);
  LogisticModelToProto(model, stored.mutable_logistic());
  return store->Put(name, std::move(stored), "model_name");
}

// An empty statistic of `num_classes` classes: merging it pads a smaller K with empty classes.
SufficientStatistics EmptyStatistics(int64_t num_classes, int64_t dim) {
  SufficientStatistics empty;
  empty.num_classes = num_classes;
  empty.dim = dim;
  empty.counts.assign(static_cast<size_t>(num_classes), 0);
  empty.class_shifts.assign(static_cast<size_t>(num_classes * dim), 0.0);
  empty.class_sums.assign(static_cast<size_t>(num_classes * dim), 0.0);
  empty.scatter.assign(static_cast<size_t>(dim * dim), 0.0);
  return empty;
}

// The analytic fit of accumulated statistics, stored under `model_name` when set. The report's
// seconds are `earlier` (compute time already spent on the statistics) plus the solve.
absl::Status FitAndStore(const Limits& limits, SufficientStatistics statistics, int64_t num_classes,
                         const AnalyticFitOptions& options, ModelStore* store, const std::string& model_name,
                         absl::Duration earlier, v1::LogisticModel* model_proto, v1::FitReport* report) {
  const absl::Time start = absl::Now();
  if (num_classes > statistics.num_classes) {
    RETURN_IF_ERROR(CheckStatisticsSize(limits, static_cast<double>(num_classes),
                                        static_cast<double>(statistics.dim), "num_classes"));
    RETURN_IF_ERROR(statistics.Merge(EmptyStatistics(num_classes, statistics.dim)));
  }
  ASSIGN_OR_RETURN(const LogisticModel model, FitAnalytic(statistics, options));
  FillReport(static_cast<double>(statistics.num_samples()), absl::ToDoubleSeconds(earlier) + Seconds(start), report);
  RETURN_IF_ERROR(Store(store, model_name, model));
  LogisticModelToProto(model, model_proto);
  return absl::OkStatus();
}

// Returns the freed memory of every malloc arena to the system, after every kTrimBytes of stream
// data (so tiny messages do not pay for it). Each message passes through buffers allocated on
// several threads (gRPC's pollers, this handler), and glibc keeps freed message-sized buffers in
// each thread's arena: without this the peak resident memory of a stream of 25 MB messages
// reached 273 MiB after 10M rows of d = 32, with it 216 MiB (steady state ~4 messages' worth).
constexpr size_t kTrimBytes = size_t{16} << 20;

void TrimFreedMemory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

// Fields other than features and labels set in a later FitStream message, or "".
std::string LaterMessageOptions(const v1::FitRequest& message) {
  std::vector<std::string> set;
  if (message.num_classes() != 0) set.push_back("num_classes");
  if (message.covariance() != 0) set.push_back("covariance");
  if (message.ridge() != 0) set.push_back("ridge");
  if (message.solver() != 0) set.push_back("solver");
  if (message.l2() != 0) set.push_back("l2");
  if (message.max_iterations() != 0) set.push_back("max_iterations");
  if (!message.model_name().empty()) set.push_back("model_name");
  if (message.gradient_tolerance() != 0) set.push_back("gradient_tolerance");
  std::string names;
  for (const std::string& name : set) absl::StrAppend(&names, names.empty() ? "" : ", ", name);
  return names;
}

}  // namespace

absl::StatusOr<Covariance> CovarianceFromProto(v1::Covariance covariance, absl::string_view field) {
  switch (covariance) {
    case v1::COVARIANCE_UNSPECIFIED:
    case v1::COVARIANCE_POOLED_WITHIN: return Covariance::kPooledWithin;
    case v1::COVARIANCE_TOTAL: return Covariance::kTotal;
    default: return UnknownEnum(field, covariance);
  }
}

absl::Status HandleFit(const Limits& limits, ModelStore* store, const v1::FitRequest& request,
                       v1::FitResponse* response, std::function<bool()> cancelled) {
  if (!request.has_features()) return Missing("features");
  ASSIGN_OR_RETURN(const Solver solver, SolverFromProto(request.solver(), "solver"));
  AnalyticFitOptions analytic;
  ASSIGN_OR_RETURN(analytic.covariance, CovarianceFromProto(request.covariance(), "covariance"));
  analytic.ridge = request.ridge();
  RETURN_IF_ERROR(CheckSolverOptions(request, solver));
  RETURN_IF_ERROR(CheckModelName(request.model_name(), store));
  ASSIGN_OR_RETURN(const Tensor features, TensorFromProto(request.features(), "features", limits.max_elements));
  const absl::Span<const int64_t> labels = LabelsOf(request.labels());
  RETURN_IF_ERROR(CheckFeaturesSize(limits, features, request.num_classes(), labels));

  const absl::Time start = absl::Now();
  LogisticModel model;
  v1::FitReport* report = response->mutable_report();
  if (solver == Solver::kAnalytic) {
    ASSIGN_OR_RETURN(const SufficientStatistics statistics,
                     ComputeStatistics(features, labels, request.num_classes()));
    ASSIGN_OR_RETURN(model, FitAnalytic(statistics, analytic));
    FillReport(static_cast<double>(statistics.num_samples()), Seconds(start), report);
  } else {
    MaxLikelihoodOptions options;
    options.l2 = request.l2();
    options.max_iterations = static_cast<int>(request.max_iterations());
    options.gradient_tolerance = request.gradient_tolerance();
    options.cancelled = std::move(cancelled);
    ASSIGN_OR_RETURN(MaxLikelihoodResult result,
                     FitMaxLikelihood(features, labels, request.num_classes(), options));
    model = std::move(result.model);
    FillReport(static_cast<double>(labels.size()), Seconds(start), report);
    report->set_iterations(result.iterations);
    report->set_gradient_norm(result.gradient_norm);
    report->set_converged(result.converged);
    report->set_solver_message(result.message);
  }
  ASSIGN_OR_RETURN(const FitQuality quality, Evaluate(model, features, labels));
  report->set_train_accuracy(quality.accuracy);
  report->set_log_loss(quality.log_loss);
  RETURN_IF_ERROR(Store(store, request.model_name(), model));
  LogisticModelToProto(model, response->mutable_model());
  return absl::OkStatus();
}

absl::Status HandleFitStream(const Limits& limits, ModelStore* store, const FitMessageReader& read,
                             v1::FitResponse* response, std::function<bool()> cancelled) {
  v1::FitRequest message;  // Reused: one message in memory at a time.
  v1::FitRequest options;  // The first message without its data.
  AnalyticFitOptions analytic;
  SufficientStatistics statistics;
  int64_t count = 0;
  // Compute time only: the report does not count the time spent waiting for the client.
  absl::Duration busy;
  size_t untrimmed_bytes = 0;
  while (true) {
    ASSIGN_OR_RETURN(const bool more, read(&message));
    if (!more) break;
    const absl::Time start = absl::Now();
    ++count;
    const std::string where = absl::StrCat("FitStream message ", count);
    if (cancelled && cancelled()) {
      return absl::CancelledError(absl::StrCat("FitStream: the call was cancelled or its deadline passed at message ",
                                               count, "; nothing was stored"));
    }
    if (count == 1) {
      ASSIGN_OR_RETURN(const Solver solver, SolverFromProto(message.solver(), "solver"));
      if (solver != Solver::kAnalytic) {
        return absl::InvalidArgumentError(
            "solver: SOLVER_MAXIMUM_LIKELIHOOD is not streamed (each iteration needs every sample); use Fit");
      }
      ASSIGN_OR_RETURN(analytic.covariance, CovarianceFromProto(message.covariance(), "covariance"));
      analytic.ridge = message.ridge();
      RETURN_IF_ERROR(CheckSolverOptions(message, solver));
      RETURN_IF_ERROR(CheckRidge(message.ridge()));
      RETURN_IF_ERROR(CheckModelName(message.model_name(), store));
      if (message.num_classes() < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("num_classes: expected 0 (infer) or >= 2, got ", message.num_classes()));
      }
      options = message;
      options.clear_features();
      options.clear_labels();
    } else if (const std::string set = LaterMessageOptions(message); !set.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(set, ": options go in the first FitStream message only; later "
                                                     "messages carry features and labels (", where, ")"));
    }
    if (!message.has_features() && message.labels_size() == 0) continue;  // Options only.
    if (!message.has_features()) return WithContext(Missing("features"), where);
    absl::StatusOr<Tensor> features = TensorFromProto(message.features(), "features", limits.max_elements);
    if (!features.ok()) return WithContext(features.status(), where);
    const absl::Span<const int64_t> labels = LabelsOf(message.labels());
    RETURN_IF_ERROR(WithContext(CheckFeaturesSize(limits, *features, options.num_classes(), labels), where));
    RETURN_IF_ERROR(WithContext(AccumulateStatistics(*features, labels, options.num_classes(), &statistics), where));
    busy += absl::Now() - start;
    untrimmed_bytes += message.features().data().size() + 4 * message.features().values_size();
    if (untrimmed_bytes >= kTrimBytes) {
      TrimFreedMemory();
      untrimmed_bytes = 0;
    }
  }
  if (count == 0) {
    return absl::InvalidArgumentError("FitStream: expected at least one message (the first carries the options), "
                                      "got an empty stream");
  }
  Log(LogLevel::kDebug, "FitStream: ", count, " messages, ", statistics.num_samples(), " samples");
  return FitAndStore(limits, std::move(statistics), 0, analytic, store, options.model_name(), busy,
                     response->mutable_model(), response->mutable_report());
}

absl::Status HandleComputeStatistics(const Limits& limits, const v1::ComputeStatisticsRequest& request,
                                     v1::ComputeStatisticsResponse* response) {
  if (!request.has_features()) return Missing("features");
  ASSIGN_OR_RETURN(const Tensor features, TensorFromProto(request.features(), "features", limits.max_elements));
  const absl::Span<const int64_t> labels = LabelsOf(request.labels());
  RETURN_IF_ERROR(CheckFeaturesSize(limits, features, request.num_classes(), labels));
  ASSIGN_OR_RETURN(const SufficientStatistics statistics, ComputeStatistics(features, labels, request.num_classes()));
  // A debug line per shard shows which replica computed what (the sharded fit spreads them).
  Log(LogLevel::kDebug, "ComputeStatistics: ", statistics.num_samples(), " samples, dim ", statistics.dim, ", ",
      statistics.num_classes, " classes");
  StatisticsToProto(statistics, response->mutable_statistics());
  return absl::OkStatus();
}

absl::Status HandleFitFromStatistics(const Limits& limits, ModelStore* store,
                                     const v1::FitFromStatisticsRequest& request,
                                     v1::FitFromStatisticsResponse* response) {
  if (request.statistics_size() == 0) {
    return absl::InvalidArgumentError("statistics: expected at least one Statistics message, got none");
  }
  AnalyticFitOptions analytic;
  ASSIGN_OR_RETURN(analytic.covariance, CovarianceFromProto(request.covariance(), "covariance"));
  analytic.ridge = request.ridge();
  RETURN_IF_ERROR(CheckModelName(request.model_name(), store));
  const absl::Time start = absl::Now();
  SufficientStatistics merged;
  for (int i = 0; i < request.statistics_size(); ++i) {
    const std::string field = absl::StrCat("statistics[", i, "]");
    ASSIGN_OR_RETURN(const SufficientStatistics shard, StatisticsFromProto(request.statistics(i), field));
    RETURN_IF_ERROR(WithContext(merged.Merge(shard), field));
  }
  if (request.num_classes() != 0 && request.num_classes() < std::max<int64_t>(merged.num_classes, 2)) {
    return absl::InvalidArgumentError(absl::StrCat("num_classes: expected 0 (the statistics' ", merged.num_classes,
                                                   ") or >= ", std::max<int64_t>(merged.num_classes, 2), ", got ",
                                                   request.num_classes()));
  }
  return FitAndStore(limits, std::move(merged), request.num_classes(), analytic, store, request.model_name(),
                     absl::Now() - start, response->mutable_model(), response->mutable_report());
}

absl::Status HandlePredict(const Limits& limits, const ModelStore* store, const v1::PredictRequest& request,
                           v1::PredictResponse* response) {
  const bool by_name = !request.model_name().empty();
  if (by_name == request.has_model()) {
    return absl::InvalidArgumentError(absl::StrCat("model_name, model: expected exactly one of a stored model's name "
                                                   "or an inline model, got ", by_name ? "both" : "neither"));
  }
  if (!request.has_features()) return Missing("features");
  LogisticModel model;
  if (by_name) {
    if (store == nullptr) return absl::FailedPreconditionError("model_name: this server has no model store");
    ASSIGN_OR_RETURN(const ModelStore::EntryPtr entry, store->Get(request.model_name(), "model_name"));
    if (entry->model.kind() != v1::MODEL_KIND_LOGISTIC) {
      return absl::FailedPreconditionError(absl::StrCat("model_name: \"", request.model_name(), "\" is a ",
                                                        v1::ModelKind_Name(entry->model.kind()),
                                                        " model, not a logistic regression (MODEL_KIND_LOGISTIC)"));
    }
    absl::StatusOr<LogisticModel> stored =
        LogisticModelFromProto(entry->model.logistic(), absl::StrCat("stored model \"", entry->name, "\""), limits);
    if (!stored.ok()) {
      return absl::FailedPreconditionError(absl::StrCat("model_name: the stored model is invalid: ",
                                                        stored.status().message()));
    }
    model = *std::move(stored);
  } else {
    ASSIGN_OR_RETURN(model, LogisticModelFromProto(request.model(), "model", limits));
  }
  ASSIGN_OR_RETURN(const Tensor features, TensorFromProto(request.features(), "features", limits.max_elements));
  if (features.rank() == 2) {
    // The response carries M x K float probabilities and M varint labels (1 byte each below 128
    // classes, 2 below 16384, ...): both must fit the message, as float32 elements' bytes.
    const double rows = static_cast<double>(features.dim(0));
    int label_bytes = 1;
    for (uint64_t top = static_cast<uint64_t>(std::max<int64_t>(model.num_classes - 1, 0)); top >= 128; top >>= 7) {
      ++label_bytes;
    }
    const double bytes = 4.0 * rows * static_cast<double>(model.num_classes) + rows * label_bytes;
    if (bytes > 4.0 * static_cast<double>(limits.max_elements)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "features.shape: ", features.dim(0), " rows x ", model.num_classes, " classes of probabilities plus ",
          features.dim(0), " labels take ", NumberToString(bytes), " bytes, above the ", 4 * limits.max_elements,
          "-byte limit of one response"));
    }
  }
  ASSIGN_OR_RETURN(const Prediction prediction, Predict(model, features));
  TensorToProto(prediction.probabilities, response->mutable_probabilities());
  response->mutable_labels()->Add(prediction.labels.begin(), prediction.labels.end());
  return absl::OkStatus();
}

}  // namespace primserve
