#include "client/cli/toolkit_flags.h"

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/types/optional.h"
#include "client/cli/toolkit_commands.h"

ABSL_DECLARE_FLAG(std::string, output);  // main.cc: shared by every command that writes a tensor.

// embedding-dim
ABSL_FLAG(int64_t, vocab_size, 0, "embedding-dim: vocabulary size (or sequence length) N >= 2");
ABSL_FLAG(double, coefficient, 8.33, "embedding-dim: the bound is coefficient * ln N");
// init
ABSL_FLAG(std::string, shape, "", "init: comma-separated extents, rank 1 to 5 ([out, in, *kernel])");
ABSL_FLAG(std::string, distribution, "normal", "init: normal, uniform or truncated_normal");
ABSL_FLAG(std::string, scheme, "lecun", "init: lecun, he, xavier or stddev (implied by --stddev)");
ABSL_FLAG(double, stddev, 0, "init --scheme=stddev: the standard deviation");
ABSL_FLAG(int64_t, fan_in, 0, "init: fan_in (0: inferred from the shape as PyTorch does)");
ABSL_FLAG(int64_t, fan_out, 0, "init: fan_out (0: inferred from the shape as PyTorch does)");
ABSL_FLAG(uint64_t, seed, 0, "init, childtuning --mode=task_free: the same seed gives the same result");
// childtuning
ABSL_FLAG(std::string, gradient, "", "childtuning: .npy file of the gradient (any shape)");
ABSL_FLAG(std::string, mode, "task_free", "childtuning: task_free or task_driven (implied by --fisher)");
ABSL_FLAG(std::string, fisher, "", "childtuning --mode=task_driven: .npy Fisher information, the gradient's shape");
ABSL_FLAG(double, keep_probability, 0, "childtuning: the kept fraction p in (0, 1]");
ABSL_FLAG(bool, rescale, false, "childtuning: divide kept gradients by p (the article's form)");

namespace primserve {
namespace cli {
namespace {

template <typename T>
absl::optional<T> IfGiven(const std::set<std::string>& given, const char* name, T value) {
  if (given.count(name) == 0) return absl::nullopt;
  return value;
}

}  // namespace

bool IsToolkitCommand(absl::string_view name) {
  return name == "embedding-dim" || name == "init" || name == "childtuning";
}

absl::Status RunToolkitFromFlags(absl::string_view name, const std::set<std::string>& given,
                                 const Connection& connection, std::ostream& out) {
  if (name == "embedding-dim") {
    EmbeddingDimArgs args;
    args.vocab_size = IfGiven(given, "vocab_size", absl::GetFlag(FLAGS_vocab_size));
    args.coefficient = absl::GetFlag(FLAGS_coefficient);
    return RunEmbeddingDim(args, connection, out);
  }
  if (name == "init") {
    InitArgs args;
    args.shape = IfGiven(given, "shape", absl::GetFlag(FLAGS_shape));
    args.distribution = absl::GetFlag(FLAGS_distribution);
    args.scheme = IfGiven(given, "scheme", absl::GetFlag(FLAGS_scheme));
    args.stddev = IfGiven(given, "stddev", absl::GetFlag(FLAGS_stddev));
    args.fan_in = absl::GetFlag(FLAGS_fan_in);
    args.fan_out = absl::GetFlag(FLAGS_fan_out);
    args.seed = absl::GetFlag(FLAGS_seed);
    args.output = absl::GetFlag(FLAGS_output);
    return RunInit(args, connection, out);
  }
  ChildTuningArgs args;
  args.gradient = absl::GetFlag(FLAGS_gradient);
  args.mode = IfGiven(given, "mode", absl::GetFlag(FLAGS_mode));
  args.fisher = absl::GetFlag(FLAGS_fisher);
  args.keep_probability = IfGiven(given, "keep_probability", absl::GetFlag(FLAGS_keep_probability));
  args.rescale = absl::GetFlag(FLAGS_rescale);
  args.seed = IfGiven(given, "seed", absl::GetFlag(FLAGS_seed));
  args.output = absl::GetFlag(FLAGS_output);
  return RunChildTuning(args, connection, out);
}

}  // namespace cli
}  // namespace primserve
