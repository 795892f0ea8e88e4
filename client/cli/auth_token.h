// The CLI's --auth_token_file: the token a client sends, from the same file format the server's
// --auth_token_file uses (one token per line; blank lines and '#' comment lines skipped).
//
// Example:
//   ASSIGN_OR_RETURN(options.auth_token, ReadAuthToken("/etc/primserve/token"));
#ifndef PRIMSERVE_CLIENT_CLI_AUTH_TOKEN_H_
#define PRIMSERVE_CLIENT_CLI_AUTH_TOKEN_H_

#include <string>

#include "absl/status/statusor.h"

namespace primserve {
namespace cli {

// The first token line of `path`, without surrounding whitespace.
// Errors (naming --auth_token_file and the path): NOT_FOUND, PERMISSION_DENIED (cannot open),
// FAILED_PRECONDITION (a directory), RESOURCE_EXHAUSTED (over 64 KiB), INVALID_ARGUMENT (no token line).
absl::StatusOr<std::string> ReadAuthToken(const std::string& path);

}  // namespace cli
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_CLI_AUTH_TOKEN_H_
