#include "client/cli/flag_values.h"

#include <cmath>

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/cli/usage_error.h"

namespace primserve {
namespace cli {

absl::StatusOr<std::vector<double>> ParseRealList(absl::string_view flag, absl::string_view text) {
  if (absl::StripAsciiWhitespace(text).empty()) {
    return UsageError(absl::StrCat("--", flag, " is empty: give comma-separated numbers such as 0,1,2.5"));
  }
  std::vector<double> values;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    double value = 0;
    if (!absl::SimpleAtod(item, &value)) {
      return UsageError(absl::StrCat("--", flag, "=", text, ": \"", item, "\" is not a number"));
    }
    if (!std::isfinite(value)) {
      return UsageError(absl::StrCat("--", flag, "=", text, ": \"", item, "\" is not a finite number"));
    }
    values.push_back(value);
  }
  return values;
}

absl::StatusOr<std::vector<int64_t>> ParseIntList(absl::string_view flag, absl::string_view text) {
  if (absl::StripAsciiWhitespace(text).empty()) {
    return UsageError(absl::StrCat("--", flag, " is empty: give comma-separated integers such as 5,3"));
  }
  std::vector<int64_t> values;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    int64_t value = 0;
    if (!absl::SimpleAtoi(item, &value)) {
      return UsageError(absl::StrCat("--", flag, "=", text, ": \"", item, "\" is not an integer"));
    }
    values.push_back(value);
  }
  return values;
}

absl::Status CheckPositive(absl::string_view flag, double value) {
  if (std::isfinite(value) && value > 0) return absl::OkStatus();
  return UsageError(absl::StrCat("--", flag, " must be a finite number > 0, got ", value,
                                 " (leave the flag out for its default)"));
}

absl::StatusOr<Grid> ParseGrid(absl::string_view flag, absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  const std::vector<absl::string_view> parts = absl::StrSplit(lower, 'x');
  Grid grid;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &grid.height) ||
      !absl::SimpleAtoi(parts[1], &grid.width) || grid.height <= 0 || grid.width <= 0) {
    return UsageError(absl::StrCat("--", flag, "=", text, ": expected HxW with positive integers, e.g. 4x8"));
  }
  return grid;
}

absl::StatusOr<v1::SinusoidalLayout> ParseLayout(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "interleaved") return v1::SINUSOIDAL_LAYOUT_INTERLEAVED;
  if (lower == "split") return v1::SINUSOIDAL_LAYOUT_SPLIT;
  return UsageError(absl::StrCat("--layout=", text, ": expected interleaved or split"));
}

absl::StatusOr<v1::RopePairing> ParsePairing(absl::string_view text, absl::string_view flag) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "interleaved") return v1::ROPE_PAIRING_INTERLEAVED;
  if (lower == "half_split") return v1::ROPE_PAIRING_HALF_SPLIT;
  return UsageError(absl::StrCat("--", flag, "=", text, ": expected interleaved or half_split"));
}

absl::StatusOr<v1::RopeKind> ParseRopeKind(absl::string_view text, absl::string_view flag) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "1d") return v1::ROPE_KIND_ROPE_1D;
  if (lower == "2d") return v1::ROPE_KIND_ROPE_2D;
  return UsageError(absl::StrCat("--", flag, "=", text, ": expected 1d or 2d"));
}

absl::StatusOr<v1::AttentionKind> ParseAttentionKind(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "softmax") return v1::ATTENTION_KIND_SOFTMAX;
  if (lower == "linear") return v1::ATTENTION_KIND_LINEAR;
  return UsageError(absl::StrCat("--kind=", text, ": expected softmax or linear"));
}

absl::StatusOr<v1::ComputePrecision> ParsePrecision(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "f32") return v1::COMPUTE_PRECISION_F32;
  if (lower == "bf16") return v1::COMPUTE_PRECISION_BF16;
  return UsageError(absl::StrCat("--precision=", text, ": expected f32 or bf16"));
}

}  // namespace cli
}  // namespace primserve
