// The primserve-cli commands, independent of absl flags: main() fills the argument structs from
// the flags and calls Run*. Each command builds its request first (mistakes there are
// UsageErrors: exit 2), then reads input files, calls the server and prints or writes the result
// (those errors carry the file's or the server's status: exit 1).
//
// Example:
//   SinusoidalArgs args;
//   args.length = 2;
//   args.dim = 4;
//   absl::Status status = RunSinusoidal(args, Connection(), std::cout);
//   // prints "shape: [2, 4]" and two rows
#ifndef PRIMSERVE_CLIENT_CLI_COMMANDS_H_
#define PRIMSERVE_CLIENT_CLI_COMMANDS_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/optional.h"
#include "primserve/client/channel.h"
#include "primserve/v1/attention.pb.h"
#include "primserve/v1/position_encoding.pb.h"

namespace primserve {
namespace cli {

struct Connection {
  client::ChannelOptions channel;
  client::CallOptions call;
};

struct HealthArgs {
  std::string service;  // "" is the whole server.
};

// Prints the serving status name. UNAVAILABLE unless it is SERVING; the call's own status when
// the check fails (e.g. UNAVAILABLE when nothing listens, NOT_FOUND for an unknown service).
absl::Status RunHealth(const HealthArgs& args, const Connection& connection, std::ostream& out);

// Unset optionals are flags the user did not give.
struct SinusoidalArgs {
  absl::optional<int64_t> length;
  absl::optional<std::string> positions;  // Comma-separated reals.
  absl::optional<int64_t> dim;
  double base = 10000;
  std::string layout = "interleaved";
  std::string output;  // .npy path; empty: print as text.
};

// UsageError unless exactly one of length / positions is given and dim is given; values the
// server judges (odd dim, negative length) are left to it.
absl::StatusOr<v1::SinusoidalRequest> BuildSinusoidalRequest(const SinusoidalArgs& args);

absl::Status RunSinusoidal(const SinusoidalArgs& args, const Connection& connection, std::ostream& out);

struct RopeArgs {
  std::string input;  // .npy path, required.
  std::string kind = "1d";
  std::string pairing = "interleaved";
  absl::optional<std::string> positions;    // 1-D only.
  absl::optional<std::string> positions_x;  // 2-D, with positions_y.
  absl::optional<std::string> positions_y;
  absl::optional<std::string> grid;         // 2-D, "HxW".
  double base = 10000;
  int64_t rotary_dim = 0;  // 0: all features.
  bool inverse = false;
  std::string output;
};

// The request without its input. UsageError for a missing --input, 2-D position flags with
// kind 1d (or --positions with 2d), positions_x without positions_y, or both x/y and --grid.
absl::StatusOr<v1::ApplyRopeRequest> BuildRopeOptions(const RopeArgs& args);

absl::Status RunRope(const RopeArgs& args, const Connection& connection, std::ostream& out);

struct AttendArgs {
  std::string query;  // .npy paths, required: [batch, heads, q_len, head_dim],
  std::string key;    // [batch, kv_heads, k_len, head_dim],
  std::string value;  // [batch, kv_heads, k_len, value_dim].
  std::string kind = "softmax";
  bool causal = false;
  absl::optional<std::string> key_lengths;  // Comma-separated integers, one per batch.
  std::string bias;                         // .npy path; empty: no bias.
  double scale = 0;                         // 0: 1/sqrt(head_dim).
  std::string precision = "f32";
  // RoPE on query and key: on with --rope or any of the rope flags below (--norope with them
  // is a usage error).
  absl::optional<bool> rope;
  absl::optional<std::string> rope_kind;     // "1d" (default) or "2d".
  absl::optional<std::string> rope_pairing;  // "interleaved" (default) or "half_split".
  absl::optional<double> rope_base;          // Default 10000.
  absl::optional<int64_t> rotary_dim;        // Default 0: all of head_dim.
  absl::optional<std::string> query_positions;  // 1-D only; comma-separated reals.
  absl::optional<std::string> key_positions;
  absl::optional<std::string> grid;             // 2-D only: "HxW", H * W = k_len.
  bool return_weights = false;
  std::string weights_output;  // .npy path for the weights; empty: print them.
  std::string output;          // .npy path for the output; empty: print it.
};

// The request without its tensors. UsageError for a missing --query/--key/--value, --norope
// with rope flags, 2-D flags with a 1-D RoPE (or positions with 2-D), or --weights_output
// without --return_weights; values the server judges (shapes, scale, key_lengths) are left to it.
absl::StatusOr<v1::AttendRequest> BuildAttendOptions(const AttendArgs& args);

// Prints (or writes) the output, then, with --return_weights, the weights after a "weights:" line
// (or writes them to --weights_output).
absl::Status RunAttend(const AttendArgs& args, const Connection& connection, std::ostream& out);

struct CostArgs {
  absl::optional<int64_t> seq_len;
  absl::optional<int64_t> head_size;
  absl::optional<int64_t> num_heads;
  double ffn_multiplier = 4;
  double linear_head_multiplier = 4;
};

// UsageError unless --seq_len, --head_size and --num_heads are given.
absl::StatusOr<v1::EstimateCostRequest> BuildCostRequest(const CostArgs& args);

// Prints one "name: value" line per EstimateCostResponse field, in field order; integers in
// full ("self_attention: 1610612736"), other values with the digits that round-trip.
absl::Status RunCost(const CostArgs& args, const Connection& connection, std::ostream& out);

}  // namespace cli
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_CLI_COMMANDS_H_
