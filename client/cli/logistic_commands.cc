#include "client/cli/logistic_commands.h"

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/cli/file_io.h"
#include "client/cli/npy.h"
#include "client/cli/output.h"
#include "client/cli/table_files.h"
#include "client/cli/tensor_text.h"
#include "client/cli/usage_error.h"
#include "primserve/client/logistic_regression.h"
#include "primserve/client/models.h"

namespace primserve {
namespace cli {
namespace {

template <typename Enum>
absl::StatusOr<Enum> ParseName(absl::string_view flag, absl::string_view text,
                               std::vector<std::pair<absl::string_view, Enum>> names) {
  const std::string lower = absl::AsciiStrToLower(text);
  std::vector<absl::string_view> choices;
  for (const auto& [name, value] : names) {
    if (lower == name) return value;
    choices.push_back(name);
  }
  return UsageError(absl::StrCat("--", flag, "=", text, ": expected ", absl::StrJoin(choices, " or ")));
}

std::string Real(double value) { return absl::StrFormat("%.9g", value); }

// Writes `tensor` to `output` (.npy) when set, otherwise prints it after "NAME:".
absl::Status EmitTensor(absl::string_view name, const client::Tensor& tensor, const std::string& output,
                        std::ostream& out) {
  if (!output.empty()) {
    if (absl::Status written = WriteNpy(output, tensor); !written.ok()) return written;
    out << "wrote " << output << " (" << name << ", shape " << ShapeText(tensor.shape) << ", float32)\n";
    return absl::OkStatus();
  }
  out << name << ":\n" << FormatTensorText(tensor);
  return absl::OkStatus();
}

absl::Status EmitModel(const client::LogisticModel& model, const std::string& output, std::ostream& out) {
  if (output.empty() && static_cast<int64_t>(model.weights.values.size()) > kMaxPrintElements) {
    return UsageError(absl::StrCat("the weights have ", model.weights.values.size(), " elements, more than the ",
                                   kMaxPrintElements, " printed as text: pass --output=W.npy"));
  }
  if (absl::Status weights = EmitTensor("weights", model.weights, output, out); !weights.ok()) return weights;
  out << "bias:";
  for (const float b : model.bias.values) out << " " << Real(b);
  out << "\npriors:";
  for (const double p : model.priors) out << " " << Real(p);
  out << "\n";
  return absl::OkStatus();
}

void PrintReport(const v1::FitReport& report, bool max_likelihood, std::ostream& out) {
  out << "samples: " << Real(report.samples()) << "\n"
      << "train_accuracy: " << Real(report.train_accuracy()) << "\n"
      << "log_loss: " << Real(report.log_loss()) << "\n"
      << "seconds: " << Real(report.seconds()) << "\n";
  if (max_likelihood) {
    out << "iterations: " << Real(report.iterations()) << "\n"
        << "gradient_norm: " << Real(report.gradient_norm()) << "\n"
        << "converged: " << (report.converged() ? "true" : "false") << "\n"
        << "solver_message: " << report.solver_message() << "\n";
  }
}

std::string KindName(v1::ModelKind kind) {
  switch (kind) {
    case v1::MODEL_KIND_LOGISTIC: return "logistic";
    case v1::MODEL_KIND_DISCRIMINATOR: return "discriminator";
    default: return absl::StrCat("kind_", static_cast<int>(kind));
  }
}

std::string InfoLine(const v1::ModelInfo& info) {
  // A logistic model has classes and features, a discriminator its per-sample input shape.
  const std::string what =
      info.kind() == v1::MODEL_KIND_DISCRIMINATOR
          ? absl::StrCat("input_shape=[", absl::StrJoin(info.input_shape(), ", "), "]")
          : absl::StrCat("classes=", info.num_classes(), " features=", info.num_features());
  // A time beyond int64 microseconds (a damaged or hand-made file) is shown as such, not cast.
  const double seconds = info.created_unix_seconds();
  const std::string created =
      std::isfinite(seconds) && std::abs(seconds) < 1e15
          ? absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMicros(static_cast<int64_t>(seconds * 1e6)),
                             absl::UTCTimeZone())
          : absl::StrCat("(out of range: ", seconds, " s)");
  return absl::StrCat(info.name(), "  ", KindName(info.kind()), "  ", what, "  bytes=", info.file_bytes(),
                      "  created=", created);
}

}  // namespace

absl::StatusOr<v1::FitRequest> BuildFitOptions(const FitArgs& args) {
  if (args.features.empty() || args.labels.empty()) {
    return UsageError("fit needs --features=X.npy|X.csv ([samples, features]) and --labels=y.npy|y.txt (integers)");
  }
  v1::FitRequest options;
  options.set_num_classes(args.num_classes);
  absl::StatusOr<v1::Covariance> covariance = ParseName<v1::Covariance>(
      "covariance", args.covariance,
      {{"pooled_within", v1::COVARIANCE_POOLED_WITHIN}, {"total", v1::COVARIANCE_TOTAL}});
  if (!covariance.ok()) return covariance.status();
  absl::StatusOr<v1::Solver> solver = ParseName<v1::Solver>(
      "solver", args.solver,
      {{"analytic", v1::SOLVER_ANALYTIC}, {"maximum_likelihood", v1::SOLVER_MAXIMUM_LIKELIHOOD}});
  if (!solver.ok()) return solver.status();
  if (args.chunk_rows < 0) return UsageError("--chunk_rows must be >= 0 (0: one Fit call)");
  if (args.chunk_rows > 0 && *solver == v1::SOLVER_MAXIMUM_LIKELIHOOD) {
    return UsageError("--chunk_rows streams the analytic fit; --solver=maximum_likelihood needs every sample at once");
  }
  // The covariance applies to the analytic fit only; leave it unset otherwise (the server
  // rejects options of the other solver).
  if (*solver == v1::SOLVER_ANALYTIC) options.set_covariance(*covariance);
  options.set_ridge(args.ridge);
  options.set_solver(*solver);
  options.set_l2(args.l2);
  options.set_max_iterations(args.max_iterations);
  options.set_gradient_tolerance(args.gradient_tolerance);
  options.set_model_name(args.model_name);
  return options;
}

absl::Status RunFit(const FitArgs& args, const Connection& connection, std::ostream& out) {
  absl::StatusOr<v1::FitRequest> options = BuildFitOptions(args);
  if (!options.ok()) return options.status();
  absl::StatusOr<client::Tensor> features = ReadFeatures(args.features);
  if (!features.ok()) return features.status();
  absl::StatusOr<std::vector<int64_t>> labels = ReadLabels(args.labels);
  if (!labels.ok()) return labels.status();
  if (static_cast<int64_t>(labels->size()) != features->shape[0]) {
    return absl::InvalidArgumentError(absl::StrCat(args.labels, ": ", labels->size(), " labels for ",
                                                   features->shape[0], " rows of ", args.features));
  }
  client::LogisticRegressionClient logistic(client::CreateChannel(connection.channel));
  absl::StatusOr<client::FitResult> fit =
      args.chunk_rows > 0 ? logistic.FitStream(*features, *labels, args.chunk_rows, *options, connection.call)
                          : logistic.Fit(*features, *labels, *options, connection.call);
  if (!fit.ok()) return fit.status();
  PrintReport(fit->report, options->solver() == v1::SOLVER_MAXIMUM_LIKELIHOOD, out);
  if (!args.model_name.empty()) out << "stored: " << args.model_name << "\n";
  return EmitModel(fit->model, args.output, out);
}

absl::Status RunPredict(const PredictArgs& args, const Connection& connection, std::ostream& out) {
  if (args.features.empty() || args.model_name.empty()) {
    return UsageError("predict needs --features=X.npy|X.csv and --model_name=NAME (a stored model)");
  }
  if (absl::Status distinct = CheckDistinctOutputs("output", args.output, "labels_output", args.labels_output);
      !distinct.ok()) {
    return distinct;
  }
  absl::StatusOr<client::Tensor> features = ReadFeatures(args.features);
  if (!features.ok()) return features.status();
  if (args.labels_output.empty() && features->shape[0] > kMaxPrintElements) {
    return UsageError(absl::StrCat(features->shape[0], " labels are more than the ", kMaxPrintElements,
                                   " printed as text: pass --labels_output=FILE"));
  }
  client::LogisticRegressionClient logistic(client::CreateChannel(connection.channel));
  absl::StatusOr<client::PredictResult> prediction = logistic.Predict(*features, args.model_name, connection.call);
  if (!prediction.ok()) return prediction.status();
  if (args.output.empty() && static_cast<int64_t>(prediction->probabilities.values.size()) > kMaxPrintElements) {
    return UsageError(absl::StrCat("the probabilities have ", prediction->probabilities.values.size(),
                                   " elements, more than the ", kMaxPrintElements,
                                   " printed as text: pass --output=P.npy"));
  }
  if (absl::Status emitted = EmitTensor("probabilities", prediction->probabilities, args.output, out);
      !emitted.ok()) {
    return emitted;
  }
  if (args.labels_output.empty()) {
    out << "labels: " << absl::StrJoin(prediction->labels, " ") << "\n";
    return absl::OkStatus();
  }
  if (absl::Status written = WriteFileBytes(args.labels_output, absl::StrCat(absl::StrJoin(prediction->labels, "\n"), "\n"));
      !written.ok()) {
    return written;
  }
  out << "wrote " << args.labels_output << " (" << prediction->labels.size() << " labels)\n";
  return absl::OkStatus();
}

absl::Status CheckModelsArgs(const ModelsArgs& args) {
  if (args.action == "list") {
    if (!args.model_name.empty() || !args.output.empty()) {
      return UsageError("models list takes only --kind=logistic|discriminator");
    }
    return absl::OkStatus();
  }
  if (args.action == "get" || args.action == "delete") {
    if (args.model_name.empty()) return UsageError(absl::StrCat("models ", args.action, " needs --model_name=NAME"));
    if (args.kind.has_value()) return UsageError(absl::StrCat("--kind does not apply to models ", args.action));
    if (args.action == "delete" && !args.output.empty()) return UsageError("--output does not apply to models delete");
    return absl::OkStatus();
  }
  return UsageError(absl::StrCat("models needs an action: list, get or delete",
                                 args.action.empty() ? "" : absl::StrCat(" (got \"", args.action, "\")")));
}

absl::Status RunModels(const ModelsArgs& args, const Connection& connection, std::ostream& out) {
  if (absl::Status valid = CheckModelsArgs(args); !valid.ok()) return valid;
  v1::ModelKind kind = v1::MODEL_KIND_UNSPECIFIED;
  if (args.kind.has_value()) {
    absl::StatusOr<v1::ModelKind> parsed = ParseName<v1::ModelKind>(
        "kind", *args.kind, {{"logistic", v1::MODEL_KIND_LOGISTIC}, {"discriminator", v1::MODEL_KIND_DISCRIMINATOR}});
    if (!parsed.ok()) return parsed.status();
    kind = *parsed;
  }
  client::ModelsClient models(client::CreateChannel(connection.channel));
  if (args.action == "list") {
    absl::StatusOr<v1::ListResponse> list = models.List(kind, connection.call);
    if (!list.ok()) return list.status();
    for (const v1::ModelInfo& info : list->models()) out << InfoLine(info) << "\n";
    for (const v1::UnreadableModel& file : list->unreadable()) {
      out << "unreadable: " << file.file() << ": " << file.reason() << "\n";
    }
    return absl::OkStatus();
  }
  if (args.action == "delete") {
    if (absl::Status deleted = models.Delete(args.model_name, connection.call); !deleted.ok()) return deleted;
    out << "deleted " << args.model_name << "\n";
    return absl::OkStatus();
  }
  absl::StatusOr<v1::GetResponse> got = models.Get(args.model_name, connection.call);
  if (!got.ok()) return got.status();
  out << InfoLine(got->info()) << "\n";
  if (!got->has_logistic()) {
    if (args.output.empty()) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat("--output: \"", args.model_name, "\" is a ",
                                                      KindName(got->info().kind()),
                                                      "; only logistic models have weights to write"));
  }
  absl::StatusOr<client::LogisticModel> model = client::FromProto(got->logistic());
  if (!model.ok()) return model.status();
  return EmitModel(*model, args.output, out);
}

}  // namespace cli
}  // namespace primserve
