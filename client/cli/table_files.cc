#include "client/cli/table_files.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/cli/file_io.h"
#include "client/cli/npy.h"
#include "client/cli/npy_header.h"

namespace primserve {
namespace cli {
namespace {

// Text tables larger than this are refused (as .npy they would be 2-3x smaller and read faster);
// a device such as /dev/zero given by mistake stops here too.
constexpr uint64_t kMaxTextBytes = uint64_t{1} << 30;

absl::StatusOr<std::string> ReadWholeFile(absl::string_view path) { return ReadTextFile(path, kMaxTextBytes); }

bool IsNpyPath(absl::string_view path) { return absl::EndsWithIgnoreCase(path, ".npy"); }

absl::Status ContentError(absl::string_view name, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(name, ": ", problem));
}

// The fields of one line, stripped of surrounding spaces: comma-separated, or, on a line
// without a comma, separated by spaces or tabs (numpy.savetxt's default).
std::vector<absl::string_view> Fields(absl::string_view line) {
  if (!absl::StrContains(line, ',')) return absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  std::vector<absl::string_view> fields = absl::StrSplit(line, ',');
  for (absl::string_view& field : fields) field = absl::StripAsciiWhitespace(field);
  return fields;
}

// A first line is a header when none of its fields is a number ("x1,x2,label"); a line with
// any number in it is data, so a bad value in the first row is reported, not skipped.
bool IsHeader(const std::vector<absl::string_view>& fields) {
  for (absl::string_view field : fields) {
    double ignored;
    if (absl::SimpleAtod(field, &ignored)) return false;
  }
  return true;
}

// Element i of little-endian integer or float data as an exact int64, or an error.
absl::StatusOr<int64_t> LabelAt(absl::string_view data, const std::string& descr, int item_bytes, size_t i,
                                absl::string_view name) {
  const char* bytes = data.data() + i * static_cast<size_t>(item_bytes);
  uint64_t bits = 0;
  for (int b = item_bytes - 1; b >= 0; --b) bits = (bits << 8) | static_cast<unsigned char>(bytes[b]);
  const char type = descr[1];
  if (type == 'b') return bits != 0 ? 1 : 0;
  if (type == 'i') {
    // Sign-extend from the item's width.
    const int shift = 64 - 8 * item_bytes;
    return static_cast<int64_t>(bits << shift) >> shift;
  }
  if (type == 'u') {
    if (bits > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return ContentError(name, absl::StrCat("label [", i, "] = ", bits, " does not fit in int64"));
    }
    return static_cast<int64_t>(bits);
  }
  double value = 0;
  if (item_bytes == 4) {
    float f;
    const uint32_t bits32 = static_cast<uint32_t>(bits);
    std::memcpy(&f, &bits32, sizeof f);
    value = f;
  } else {
    std::memcpy(&value, &bits, sizeof value);
  }
  if (!(std::abs(value) < 9.2e18) || value != std::floor(value)) {
    return ContentError(name, absl::StrCat("label [", i, "] = ", value, " is not an integer"));
  }
  return static_cast<int64_t>(value);
}

}  // namespace

absl::StatusOr<client::Tensor> ParseCsvFeatures(absl::string_view text, absl::string_view name) {
  client::Tensor features;
  int64_t columns = -1;
  int64_t rows = 0;
  int line_number = 0;
  bool first_line = true;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);  // Also drops a '\r' of CRLF files.
    if (line.empty()) continue;
    const std::vector<absl::string_view> fields = Fields(line);
    if (first_line && IsHeader(fields)) {
      first_line = false;
      continue;
    }
    first_line = false;
    if (columns < 0) columns = static_cast<int64_t>(fields.size());
    if (static_cast<int64_t>(fields.size()) != columns) {
      return ContentError(name, absl::StrCat("line ", line_number, ": expected ", columns,
                                             " fields (as in the first row), got ", fields.size()));
    }
    for (absl::string_view field : fields) {
      float value = 0;
      if (!absl::SimpleAtof(field, &value)) {
        return ContentError(name, absl::StrCat("line ", line_number, ": \"", field, "\" is not a number"));
      }
      features.values.push_back(value);
    }
    ++rows;
  }
  if (rows == 0) return ContentError(name, "no data rows (CSV: one sample per line, comma-separated numbers)");
  features.shape = {rows, columns};
  return features;
}

