#include "client/cli/tensor_text.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace primserve {
namespace cli {

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

std::string FormatTensorText(const client::Tensor& tensor) {
  std::string text = absl::StrCat("shape: ", ShapeText(tensor.shape), "\n");
  if (tensor.values.empty()) return text;
  const size_t rank = tensor.shape.size();
  const size_t columns = rank == 0 ? 1 : static_cast<size_t>(tensor.shape[rank - 1]);
  const size_t matrix = rank < 3 ? tensor.values.size() : columns * static_cast<size_t>(tensor.shape[rank - 2]);
  for (size_t i = 0; i < tensor.values.size(); ++i) {
    if (i > 0 && i % matrix == 0) text += "\n";
    absl::StrAppendFormat(&text, "%.9g", tensor.values[i]);
    text += (i + 1) % columns == 0 ? "\n" : " ";
  }
  return text;
}

}  // namespace cli
}  // namespace primserve
