// primserve-cli: calls a primserve server from the command line.
//
//   primserve-cli [--address=localhost:50051] [--timeout_seconds=60] [--max_message_bytes=67108864]
//                 <command> [command flags]
//
// All flags are absl flags; the first positional argument names the command, and a flag that
// does not belong to the command is a usage error. Exit codes: 0 success, 1 the call or a file
// failed ("error: <CODE>: <message>" on stderr), 2 usage error.
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/cli/commands.h"
#include "client/cli/flag_scan.h"
#include "client/cli/usage_error.h"

// Global flags.
ABSL_FLAG(std::string, address, "localhost:50051", "server address host:port (dns:///host:port balances)");
ABSL_FLAG(double, timeout_seconds, 60, "per-call deadline in seconds; 0 means none");
ABSL_FLAG(int64_t, max_message_bytes, int64_t{64} << 20, "largest message sent or received");
// health
ABSL_FLAG(std::string, service, "", "health: the service to check (empty: the whole server)");
// sinusoidal and rope
ABSL_FLAG(int64_t, length, 0, "sinusoidal: positions 0..length-1");
ABSL_FLAG(std::string, positions, "", "sinusoidal, rope --kind=1d: comma-separated real positions");
ABSL_FLAG(int64_t, dim, 0, "sinusoidal: table width (even)");
ABSL_FLAG(double, base, 10000, "sinusoidal, rope: the frequency base");
ABSL_FLAG(std::string, layout, "interleaved", "sinusoidal: interleaved or split");
ABSL_FLAG(std::string, output, "", "sinusoidal, rope: write the result to this .npy file instead of printing");
ABSL_FLAG(std::string, input, "", "rope: .npy file [..., seq, dim] ('<f4' or '<f8', C order)");
ABSL_FLAG(std::string, kind, "1d", "rope: 1d or 2d");
ABSL_FLAG(std::string, pairing, "interleaved", "rope: interleaved (2i, 2i+1) or half_split (i, i + d/2)");
ABSL_FLAG(std::string, positions_x, "", "rope --kind=2d: comma-separated row positions");
ABSL_FLAG(std::string, positions_y, "", "rope --kind=2d: comma-separated column positions");
ABSL_FLAG(std::string, grid, "", "rope --kind=2d: HxW grid, token t at (t / W, t % W)");
ABSL_FLAG(int64_t, rotary_dim, 0, "rope: leading features that rotate (0: all)");
ABSL_FLAG(bool, inverse, false, "rope: apply the inverse rotation");

namespace {

using primserve::cli::IsUsageError;
using primserve::cli::UsageError;

constexpr absl::string_view kUsage = R"(primserve-cli: call a primserve server from the command line.

Usage: primserve-cli [global flags] <command> [command flags]

Global flags:
  --address=HOST:PORT       server (default localhost:50051; dns:///HOST:PORT balances over replicas)
  --timeout_seconds=S       per-call deadline (default 60; 0: none)
  --max_message_bytes=N     largest message sent or received (default 67108864, the server's default)

Commands:
  health [--service=NAME]
      Prints SERVING or NOT_SERVING; exits 0 only when SERVING.
  sinusoidal (--length=N | --positions=P,P,...) --dim=D [--base=10000]
             [--layout=interleaved|split] [--output=FILE.npy]
      The sinusoidal position table [positions, dim] (MATH.md section 1).
  rope --input=FILE.npy [--kind=1d|2d] [--pairing=interleaved|half_split] [--positions=P,P,...]
       [--positions_x=X,... --positions_y=Y,... | --grid=HxW] [--base=10000] [--rotary_dim=R]
       [--inverse] [--output=FILE.npy]
      Rotates the input [..., seq, dim] ('<f4' or '<f8' .npy, C order) by RoPE (MATH.md sections
      2-3). Without positions, token t has position t (2-D: give positions_x/y or --grid).

Without --output a result is printed as text: a shape line, then one row per line (%.9g); results
over 10000 elements need --output. Errors print "error: <CODE>: <message>" on stderr and exit 1;
usage errors exit 2.

Examples:
  primserve-cli health
  primserve-cli sinusoidal --length=2 --dim=4
  primserve-cli --address=primserve:50051 rope --input=q.npy --pairing=half_split --output=q_rope.npy
)";

struct Command {
  absl::string_view name;
  std::vector<absl::string_view> flags;
};

const std::vector<Command>& Commands() {
  static const auto* commands = new std::vector<Command>{
      {"health", {"service"}},
      {"sinusoidal", {"length", "positions", "dim", "base", "layout", "output"}},
      {"rope",
       {"input", "kind", "pairing", "positions", "positions_x", "positions_y", "grid", "base", "rotary_dim",
        "inverse", "output"}},
  };
  return *commands;
}

bool Contains(const std::vector<absl::string_view>& names, absl::string_view name) {
  for (absl::string_view candidate : names) {
    if (candidate == name) return true;
  }
  return false;
}

bool WantsHelp(int argc, char** argv) {
  if (argc >= 2 && absl::string_view(argv[1]) == "help") return true;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg == "-h" || arg == "-help" || arg == "--help") return true;
  }
  return false;
}

