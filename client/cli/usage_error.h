// Usage errors: a wrong command line (unknown or inapplicable flag, bad flag value, missing
// argument). They are INVALID_ARGUMENT statuses carrying a marker payload, so that main() can
// tell them from errors of the call itself: usage errors exit 2, every other error exits 1.
//
// Example:
//   if (dim <= 0) return UsageError("--dim must be > 0");
//   ...
//   return IsUsageError(status) ? 2 : 1;
#ifndef PRIMSERVE_CLIENT_CLI_USAGE_ERROR_H_
#define PRIMSERVE_CLIENT_CLI_USAGE_ERROR_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace primserve {
namespace cli {

// INVALID_ARGUMENT with `message`, marked as a usage error.
absl::Status UsageError(absl::string_view message);

// True when `status` came from UsageError.
bool IsUsageError(const absl::Status& status);

}  // namespace cli
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_CLI_USAGE_ERROR_H_
