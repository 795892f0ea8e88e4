// The primserve-cli commands of the Discriminator service (see commands.h for the conventions:
// argument mistakes are UsageErrors, exit 2; file and server errors exit 1).
//
//   register --model_name=NAME --network=NET.json
//   score (--model_name=NAME | --network=NET.json) --inputs=X.npy [--normalization=gn|gran|none]
//         [--epsilon=E] [--input_gradient_output=G.npy] [--output=SCORES.npy]
//   losses (--model_name=NAME | --network=NET.json) --real_inputs=R.npy --fake_inputs=F.npy
//          [--loss=hinge|wasserstein|bce] [--normalization=gn|gran|none] [--epsilon=E]
//
// The network JSON file (weights in PyTorch layout, as nested lists or .npy paths relative to
// the JSON file's directory):
//   {"input_shape": [3, 32, 32],
//    "layers": [
//      {"type": "conv2d", "weight": "c1_w.npy", "bias": "c1_b.npy", "stride": 2, "padding": 1},
//      {"type": "leaky_relu", "alpha": 0.2},
//      {"type": "flatten"},
//      {"type": "dense", "weight": [[0.1, 0.2, ...]], "bias": [0.0]}]}
// Layer types: dense (alias linear), conv2d, relu, leaky_relu, tanh, sigmoid, elu, identity,
// flatten. "alpha" is optional (PyTorch's default: 0.01 for leaky_relu, 1 for elu); "stride"
// defaults to 1 and "padding" to 0.
//
// Example:
//   ScoreArgs args;
//   args.model_name = "d";
//   args.inputs = "x.npy";
//   absl::Status status = RunScore(args, Connection(), std::cout);
//   // prints "raw_scores:", "gradient_norms:", "scores:" each followed by the [batch] tensor
#ifndef PRIMSERVE_CLIENT_CLI_DISCRIMINATOR_COMMANDS_H_
#define PRIMSERVE_CLIENT_CLI_DISCRIMINATOR_COMMANDS_H_

#include <optional>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/cli/commands.h"
#include "primserve/v1/discriminator.pb.h"

namespace primserve {
namespace cli {

// Reads the network JSON file described above. INVALID_ARGUMENT naming the file and the place
// ("net.json: layers[2].weight: ragged nested list ..."), or the file error of an .npy it names.
absl::StatusOr<v1::Network> ReadNetworkJson(const std::string& path);

struct RegisterArgs {
  std::string model_name;  // Required.
  std::string network;     // Required: the JSON file.
};

// Prints "registered NAME: input_shape [..], N layers, piecewise_linear true|false".
absl::Status RunRegister(const RegisterArgs& args, const Connection& connection, std::ostream& out);

struct ScoreArgs {
  std::string model_name;  // Exactly one of model_name and network.
  std::string network;
  std::string inputs;      // Required: .npy [batch, ...input_shape].
  std::string normalization = "gn";  // gn (gradient_norm), gran or none.
  std::optional<double> epsilon;     // gran only.
  std::string input_gradient_output;  // .npy for grad_x f_hat; requests it.
  std::string output;                 // .npy for the scores f_hat [batch]; empty: print everything.
  std::string precision = "f32";      // compute_precision: f32 or bf16.
};

// Without --output prints raw_scores, gradient_norms and scores as text; with it, writes the
// scores and prints "wrote ...". --input_gradient_output writes the input gradients.
absl::Status RunScore(const ScoreArgs& args, const Connection& connection, std::ostream& out);

struct LossesArgs {
  std::string model_name;
  std::string network;
  std::string real_inputs;
  std::string fake_inputs;
  std::string loss = "hinge";
  std::string normalization = "gn";
  std::optional<double> epsilon;
};

// Prints "discriminator_loss: X" and "generator_loss: Y".
absl::Status RunLosses(const LossesArgs& args, const Connection& connection, std::ostream& out);

}  // namespace cli
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_CLI_DISCRIMINATOR_COMMANDS_H_