// The command named by the positional arguments, with only its own (or global) flags given.
absl::StatusOr<const Command*> SelectCommand(const std::vector<char*>& positional,
                                             const std::set<std::string>& given) {
  if (positional.size() < 2) return UsageError("missing command (health, sinusoidal or rope)");
  if (positional.size() > 2) {
    return UsageError(absl::StrCat("unexpected argument \"", positional[2], "\" (flags are --name=value)"));
  }
  const absl::string_view name = positional[1];
  const Command* command = nullptr;
  for (const Command& candidate : Commands()) {
    if (candidate.name == name) command = &candidate;
  }
  if (command == nullptr) {
    return UsageError(absl::StrCat("unknown command \"", name, "\" (health, sinusoidal or rope)"));
  }
  const std::vector<absl::string_view> global = {"address", "timeout_seconds", "max_message_bytes"};
  for (const std::string& flag : given) {
    if (!Contains(global, flag) && !Contains(command->flags, flag)) {
      return UsageError(absl::StrCat("--", flag, " does not apply to ", name, " (its flags: --",
                                     absl::StrJoin(command->flags, ", --"), ")"));
    }
  }
  return command;
}

absl::StatusOr<primserve::cli::Connection> ConnectionFromFlags() {
  primserve::cli::Connection connection;
  connection.channel.address = absl::GetFlag(FLAGS_address);
  const double timeout = absl::GetFlag(FLAGS_timeout_seconds);
  if (!(timeout >= 0)) return UsageError("--timeout_seconds must be >= 0 (0: no deadline)");
  connection.call.timeout = timeout == 0 ? absl::InfiniteDuration() : absl::Seconds(timeout);
  connection.channel.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  if (connection.channel.max_message_bytes <= 0) return UsageError("--max_message_bytes must be > 0");
  return connection;
}

template <typename T>
absl::optional<T> IfGiven(const std::set<std::string>& given, absl::string_view name, T value) {
  if (given.count(std::string(name)) == 0) return absl::nullopt;
  return value;
}

absl::Status Run(const Command& command, const std::set<std::string>& given) {
  absl::StatusOr<primserve::cli::Connection> connection = ConnectionFromFlags();
  if (!connection.ok()) return connection.status();
  if (command.name == "health") {
    primserve::cli::HealthArgs args;
    args.service = absl::GetFlag(FLAGS_service);
    return primserve::cli::RunHealth(args, *connection, std::cout);
  }
  if (command.name == "sinusoidal") {
    primserve::cli::SinusoidalArgs args;
    args.length = IfGiven(given, "length", absl::GetFlag(FLAGS_length));
    args.positions = IfGiven(given, "positions", absl::GetFlag(FLAGS_positions));
    args.dim = IfGiven(given, "dim", absl::GetFlag(FLAGS_dim));
    args.base = absl::GetFlag(FLAGS_base);
    args.layout = absl::GetFlag(FLAGS_layout);
    args.output = absl::GetFlag(FLAGS_output);
    return primserve::cli::RunSinusoidal(args, *connection, std::cout);
  }
  primserve::cli::RopeArgs args;
  args.input = absl::GetFlag(FLAGS_input);
  args.kind = absl::GetFlag(FLAGS_kind);
  args.pairing = absl::GetFlag(FLAGS_pairing);
  args.positions = IfGiven(given, "positions", absl::GetFlag(FLAGS_positions));
  args.positions_x = IfGiven(given, "positions_x", absl::GetFlag(FLAGS_positions_x));
  args.positions_y = IfGiven(given, "positions_y", absl::GetFlag(FLAGS_positions_y));
  args.grid = IfGiven(given, "grid", absl::GetFlag(FLAGS_grid));
  args.base = absl::GetFlag(FLAGS_base);
  args.rotary_dim = absl::GetFlag(FLAGS_rotary_dim);
  args.inverse = absl::GetFlag(FLAGS_inverse);
  args.output = absl::GetFlag(FLAGS_output);
  return primserve::cli::RunRope(args, *connection, std::cout);
}

// Prints `status` and returns the exit code: 0 ok, 2 usage error, 1 anything else.
int Report(const absl::Status& status) {
  if (status.ok()) return 0;
  if (IsUsageError(status)) {
    std::cerr << "error: " << status.message() << "\nRun 'primserve-cli --help' for usage.\n";
    return 2;
  }
  std::cerr << "error: " << absl::StatusCodeToString(status.code()) << ": " << status.message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // absl prefixes the message with the program name on --helpfull.
  absl::SetProgramUsageMessage(absl::StripPrefix(kUsage, "primserve-cli: "));
  if (WantsHelp(argc, argv)) {
    std::cout << kUsage;
    return 0;
  }
  // Unknown flags and bad values become usage errors here, before absl would exit(1) on them.
  absl::StatusOr<std::set<std::string>> given = primserve::cli::ScanFlags(argc, argv);
  if (!given.ok()) return Report(given.status());
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  absl::StatusOr<const Command*> command = SelectCommand(positional, *given);
  if (!command.ok()) return Report(command.status());
  return Report(Run(**command, *given));
}