absl::StatusOr<std::vector<int64_t>> ParseTextLabels(absl::string_view text, absl::string_view name) {
  std::vector<int64_t> labels;
  int line_number = 0;
  bool first_line = true;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    const std::vector<absl::string_view> items = absl::StrSplit(line, absl::ByAnyChar(", \t"), absl::SkipEmpty());
    if (first_line && IsHeader(items)) {
      first_line = false;
      continue;
    }
    first_line = false;
    for (absl::string_view item : items) {
      int64_t label = 0;
      double value = 0;
      // Integers, or floats holding one ("2.000000000000000000e+00": numpy.savetxt's default).
      if (!absl::SimpleAtoi(item, &label)) {
        if (!absl::SimpleAtod(item, &value) || !(std::abs(value) < 9.2e18) || value != std::floor(value)) {
          return ContentError(name, absl::StrCat("line ", line_number, ": \"", item, "\" is not an integer label"));
        }
        label = static_cast<int64_t>(value);
      }
      labels.push_back(label);
    }
  }
  if (labels.empty()) return ContentError(name, "no labels (one integer per line, or comma-separated)");
  return labels;
}

namespace {

// The label dtypes: little-endian integers, bool, and floats holding integers; any order for
// vectors (fortran_order only matters from rank 2).
absl::StatusOr<int> LabelItemBytes(const NpyHeader& header) {
  const std::string& descr = header.descr;
  // '<i8', '|u1', '|b1', '<f4', ...: byte order, kind, item size.
  const char order = descr.size() == 3 ? descr[0] : '?';
  const char kind = descr.size() == 3 ? descr[1] : '?';
  const int item_bytes = descr.size() == 3 ? descr[2] - '0' : 0;
  const bool valid = (kind == 'f' && order == '<' && (item_bytes == 4 || item_bytes == 8)) ||
                     (kind == 'b' && order == '|' && item_bytes == 1) ||
                     ((kind == 'i' || kind == 'u') &&
                      ((item_bytes == 1 && (order == '|' || order == '<')) ||
                       (order == '<' && (item_bytes == 2 || item_bytes == 4 || item_bytes == 8))));
  if (!valid) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported label dtype '", descr, "'; supported: little-endian integers, bool and '<f4' / '<f8' holding integers"));
  }
  if (header.fortran_order && header.shape.size() > 1) {
    return absl::InvalidArgumentError("fortran_order is True: save a C-order array");
  }
  return item_bytes;
}

absl::StatusOr<std::vector<int64_t>> DecodeLabels(const NpyData& array, absl::string_view name) {
  std::vector<int64_t> labels;
  labels.reserve(static_cast<size_t>(array.count));
  for (size_t i = 0; i < static_cast<size_t>(array.count); ++i) {
    absl::StatusOr<int64_t> label = LabelAt(array.data, array.header.descr, array.item_bytes, i, name);
    if (!label.ok()) return label.status();
    labels.push_back(*label);
  }
  return labels;
}

}  // namespace

absl::StatusOr<std::vector<int64_t>> ParseNpyLabels(absl::string_view bytes, absl::string_view name) {
  absl::StatusOr<NpyData> array = ReadNpyData(StringInput(bytes), name, LabelItemBytes);
  if (!array.ok()) return array.status();
  return DecodeLabels(*array, name);
}

absl::StatusOr<client::Tensor> ReadFeatures(absl::string_view path) {
  if (IsNpyPath(path)) {
    absl::StatusOr<client::Tensor> features = ReadNpy(path);
    if (!features.ok()) return features;
    if (features->shape.size() == 1) features->shape = {features->shape[0], 1};
    if (features->shape.size() != 2) {
      return ContentError(path, absl::StrCat("features must be a matrix [samples, features], got rank ",
                                             features->shape.size()));
    }
    return features;
  }
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  return ParseCsvFeatures(*text, path);
}

absl::StatusOr<std::vector<int64_t>> ReadLabels(absl::string_view path) {
  if (IsNpyPath(path)) {
    absl::StatusOr<NpyData> array = ReadNpyFile(path, LabelItemBytes);
    if (!array.ok()) return array.status();
    return DecodeLabels(*array, path);
  }
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  return ParseTextLabels(*text, path);
}

}  // namespace cli
}  // namespace primserve
