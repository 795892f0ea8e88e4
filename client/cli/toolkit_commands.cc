#include "client/cli/toolkit_commands.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli/flag_values.h"
#include "client/cli/npy.h"
#include "client/cli/output.h"
#include "client/cli/tensor_text.h"
#include "client/cli/usage_error.h"
#include "primserve/client/toolkit.h"

namespace primserve {
namespace cli {
absl::StatusOr<v1::InitDistribution> ParseDistribution(absl::string_view text, absl::string_view flag) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "normal") return v1::INIT_DISTRIBUTION_NORMAL;
  if (lower == "uniform") return v1::INIT_DISTRIBUTION_UNIFORM;
  if (lower == "truncated_normal") return v1::INIT_DISTRIBUTION_TRUNCATED_NORMAL;
  return UsageError(absl::StrCat("--", flag, "=", text, ": expected normal, uniform or truncated_normal"));
}

absl::StatusOr<v1::InitScheme> ParseScheme(absl::string_view text, absl::string_view flag) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "lecun") return v1::INIT_SCHEME_LECUN;
  if (lower == "he") return v1::INIT_SCHEME_HE;
  if (lower == "xavier") return v1::INIT_SCHEME_XAVIER;
  if (lower == "stddev") return v1::INIT_SCHEME_STDDEV;
  return UsageError(absl::StrCat("--", flag, "=", text, ": expected lecun, he, xavier or stddev"));
}

absl::StatusOr<v1::ChildTuningMode> ParseChildTuningMode(absl::string_view text, absl::string_view flag) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "task_free") return v1::CHILD_TUNING_MODE_TASK_FREE;
  if (lower == "task_driven") return v1::CHILD_TUNING_MODE_TASK_DRIVEN;
  return UsageError(absl::StrCat("--", flag, "=", text, ": expected task_free or task_driven"));
}

absl::StatusOr<v1::EmbeddingDimensionRequest> BuildEmbeddingDimRequest(const EmbeddingDimArgs& args) {
  if (!args.vocab_size.has_value()) {
    return UsageError("embedding-dim needs --vocab_size=N (the vocabulary size or sequence length, >= 2)");
  }
  v1::EmbeddingDimensionRequest request;
  request.set_vocab_size(*args.vocab_size);
  if (absl::Status positive = CheckPositive("coefficient", args.coefficient); !positive.ok()) return positive;
  request.set_coefficient(args.coefficient);
  return request;
}

absl::Status RunEmbeddingDim(const EmbeddingDimArgs& args, const Connection& connection, std::ostream& out) {
  absl::StatusOr<v1::EmbeddingDimensionRequest> request = BuildEmbeddingDimRequest(args);
  if (!request.ok()) return request.status();
  client::ToolkitClient toolkit(client::CreateChannel(connection.channel));
  absl::StatusOr<v1::EmbeddingDimensionResponse> result =
      toolkit.EmbeddingDimension(request->vocab_size(), request->coefficient(), connection.call);
  if (!result.ok()) return result.status();
  out << "bound: " << FormatReal(result->bound()) << "\n";
  out << "dimension: " << result->dimension() << "\n";
  return absl::OkStatus();
}

absl::StatusOr<v1::InitializeParametersRequest> BuildInitRequest(const InitArgs& args) {
  if (!args.shape.has_value()) {
    return UsageError("init needs --shape=D0,D1,... (rank 1 to 5; [out, in, *kernel] for the fans)");
  }
  v1::InitializeParametersRequest request;
  absl::StatusOr<std::vector<int64_t>> shape = ParseIntList("shape", *args.shape);
  if (!shape.ok()) return shape.status();
  request.mutable_shape()->Add(shape->begin(), shape->end());
  absl::StatusOr<v1::InitDistribution> distribution = ParseDistribution(args.distribution, "distribution");
  if (!distribution.ok()) return distribution.status();
  request.set_distribution(*distribution);
  // --stddev alone means --scheme=stddev; with another scheme it would be ignored, so refuse it.
  absl::StatusOr<v1::InitScheme> scheme =
      ParseScheme(args.scheme.value_or(args.stddev.has_value() ? "stddev" : "lecun"), "scheme");
  if (!scheme.ok()) return scheme.status();
  if (*scheme == v1::INIT_SCHEME_STDDEV && !args.stddev.has_value()) {
    return UsageError("--scheme=stddev needs --stddev=S");
  }
  if (*scheme != v1::INIT_SCHEME_STDDEV && args.stddev.has_value()) {
    return UsageError(absl::StrCat("--stddev only applies to --scheme=stddev, not --scheme=", *args.scheme));
  }
  request.set_scheme(*scheme);
  request.set_stddev(args.stddev.value_or(0));
  request.set_fan_in(args.fan_in);
  request.set_fan_out(args.fan_out);
  request.set_seed(args.seed);
  return request;
}

