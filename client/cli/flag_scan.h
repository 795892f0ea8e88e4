// A pre-pass over argv before absl::ParseCommandLine, for two things absl 20220623 does not
// offer: knowing which flags the user actually gave (so a command can reject flags that do not
// apply to it, and tell "--length given" from "--length at its default"), and reporting an
// unknown flag or an unparsable value as a usage error (exit 2) instead of absl's exit(1).
// The flags themselves stay absl flags; absl::ParseCommandLine still does the real parsing.
//
// Example:
//   absl::StatusOr<std::set<std::string>> given = ScanFlags(argc, argv);
//   if (!given.ok()) { ...print..., return 2; }
//   std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
//   if (given->count("length")) ...
#ifndef PRIMSERVE_CLIENT_CLI_FLAG_SCAN_H_
#define PRIMSERVE_CLIENT_CLI_FLAG_SCAN_H_

#include <set>
#include <string>

#include "absl/status/statusor.h"

namespace primserve {
namespace cli {

// The names of the flags set in argv[1..] up to a "--" argument ("--noinverse" gives
// "inverse"). absl's own flags (--help*, --flagfile, --fromenv, ...) are skipped; flags set
// inside a --flagfile are not seen. A UsageError names an unknown flag or a value that does not
// parse. Side effect: the scanned flags already hold their values (parsing sets them).
absl::StatusOr<std::set<std::string>> ScanFlags(int argc, char** argv);

}  // namespace cli
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_CLI_FLAG_SCAN_H_
