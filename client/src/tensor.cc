#include "primserve/client/tensor.h"

#include <cstdint>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"

namespace primserve {
namespace client {

v1::Tensor ToProto(const Tensor& tensor) {
  v1::Tensor proto;
  proto.mutable_shape()->Add(tensor.shape.begin(), tensor.shape.end());
  proto.set_dtype(v1::DATA_TYPE_FLOAT32);
  proto.mutable_data()->assign(reinterpret_cast<const char*>(tensor.values.data()),
                               tensor.values.size() * sizeof(float));
  return proto;
}

absl::StatusOr<Tensor> FromProto(const v1::Tensor& proto) {
  Tensor tensor;
  tensor.shape.assign(proto.shape().begin(), proto.shape().end());
  int64_t count = 1;
  for (int64_t extent : tensor.shape) {
    if (extent < 0 || (extent > 0 && count > std::numeric_limits<int64_t>::max() / extent)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor.shape: invalid extent ", extent));
    }
    count *= extent;
  }
  if (proto.values_size() > 0) {
    if (proto.values_size() != count) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor.values: expected ", count, " elements, got ", proto.values_size()));
    }
    tensor.values.assign(proto.values().begin(), proto.values().end());
    return tensor;
  }
  const bool bf16 = proto.dtype() == v1::DATA_TYPE_BFLOAT16;
  const size_t element_bytes = bf16 ? 2 : 4;
  if (proto.data().size() / element_bytes != static_cast<uint64_t>(count) ||
      proto.data().size() % element_bytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor.data: expected ", count * element_bytes,
                                                   " bytes, got ", proto.data().size()));
  }
  const char* bytes = proto.data().data();
  if (!bf16 && reinterpret_cast<uintptr_t>(bytes) % alignof(float) == 0) {
    // One copy with no zero-fill first (resize + memcpy writes a 64 MiB tensor twice).
    const float* first = reinterpret_cast<const float*>(bytes);
    tensor.values.assign(first, first + count);
    return tensor;
  }
  tensor.values.resize(static_cast<size_t>(count));
  if (!bf16) {
    std::memcpy(tensor.values.data(), bytes, proto.data().size());
  } else {
    for (size_t i = 0; i < tensor.values.size(); ++i) {
      uint16_t half;
      std::memcpy(&half, proto.data().data() + 2 * i, 2);
      const uint32_t bits = static_cast<uint32_t>(half) << 16;
      std::memcpy(&tensor.values[i], &bits, 4);
    }
  }
  return tensor;
}

}  // namespace client
}  // namespace primserve
