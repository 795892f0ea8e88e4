#include "client/cli/auth_token.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace primserve {
namespace cli {

absl::StatusOr<std::string> ReadAuthToken(const std::string& path) {
  std::ifstream file(path);
  if (!file) {
    const int err = errno;
    const std::string message = absl::StrCat("--auth_token_file ", path, ": cannot open: ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(message);
    if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(message);
    return absl::InvalidArgumentError(message);
  }
  std::string line;
  while (std::getline(file, line)) {
    const absl::string_view token = absl::StripAsciiWhitespace(line);
    if (!token.empty() && !absl::StartsWith(token, "#")) return std::string(token);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--auth_token_file ", path, ": no token (expected a line with the token; '#' lines are comments)"));
}

}  // namespace cli
}  // namespace primserve
