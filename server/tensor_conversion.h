// The one conversion layer between the wire `primserve.v1.Tensor` and the core `Tensor`.
//
// Reading checks, in this order and before allocating anything: the dtype is known, the
// shape has no negative extent and its product fits in int64 and under `max_elements`, exactly
// one of `data` / `values` carries the elements (both may be empty for an empty tensor), and
// their count equals the product of the shape. Every failure is INVALID_ARGUMENT naming the field
// (e.g. "query.data") with the expected and actual values, except the size cap
// (RESOURCE_EXHAUSTED). BFLOAT16 input is widened exactly to float32.
//
// Example:
//   ASSIGN_OR_RETURN(Tensor input, TensorFromProto(request.input(), "input", limits.max_elements));
//   TensorToProto(output, response.mutable_output());
#ifndef PRIMSERVE_SERVER_TENSOR_CONVERSION_H_
#define PRIMSERVE_SERVER_TENSOR_CONVERSION_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/tensor.h"
#include "primserve/v1/tensor.pb.h"

namespace primserve {

absl::StatusOr<Tensor> TensorFromProto(const v1::Tensor& proto, absl::string_view field,
                                       int64_t max_elements);

// Writes shape, dtype FLOAT32 and raw little-endian `data`.
void TensorToProto(const Tensor& tensor, v1::Tensor* proto);

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_TENSOR_CONVERSION_H_
