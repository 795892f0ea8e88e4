// The primserve-cli Toolkit commands (embedding-dim, init, childtuning), independent of absl
// flags like commands.h: main() fills the argument structs and calls Run*. Each command builds
// its request first (mistakes there are UsageErrors: exit 2), then reads input files, calls the
// server and prints or writes the result (those errors carry the file's or the server's status:
// exit 1).
//
// Example:
//   EmbeddingDimArgs args;
//   args.vocab_size = 100000;
//   absl::Status status = RunEmbeddingDim(args, Connection(), std::cout);
//   // prints "bound: 95.9027..." and "dimension: 96"
#ifndef PRIMSERVE_CLIENT_CLI_TOOLKIT_COMMANDS_H_
#define PRIMSERVE_CLIENT_CLI_TOOLKIT_COMMANDS_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/optional.h"
#include "client/cli/commands.h"
#include "primserve/v1/toolkit.pb.h"

namespace primserve {
namespace cli {

struct EmbeddingDimArgs {
  absl::optional<int64_t> vocab_size;
  double coefficient = 8.33;
};

// UsageError without --vocab_size; its value (>= 2) is the server's to judge.
absl::StatusOr<v1::EmbeddingDimensionRequest> BuildEmbeddingDimRequest(const EmbeddingDimArgs& args);

// Prints "bound: <real>" and "dimension: <integer>".
absl::Status RunEmbeddingDim(const EmbeddingDimArgs& args, const Connection& connection, std::ostream& out);

struct InitArgs {
  absl::optional<std::string> shape;  // Comma-separated extents, required.
  std::string distribution = "normal";
  absl::optional<std::string> scheme;  // Default lecun, or stddev when --stddev is given.
  absl::optional<double> stddev;
  int64_t fan_in = 0;  // 0: inferred from the shape.
  int64_t fan_out = 0;
  uint64_t seed = 0;
  std::string output;  // .npy path; empty: print as text.
};

// UsageError without --shape, for an unknown distribution or scheme, --scheme=stddev without
// --stddev, or --stddev with another scheme.
absl::StatusOr<v1::InitializeParametersRequest> BuildInitRequest(const InitArgs& args);

// Prints "stddev: <s>", "fan_in: <n>", "fan_out: <n>", then the tensor (or writes --output).
absl::Status RunInit(const InitArgs& args, const Connection& connection, std::ostream& out);

struct ChildTuningArgs {
  std::string gradient;                 // .npy path, required.
  absl::optional<std::string> mode;     // task_free (default) or task_driven (implied by --fisher).
  std::string fisher;                   // .npy path; task_driven only.
  absl::optional<double> keep_probability;
  bool rescale = false;
  absl::optional<uint64_t> seed;        // task_free only.
  std::string output;
};

// The request without its tensors. UsageError without --gradient or --keep_probability, for an
// unknown mode, --fisher with task_free (or task_driven without it), or --seed with task_driven.
absl::StatusOr<v1::ChildTuningMaskRequest> BuildChildTuningOptions(const ChildTuningArgs& args);

// Prints "kept_fraction: <f>", then the masked gradient (or writes --output).
absl::Status RunChildTuning(const ChildTuningArgs& args, const Connection& connection, std::ostream& out);

// "normal", "uniform", "truncated_normal"; "lecun", "he", "xavier", "stddev"; "task_free",
// "task_driven" (case-insensitive); errors name --`flag`.
absl::StatusOr<v1::InitDistribution> ParseDistribution(absl::string_view text, absl::string_view flag);
absl::StatusOr<v1::InitScheme> ParseScheme(absl::string_view text, absl::string_view flag);
absl::StatusOr<v1::ChildTuningMode> ParseChildTuningMode(absl::string_view text, absl::string_view flag);

}  // namespace cli
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_CLI_TOOLKIT_COMMANDS_H_
