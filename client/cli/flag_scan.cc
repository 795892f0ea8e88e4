#include "client/cli/flag_scan.h"

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/cli/usage_error.h"

namespace primserve {
namespace cli {
namespace {

// Flags that absl::ParseCommandLine handles itself.
bool IsAbseilBuiltin(absl::string_view name) {
  for (absl::string_view builtin : {"help", "helpfull", "helpshort", "helppackage", "helpon", "helpmatch",
                                    "version", "only_check_args", "flagfile", "fromenv", "tryfromenv",
                                    "undefok"}) {
    if (name == builtin) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::set<std::string>> ScanFlags(int argc, char** argv) {
  std::set<std::string> given;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') continue;  // A positional argument (or "-").
    arg.remove_prefix(absl::StartsWith(arg, "--") ? 2 : 1);
    const size_t equals = arg.find('=');
    const bool has_value = equals != absl::string_view::npos;
    absl::string_view name = arg.substr(0, equals);
    absl::string_view value = has_value ? arg.substr(equals + 1) : absl::string_view();

    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (IsAbseilBuiltin(name)) {
      // Same rule as absl: a non-boolean flag without '=' takes the next argument.
      if (!has_value && flag != nullptr && !flag->IsOfType<bool>()) ++i;
      continue;
    }
    bool negated = false;
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      flag = absl::FindCommandLineFlag(name.substr(2));
      negated = flag != nullptr && flag->IsOfType<bool>() && !has_value;
      if (!negated) flag = nullptr;
    }
    if (flag == nullptr || flag->IsRetired()) {
      return UsageError(absl::StrCat("unknown flag --", name));
    }
    if (flag->IsOfType<bool>()) {
      if (!has_value) value = negated ? "false" : "true";
    } else if (!has_value) {
      if (i + 1 >= argc) return UsageError(absl::StrCat("flag --", name, " is missing its value"));
      value = argv[++i];
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return UsageError(absl::StrCat("--", flag->Name(), "=", value, ": ", error));
    }
    given.insert(std::string(flag->Name()));
  }
  return given;
}

}  // namespace cli
}  // namespace primserve
