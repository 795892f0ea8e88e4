// The primserve-cli commands of the LogisticRegression and Models services (see commands.h for
// the conventions: Build* mistakes are UsageErrors, exit 2; file and server errors exit 1).
//
//   fit --features=X.npy|X.csv --labels=y.npy|y.txt [--num_classes=K] [--covariance=pooled_within|total]
//       [--ridge=R] [--solver=analytic|maximum_likelihood] [--l2=L] [--max_iterations=N]
//       [--gradient_tolerance=T] [--model_name=NAME] [--chunk_rows=N] [--output=W.npy]
//   predict --features=X.npy|X.csv --model_name=NAME [--output=P.npy] [--labels_output=L.txt]
//   models list [--kind=logistic|discriminator] | models get --model_name=NAME [--output=W.npy]
//         | models delete --model_name=NAME
//
// Example:
//   FitArgs args;
//   args.features = "x.csv";
//   args.labels = "y.txt";
//   args.model_name = "iris";
//   absl::Status status = RunFit(args, Connection(), std::cout);
//   // prints "samples: 150", "train_accuracy: ...", ..., "stored: iris", the weights and bias
#ifndef PRIMSERVE_CLIENT_CLI_LOGISTIC_COMMANDS_H_
#define PRIMSERVE_CLIENT_CLI_LOGISTIC_COMMANDS_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/cli/commands.h"
#include "primserve/v1/logistic_regression.pb.h"
#include "primserve/v1/models.pb.h"

namespace primserve {
namespace cli {

struct FitArgs {
  std::string features;  // .npy or CSV path, required: [N, d].
  std::string labels;    // .npy (integers) or text path, required: N labels.
  int64_t num_classes = 0;
  std::string covariance = "pooled_within";
  double ridge = 0;
  std::string solver = "analytic";
  double l2 = 0;
  int64_t max_iterations = 0;
  double gradient_tolerance = 0;
  std::string model_name;   // Empty: not stored.
  int64_t chunk_rows = 0;   // > 0: FitStream in chunks of this many rows; 0: one Fit call.
  std::string output;       // .npy path for the weights; empty: print them.
};

// The request without its data. UsageError for a missing --features / --labels, unknown
// --covariance / --solver names, a negative --chunk_rows, or --chunk_rows with
// --solver=maximum_likelihood; values the server judges (ridge, l2, names) are left to it.
absl::StatusOr<v1::FitRequest> BuildFitOptions(const FitArgs& args);

// Prints the report ("samples: ...", "train_accuracy: ...", "log_loss: ...", "seconds: ...",
// and for maximum likelihood "iterations", "gradient_norm", "converged", "solver_message"),
// "stored: NAME" with --model_name, then the model: weights (or "wrote W.npy"), bias, priors.
absl::Status RunFit(const FitArgs& args, const Connection& connection, std::ostream& out);

struct PredictArgs {
  std::string features;       // Required.
  std::string model_name;     // Required: a stored model.
  std::string output;         // .npy path for the probabilities [M, K]; empty: print them.
  std::string labels_output;  // Text path for the labels (one per line); empty: print them.
};

// Prints (or writes) the probabilities, then "labels: l0 l1 ..." (or writes them).
absl::Status RunPredict(const PredictArgs& args, const Connection& connection, std::ostream& out);

struct ModelsArgs {
  std::string action;      // "list", "get" or "delete".
  std::optional<std::string> kind;  // list: "logistic" or "discriminator"; nullopt: all.
  std::string model_name;  // get, delete: required.
  std::string output;      // get: .npy path for the weights; empty: print them.
};

// UsageError for an unknown action, --model_name missing for get / delete, or flags that do not
// apply to the action.
absl::Status CheckModelsArgs(const ModelsArgs& args);

// list: one line per model ("NAME  logistic  classes=K features=d  bytes=B  created=TIME"),
// then "unreadable: FILE: REASON" lines; get: the same line, then the model as `fit` prints it;
// delete: "deleted NAME".
absl::Status RunModels(const ModelsArgs& args, const Connection& connection, std::ostream& out);

}  // namespace cli
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_CLI_LOGISTIC_COMMANDS_H_
