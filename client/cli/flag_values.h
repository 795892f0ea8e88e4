// Parsing of the CLI's structured flag values into request fields. Every error is a UsageError
// (exit 2) whose message names the flag and quotes the value.
//
// Example:
//   absl::StatusOr<std::vector<double>> positions = ParseRealList("positions", "1,2.5,-3");
//   absl::StatusOr<Grid> grid = ParseGrid("grid", "4x8");   // {height 4, width 8}
//   absl::StatusOr<v1::RopePairing> pairing = ParsePairing("half_split");
//   absl::StatusOr<std::vector<int64_t>> lengths = ParseIntList("key_lengths", "5,3");
#ifndef PRIMSERVE_CLIENT_CLI_FLAG_VALUES_H_
#define PRIMSERVE_CLIENT_CLI_FLAG_VALUES_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "primserve/v1/attention.pb.h"
#include "primserve/v1/position_encoding.pb.h"

namespace primserve {
namespace cli {

// A comma-separated list of real numbers ("1,2.5,-3"; spaces around items allowed). Empty
// lists, empty items and non-finite values (nan, inf: no position is there) are usage errors.
absl::StatusOr<std::vector<double>> ParseRealList(absl::string_view flag, absl::string_view text);

struct Grid {
  int64_t height = 0;
  int64_t width = 0;
};

// "HxW" with positive integers H and W.
absl::StatusOr<Grid> ParseGrid(absl::string_view flag, absl::string_view text);

// A comma-separated list of integers ("5,3,0"); empty lists and non-integers are usage errors.
absl::StatusOr<std::vector<int64_t>> ParseIntList(absl::string_view flag, absl::string_view text);

// OK when `value` is a finite number > 0; else a usage error naming --`flag`. For flags whose 0
// would reach the server as "use the default" (--base, --coefficient, ...): an explicit 0 is a
// mistake to report, not a request for the default.
absl::Status CheckPositive(absl::string_view flag, double value);

// "interleaved" or "split" (case-insensitive).
absl::StatusOr<v1::SinusoidalLayout> ParseLayout(absl::string_view text);
// "interleaved" or "half_split" (case-insensitive); errors name --`flag`.
absl::StatusOr<v1::RopePairing> ParsePairing(absl::string_view text, absl::string_view flag = "pairing");
// "1d" or "2d" (case-insensitive); errors name --`flag`.
absl::StatusOr<v1::RopeKind> ParseRopeKind(absl::string_view text, absl::string_view flag = "kind");
// "softmax" or "linear" (case-insensitive).
absl::StatusOr<v1::AttentionKind> ParseAttentionKind(absl::string_view text);
// "f32" or "bf16" (case-insensitive).
absl::StatusOr<v1::ComputePrecision> ParsePrecision(absl::string_view text);

}  // namespace cli
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_CLI_FLAG_VALUES_H_
