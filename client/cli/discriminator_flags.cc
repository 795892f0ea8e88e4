#include "client/cli/discriminator_flags.h"

#include <optional>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "client/cli/discriminator_commands.h"

ABSL_DECLARE_FLAG(std::string, output);      // main.cc: shared by every command that writes a tensor.
ABSL_DECLARE_FLAG(std::string, model_name);  // main.cc: shared with fit, predict and models.
ABSL_DECLARE_FLAG(std::string, precision);   // main.cc: shared with attend.

ABSL_FLAG(std::string, network, "",
          "register, score, losses: JSON network description (input_shape + layers; weights as nested "
          "lists or .npy paths)");
ABSL_FLAG(std::string, inputs, "", "score: .npy file [batch, ...input_shape]");
ABSL_FLAG(std::string, normalization, "gn", "score, losses: gn (gradient_norm), gran or none");
ABSL_FLAG(double, epsilon, 1e-8, "score, losses --normalization=gran: f ||g|| / (||g||^2 + epsilon)");
ABSL_FLAG(std::string, input_gradient_output, "",
          "score: also compute grad_x f_hat and write it to this .npy file");
ABSL_FLAG(std::string, real_inputs, "", "losses: .npy file of real samples [batch, ...input_shape]");
ABSL_FLAG(std::string, fake_inputs, "", "losses: .npy file of fake samples [batch, ...input_shape]");
ABSL_FLAG(std::string, loss, "hinge", "losses: hinge, wasserstein or bce");

namespace primserve {
namespace cli {

bool IsDiscriminatorCommand(absl::string_view name) {
  return name == "register" || name == "score" || name == "losses";
}

absl::Status RunDiscriminatorFromFlags(absl::string_view name, const std::set<std::string>& given,
                                       const Connection& connection, std::ostream& out) {
  // epsilon is sent only when given: the server rejects it with another normalization.
  const std::optional<double> epsilon =
      given.count("epsilon") ? std::optional<double>(absl::GetFlag(FLAGS_epsilon)) : std::nullopt;
  if (name == "register") {
    RegisterArgs args;
    args.model_name = absl::GetFlag(FLAGS_model_name);
    args.network = absl::GetFlag(FLAGS_network);
    return RunRegister(args, connection, out);
  }
  if (name == "score") {
    ScoreArgs args;
    args.model_name = absl::GetFlag(FLAGS_model_name);
    args.network = absl::GetFlag(FLAGS_network);
    args.inputs = absl::GetFlag(FLAGS_inputs);
    args.normalization = absl::GetFlag(FLAGS_normalization);
    args.epsilon = epsilon;
    args.input_gradient_output = absl::GetFlag(FLAGS_input_gradient_output);
    args.output = absl::GetFlag(FLAGS_output);
    args.precision = absl::GetFlag(FLAGS_precision);
    return RunScore(args, connection, out);
  }
  LossesArgs args;
  args.model_name = absl::GetFlag(FLAGS_model_name);
  args.network = absl::GetFlag(FLAGS_network);
  args.real_inputs = absl::GetFlag(FLAGS_real_inputs);
  args.fake_inputs = absl::GetFlag(FLAGS_fake_inputs);
  args.loss = absl::GetFlag(FLAGS_loss);
  args.normalization = absl::GetFlag(FLAGS_normalization);
  args.epsilon = epsilon;
  return RunLosses(args, connection, out);
}

}  // namespace cli
}  // namespace primserve
