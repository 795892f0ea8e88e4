// A plain float32 tensor for client code, and its conversion to and from the wire Tensor.
#ifndef PRIMSERVE_CLIENT_TENSOR_H_
#define PRIMSERVE_CLIENT_TENSOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "primserve/v1/tensor.pb.h"

namespace primserve {
namespace client {

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> values;  // Row-major; size equals the product of shape.
};

// Raw float32 `data`, shape and dtype.
v1::Tensor ToProto(const Tensor& tensor);

// Accepts `data` (FLOAT32 or BFLOAT16) or `values`; INVALID_ARGUMENT when the element count does
// not match the shape.
absl::StatusOr<Tensor> FromProto(const v1::Tensor& proto);

}  // namespace client
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_TENSOR_H_
