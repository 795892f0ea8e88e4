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
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/tensor.h"
#include "primserve/v1/tensor.pb.h"

namespace primserve {

absl::StatusOr<Tensor> TensorFromProto(const v1::Tensor& proto, absl::string_view field,
                                       int64_t max_elements);

// Writes shape, dtype FLOAT32 and raw little-endian `data`.
void TensorToProto(const Tensor& tensor, v1::Tensor* proto);

// A read-only float32 view of a wire tensor, checked as TensorFromProto. When the proto carries
// float32 `data` whose buffer is 4-byte aligned (protobuf's heap strings are), `values` points
// into the proto's bytes with no copy, so the proto must outlive the view; otherwise (bfloat16,
// `values`, an unaligned buffer) the elements are converted into `owned` and `values` points
// there. Move-only: a copy would leave `values` pointing into the original's `owned`.
struct TensorView {
  TensorView() = default;
  TensorView(TensorView&&) = default;
  TensorView& operator=(TensorView&&) = default;
  TensorView(const TensorView&) = delete;
  TensorView& operator=(const TensorView&) = delete;

  Shape shape;
  absl::Span<const float> values;
  std::vector<float> owned;
};

absl::StatusOr<TensorView> TensorViewFromProto(const v1::Tensor& proto, absl::string_view field,
                                               int64_t max_elements);

// Sets `proto` to a FLOAT32 tensor of `shape` and returns its `data` bytes as floats for the
// caller to fill in place: a response built with no second copy. Precondition: the shape was
// validated (its element count fits in memory).
absl::Span<float> MutableTensorData(absl::Span<const int64_t> shape, v1::Tensor* proto);

// The wire's compute_precision as the core's (UNSPECIFIED means F32; an unknown value is
// INVALID_ARGUMENT naming `field`).
absl::StatusOr<ComputePrecision> ComputePrecisionFromProto(v1::ComputePrecision precision,
                                                           absl::string_view field);

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_TENSOR_CONVERSION_H_
