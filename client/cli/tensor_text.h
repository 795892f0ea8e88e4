// Printing a small tensor as text: a shape line, then one row of the last dimension per line,
// values in full float32 precision (%.9g round-trips every float). Rank >= 3 tensors put a
// blank line between consecutive [rows, columns] matrices, as numpy does.
//
// Example (sinusoidal --length=2 --dim=4):
//   shape: [2, 4]
//   0 1 0 1
//   0.841470957 0.540302277 0.00999983307 0.999949992
#ifndef PRIMSERVE_CLIENT_CLI_TENSOR_TEXT_H_
#define PRIMSERVE_CLIENT_CLI_TENSOR_TEXT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "primserve/client/tensor.h"

namespace primserve {
namespace cli {

// The most elements the CLI prints; larger results need --output.
inline constexpr int64_t kMaxPrintElements = 10000;

// "[2, 4]"; "[]" for a scalar.
std::string ShapeText(const std::vector<int64_t>& shape);

// Precondition: tensor.values.size() equals the product of tensor.shape.
std::string FormatTensorText(const client::Tensor& tensor);

}  // namespace cli
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_CLI_TENSOR_TEXT_H_
