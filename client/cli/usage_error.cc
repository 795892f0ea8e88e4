#include "client/cli/usage_error.h"

#include "absl/strings/cord.h"

namespace primserve {
namespace cli {
namespace {

constexpr absl::string_view kUsagePayload = "type.primserve.dev/primserve.cli.UsageError";

}  // namespace

absl::Status UsageError(absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kUsagePayload, absl::Cord());
  return status;
}

bool IsUsageError(const absl::Status& status) { return status.GetPayload(kUsagePayload).has_value(); }

}  // namespace cli
}  // namespace primserve
