#include "client/cli/output.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli/npy.h"
#include "client/cli/tensor_text.h"
#include "client/cli/usage_error.h"

namespace primserve {
namespace cli {

absl::Status CheckDistinctOutputs(const std::string& flag_a, const std::string& a, const std::string& flag_b,
                                  const std::string& b) {
  if (a.empty() || b.empty()) return absl::OkStatus();
  // weakly_canonical resolves "./o.npy", "dir/../o.npy" and symbolic links to existing files.
  std::error_code a_error, b_error;
  const std::filesystem::path a_path = std::filesystem::weakly_canonical(a, a_error);
  const std::filesystem::path b_path = std::filesystem::weakly_canonical(b, b_error);
  const bool same = a == b || (!a_error && !b_error && a_path == b_path);
  if (!same) return absl::OkStatus();
  return UsageError(absl::StrCat("--", flag_a, "=", a, " and --", flag_b, "=", b, " name the same file"));
}

absl::Status CheckPrintable(double elements, const std::string& output) {
  if (!output.empty() || elements <= kMaxPrintElements) return absl::OkStatus();
  return UsageError(absl::StrFormat("the result has %.0f elements, more than the %d printed as text: "
                                    "pass --output=FILE.npy", elements, kMaxPrintElements));
}

absl::Status EmitTensor(const client::Tensor& result, const std::string& output, std::ostream& out) {
  if (output.empty()) {
    out << FormatTensorText(result);
    return absl::OkStatus();
  }
  if (absl::Status written = WriteNpy(output, result); !written.ok()) return written;
  out << "wrote " << output << " (shape " << ShapeText(result.shape) << ", float32)\n";
  return absl::OkStatus();
}

std::string FormatReal(double value) {
  std::string text;
  for (int digits = 15; digits <= 17; ++digits) {
    text = absl::StrFormat("%.*g", digits, value);
    double back = 0;
    if (absl::SimpleAtod(text, &back) && back == value) break;
  }
  return text;
}

}  // namespace cli
}  // namespace primserve
