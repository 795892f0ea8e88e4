// The Discriminator commands' absl flags (defined in discriminator_flags.cc, next to the code
// that reads them) and the glue from flags to discriminator_commands.h.
//
// Example (main.cc):
//   if (IsDiscriminatorCommand(command.name)) return RunDiscriminatorFromFlags(command.name, given, connection, std::cout);
#ifndef PRIMSERVE_CLIENT_CLI_DISCRIMINATOR_FLAGS_H_
#define PRIMSERVE_CLIENT_CLI_DISCRIMINATOR_FLAGS_H_

#include <ostream>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "client/cli/commands.h"

namespace primserve {
namespace cli {

// register, score or losses.
bool IsDiscriminatorCommand(absl::string_view name);

// Fills the command's arguments from the flags (`given`: the flags set on the command line) and
// runs it.
absl::Status RunDiscriminatorFromFlags(absl::string_view name, const std::set<std::string>& given,
                                       const Connection& connection, std::ostream& out);

}  // namespace cli
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_CLI_DISCRIMINATOR_FLAGS_H_
