#include "server/tensor_conversion.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the wire format is little-endian; this build copies bytes as-is");

namespace primserve {

absl::StatusOr<Tensor> TensorFromProto(const v1::Tensor& proto, absl::string_view field,
                                       int64_t max_elements) {
  size_t element_bytes = 0;
  switch (proto.dtype()) {
    case v1::DATA_TYPE_UNSPECIFIED:
    case v1::DATA_TYPE_FLOAT32:
      element_bytes = 4;
      break;
    case v1::DATA_TYPE_BFLOAT16:
      element_bytes = 2;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(field, ".dtype: expected DATA_TYPE_FLOAT32 or ",
                                                     "DATA_TYPE_BFLOAT16, got enum value ",
                                                     static_cast<int>(proto.dtype())));
  }
  Tensor tensor;
  tensor.shape.assign(proto.shape().begin(), proto.shape().end());
  ASSIGN_OR_RETURN(const int64_t count,
                   CheckedElementCount(tensor.shape, absl::StrCat(field, ".shape"), max_elements));
  const bool has_data = !proto.data().empty();
  const bool has_values = proto.values_size() > 0;
  if (has_data && has_values) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": expected one of data or values, got both (",
                                                   proto.data().size(), " bytes and ", proto.values_size(),
                                                   " values)"));
  }
  if (!has_data && !has_values && count > 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": expected ", count, " elements for shape ",
                                                   ShapeToString(tensor.shape),
                                                   " in data or values, got neither"));
  }
  if (has_values) {
    if (proto.dtype() == v1::DATA_TYPE_BFLOAT16) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".values: values are float32; DATA_TYPE_BFLOAT16 needs raw data"));
    }
    if (proto.values_size() != count) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".values: expected ", count, " elements for shape ",
                                                     ShapeToString(tensor.shape), ", got ",
                                                     proto.values_size()));
    }
    tensor.values.assign(proto.values().begin(), proto.values().end());
    return tensor;
  }
  // count <= max_elements, so count * element_bytes cannot overflow.
  const size_t expected_bytes = static_cast<size_t>(count) * element_bytes;
  if (proto.data().size() != expected_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".data: expected ", expected_bytes, " bytes (", count, " ",
        element_bytes == 4 ? "float32" : "bfloat16", " elements for shape ", ShapeToString(tensor.shape),
        "), got ", proto.data().size()));
  }
  tensor.values.resize(static_cast<size_t>(count));
  const char* bytes = proto.data().data();
  if (element_bytes == 4) {
    // An empty tensor's vector has no buffer: memcpy from / to null is undefined even for 0 bytes.
    if (expected_bytes > 0) std::memcpy(tensor.values.data(), bytes, expected_bytes);
  } else {
    // bfloat16 is the upper half of a float32: widening is exact.
    for (size_t i = 0; i < tensor.values.size(); ++i) {
      uint16_t half;
      std::memcpy(&half, bytes + 2 * i, 2);
      const uint32_t bits = static_cast<uint32_t>(half) << 16;
      std::memcpy(&tensor.values[i], &bits, 4);
    }
  }
  return tensor;
}

void TensorToProto(const Tensor& tensor, v1::Tensor* proto) {
  proto->Clear();
  proto->mutable_shape()->Add(tensor.shape.begin(), tensor.shape.end());
  proto->set_dtype(v1::DATA_TYPE_FLOAT32);
  proto->mutable_data()->assign(reinterpret_cast<const char*>(tensor.values.data()),
                                tensor.values.size() * sizeof(float));
}

absl::StatusOr<TensorView> TensorViewFromProto(const v1::Tensor& proto, absl::string_view field,
                                               int64_t max_elements) {
  TensorView view;
  const std::string& data = proto.data();
  const bool aliasable = (proto.dtype() == v1::DATA_TYPE_UNSPECIFIED || proto.dtype() == v1::DATA_TYPE_FLOAT32) &&
                         !data.empty() && reinterpret_cast<uintptr_t>(data.data()) % alignof(float) == 0;
  if (!aliasable) {
    ASSIGN_OR_RETURN(Tensor tensor, TensorFromProto(proto, field, max_elements));
    view.shape = std::move(tensor.shape);
    view.owned = std::move(tensor.values);
    view.values = view.owned;
    return view;
  }
  // The same checks as TensorFromProto, in its order, for float32 `data`.
  view.shape.assign(proto.shape().begin(), proto.shape().end());
  ASSIGN_OR_RETURN(const int64_t count,
                   CheckedElementCount(view.shape, absl::StrCat(field, ".shape"), max_elements));
  if (proto.values_size() > 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": expected one of data or values, got both (",
                                                   data.size(), " bytes and ", proto.values_size(), " values)"));
  }
  const size_t expected_bytes = static_cast<size_t>(count) * sizeof(float);
  if (data.size() != expected_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".data: expected ", expected_bytes, " bytes (", count,
                                                   " float32 elements for shape ", ShapeToString(view.shape),
                                                   "), got ", data.size()));
  }
  // Why no copy: the wire format is little-endian float32 like the host's, and the string's
  // buffer comes from operator new (aligned for any fundamental type; checked above). The bytes
  // were written by protobuf's parser in another translation unit and are only read here.
  view.values = absl::MakeConstSpan(reinterpret_cast<const float*>(data.data()), static_cast<size_t>(count));
  return view;
}

absl::Span<float> MutableTensorData(absl::Span<const int64_t> shape, v1::Tensor* proto) {
  proto->Clear();
  proto->mutable_shape()->Add(shape.begin(), shape.end());
  proto->set_dtype(v1::DATA_TYPE_FLOAT32);
  // A validated shape with a zero extent may have other extents whose product overflows: multiply
  // only when no extent is zero.
  const bool empty = std::find(shape.begin(), shape.end(), int64_t{0}) != shape.end();
  int64_t count = empty ? 0 : 1;
  for (int64_t extent : shape) count = empty ? 0 : count * extent;
  std::string* data = proto->mutable_data();
  data->resize(static_cast<size_t>(count) * sizeof(float));
  return absl::MakeSpan(reinterpret_cast<float*>(data->data()), static_cast<size_t>(count));
}

absl::StatusOr<ComputePrecision> ComputePrecisionFromProto(v1::ComputePrecision precision,
                                                           absl::string_view field) {
  switch (precision) {
    case v1::COMPUTE_PRECISION_UNSPECIFIED:
    case v1::COMPUTE_PRECISION_F32: return ComputePrecision::kF32;
    case v1::COMPUTE_PRECISION_BF16: return ComputePrecision::kBF16;
    default:
      return absl::InvalidArgumentError(absl::StrCat(field, ": unknown enum value ", static_cast<int>(precision)));
  }
}

}  // namespace primserve
