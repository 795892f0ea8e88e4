// Minimal leveled logging to stderr ("2026-12-01T01:02:03.456Z I message"); thread-safe.
// absl/log is not in Debian 12's Abseil, and one line per event is all the server needs.
#ifndef PRIMSERVE_SERVER_LOG_H_
#define PRIMSERVE_SERVER_LOG_H_

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace primserve {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name);
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, absl::string_view message);

template <typename... Args>
void Log(LogLevel level, const Args&... args) {
  if (LogEnabled(level)) LogLine(level, absl::StrCat(args...));
}

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_LOG_H_
