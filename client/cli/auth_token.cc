#include "client/cli/auth_token.h"

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/cli/file_io.h"

namespace primserve {
namespace cli {

// A token file holds a line or two; anything larger is the wrong file (or /dev/zero).
constexpr uint64_t kMaxTokenFileBytes = 64 << 10;

absl::StatusOr<std::string> ReadAuthToken(const std::string& path) {
  absl::StatusOr<std::string> text = ReadTextFile(path, kMaxTokenFileBytes);
  if (!text.ok()) return absl::Status(text.status().code(), absl::StrCat("--auth_token_file ", text.status().message()));
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    const absl::string_view token = absl::StripAsciiWhitespace(line);
    if (!token.empty() && !absl::StartsWith(token, "#")) return std::string(token);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--auth_token_file ", path, ": no token (expected a line with the token; '#' lines are comments)"));
}

}  // namespace cli
}  // namespace primserve
