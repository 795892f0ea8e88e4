// The header of a .npy file: a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces and ended by '\n'. This parses exactly that grammar (string keys, a string
// `descr`, True/False, a tuple of non-negative integers, optional trailing commas) without
// evaluating Python; the three keys are required and no others are allowed, as numpy does.
//
// Example:
//   absl::StatusOr<NpyHeader> header = ParseNpyHeader("{'descr': '<f8', 'fortran_order': False, "
//                                                     "'shape': (4,), }\n");
//   // header->descr == "<f8", header->shape == {4}
#ifndef PRIMSERVE_CLIENT_CLI_NPY_HEADER_H_
#define PRIMSERVE_CLIENT_CLI_NPY_HEADER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace primserve {
namespace cli {

struct NpyHeader {
  std::string descr;           // The dtype string, e.g. "<f4"; not validated here.
  bool fortran_order = false;
  std::vector<int64_t> shape;  // Empty for a scalar.
};

// INVALID_ARGUMENT naming the problem (and quoting the header) when `text` is not such a dict:
// a syntax error, a missing, duplicate or unknown key, a structured (list) dtype, an extent
// that overflows int64.
absl::StatusOr<NpyHeader> ParseNpyHeader(absl::string_view text);

}  // namespace cli
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_CLI_NPY_HEADER_H_