absl::Status RunInit(const InitArgs& args, const Connection& connection, std::ostream& out) {
  absl::StatusOr<v1::InitializeParametersRequest> request = BuildInitRequest(args);
  if (!request.ok()) return request.status();
  double elements = 1;  // In double: only the magnitude matters, and absurd flags must not overflow.
  for (int64_t extent : request->shape()) elements *= static_cast<double>(extent);
  if (absl::Status printable = CheckPrintable(elements, args.output); !printable.ok()) return printable;
  client::ToolkitClient toolkit(client::CreateChannel(connection.channel));
  absl::StatusOr<client::InitializeResult> result = toolkit.InitializeParameters(*request, connection.call);
  if (!result.ok()) return result.status();
  out << "stddev: " << FormatReal(result->stddev) << "\n";
  out << "fan_in: " << result->fan_in << "\n";
  out << "fan_out: " << result->fan_out << "\n";
  return EmitTensor(result->parameters, args.output, out);
}

absl::StatusOr<v1::ChildTuningMaskRequest> BuildChildTuningOptions(const ChildTuningArgs& args) {
  if (args.gradient.empty()) return UsageError("childtuning needs --gradient=G.npy (float32 or float64)");
  if (!args.keep_probability.has_value()) {
    return UsageError("childtuning needs --keep_probability=P (the kept fraction, in (0, 1])");
  }
  v1::ChildTuningMaskRequest request;
  absl::StatusOr<v1::ChildTuningMode> mode =
      ParseChildTuningMode(args.mode.value_or(args.fisher.empty() ? "task_free" : "task_driven"), "mode");
  if (!mode.ok()) return mode.status();
  if (*mode == v1::CHILD_TUNING_MODE_TASK_FREE && !args.fisher.empty()) {
    return UsageError("--fisher only applies to --mode=task_driven");
  }
  if (*mode == v1::CHILD_TUNING_MODE_TASK_DRIVEN && args.fisher.empty()) {
    return UsageError("--mode=task_driven needs --fisher=F.npy (the gradient's shape)");
  }
  if (*mode == v1::CHILD_TUNING_MODE_TASK_DRIVEN && args.seed.has_value()) {
    return UsageError("--seed only applies to --mode=task_free (a task-driven mask is not random)");
  }
  request.set_mode(*mode);
  request.set_keep_probability(*args.keep_probability);
  request.set_rescale(args.rescale);
  request.set_seed(args.seed.value_or(0));
  return request;
}

absl::Status RunChildTuning(const ChildTuningArgs& args, const Connection& connection, std::ostream& out) {
  absl::StatusOr<v1::ChildTuningMaskRequest> request = BuildChildTuningOptions(args);
  if (!request.ok()) return request.status();
  absl::StatusOr<client::Tensor> gradient = ReadNpy(args.gradient);
  if (!gradient.ok()) return gradient.status();
  if (!args.fisher.empty()) {
    absl::StatusOr<client::Tensor> fisher = ReadNpy(args.fisher);
    if (!fisher.ok()) return fisher.status();
    *request->mutable_fisher() = client::ToProto(*fisher);
  }
  // The result has the gradient's shape: refuse before calling rather than after computing.
  absl::Status printable = CheckPrintable(static_cast<double>(gradient->values.size()), args.output);
  if (!printable.ok()) return printable;
  client::ToolkitClient toolkit(client::CreateChannel(connection.channel));
  absl::StatusOr<client::ChildTuningResult> result = toolkit.ChildTuningMask(*gradient, *request, connection.call);
  if (!result.ok()) return result.status();
  out << "kept_fraction: " << FormatReal(result->kept_fraction) << "\n";
  return EmitTensor(result->gradient, args.output, out);
}

}  // namespace cli
}  // namespace primserve
