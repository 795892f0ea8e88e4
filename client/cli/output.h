// Result output shared by the CLI commands: the print-size check, "write .npy or print as text",
// and round-trip formatting of real numbers.
#ifndef PRIMSERVE_CLIENT_CLI_OUTPUT_H_
#define PRIMSERVE_CLIENT_CLI_OUTPUT_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "primserve/client/tensor.h"

namespace primserve {
namespace cli {

// Refuses (a usage error), before any call, to print a result of `elements` values as text;
// always fine when `output` (a .npy path) is set.
absl::Status CheckPrintable(double elements, const std::string& output);

// Refuses (a usage error) two output flags that name the same file (the second write would
// silently replace the first); either may be empty (not given).
absl::Status CheckDistinctOutputs(const std::string& flag_a, const std::string& a, const std::string& flag_b,
                                  const std::string& b);

// Writes `result` to `output` when set (and says so), otherwise prints it as text.
absl::Status EmitTensor(const client::Tensor& result, const std::string& output, std::ostream& out);

// The shortest of %.15g, %.16g, %.17g that reads back as `value` (integers print in full).
std::string FormatReal(double value);

}  // namespace cli
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_CLI_OUTPUT_H_
