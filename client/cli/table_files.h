// Reading the data files of `primserve-cli fit` / `predict`: features as a [N, d] float32 matrix
// and labels as N integers, from NumPy .npy files or CSV text.
//
// Features: a .npy file (ReadNpy: '<f4' or '<f8', rank 2; rank 1 is read as one column), or any
// other file as text: one sample per line, comma-separated numbers (spaces around them allowed)
// or, on lines without a comma, numbers separated by spaces or tabs (numpy.savetxt's default);
// every row with the same number of fields. Blank lines are skipped; a first line with no number
// in it is a header and skipped (a first line with a bad value among numbers is an error).
// Labels: a .npy file of integers ('<i8', '<i4', '<i2', '|i1', '<u8', '<u4', '<u2', '|u1'), bool
// ('|b1') or integral floats ('<f4', '<f8'), any shape (flattened), or a text file of integers
// (or floats holding integers, "2.0e+00") separated by commas, spaces or newlines (a first line
// with no number in it is a header and skipped). Text files above 1 GiB are refused
// (RESOURCE_EXHAUSTED); .npy files are read as far as their header announces.
//
// Errors name the file, and the line (CSV) or the element (.npy): INVALID_ARGUMENT for bad
// contents, an errno-derived code (NOT_FOUND, PERMISSION_DENIED, ...) when the file cannot be read.
//
// Example:
//   absl::StatusOr<client::Tensor> x = ReadFeatures("train.csv");     // [N, d]
//   absl::StatusOr<std::vector<int64_t>> y = ReadLabels("train_labels.npy");
#ifndef PRIMSERVE_CLIENT_CLI_TABLE_FILES_H_
#define PRIMSERVE_CLIENT_CLI_TABLE_FILES_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "primserve/client/tensor.h"

namespace primserve {
namespace cli {

absl::StatusOr<client::Tensor> ReadFeatures(absl::string_view path);
absl::StatusOr<std::vector<int64_t>> ReadLabels(absl::string_view path);

// The parsers behind them, on the file's bytes (`name` prefixes messages).
absl::StatusOr<client::Tensor> ParseCsvFeatures(absl::string_view text, absl::string_view name);
absl::StatusOr<std::vector<int64_t>> ParseTextLabels(absl::string_view text, absl::string_view name);
absl::StatusOr<std::vector<int64_t>> ParseNpyLabels(absl::string_view bytes, absl::string_view name);

}  // namespace cli
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_CLI_TABLE_FILES_H_
