#include "primserve/client/tensor.h"

#include "tensor_call.h"  // NOLINT: this directory's private header

#include <climits>
#include <cstdint>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/repeated_field.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpcpp/support/proto_buffer_reader.h"

namespace primserve {
namespace client {
namespace {

using google::protobuf::internal::WireFormatLite;

// The element count of `shape`; INVALID_ARGUMENT for a negative or overflowing extent.
absl::StatusOr<int64_t> ElementCount(const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t extent : shape) {
    if (extent < 0 || (extent > 0 && count > std::numeric_limits<int64_t>::max() / extent)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor.shape: invalid extent ", extent));
    }
    count *= extent;
  }
  return count;
}

// INVALID_ARGUMENT unless `bytes` is exactly `count` elements of `element_bytes` each.
absl::Status CheckDataSize(size_t bytes, int64_t count, size_t element_bytes) {
  if (bytes / element_bytes != static_cast<uint64_t>(count) || bytes % element_bytes != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor.data: expected ", count * static_cast<int64_t>(element_bytes), " bytes, got ", bytes));
  }
  return absl::OkStatus();
}

absl::Status CheckValuesSize(int64_t values, int64_t count) {
  if (values == count) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("tensor.values: expected ", count, " elements, got ", values));
}

// bfloat16 -> float32 for `count` elements, last to first: `out` may be the storage `bf16`
// points into, since element i overwrites only halves at indices >= i, already read.
void WidenBf16(const char* bf16, size_t count, float* out) {
  for (size_t i = count; i-- > 0;) {
    uint16_t half;
    std::memcpy(&half, bf16 + 2 * i, 2);
    const uint32_t bits = static_cast<uint32_t>(half) << 16;
    std::memcpy(out + i, &bits, 4);
  }
}

// The fields of one v1.Tensor as they come off the wire: `data`'s bytes go straight into
// `tensor->values`' storage (`data_bytes` of it), `values` aside.
struct WireTensor {
  explicit WireTensor(Tensor* out) : tensor(out) {}
  Tensor* tensor;
  int dtype = v1::DATA_TYPE_UNSPECIFIED;
  size_t data_bytes = 0;
  google::protobuf::RepeatedField<float> values;
};

// Merges one length-delimited v1.Tensor from `in` into `wire` (protobuf's merge: repeated fields
// append, the last `dtype` and `data` win). False for malformed bytes.
bool MergeTensor(google::protobuf::io::CodedInputStream* in, WireTensor* wire) {
  uint32_t length = 0;
  if (!in->ReadVarint32(&length)) return false;
  const google::protobuf::io::CodedInputStream::Limit limit = in->PushLimit(static_cast<int>(length));
  for (uint32_t tag = in->ReadTag(); tag != 0; tag = in->ReadTag()) {
    const int field = WireFormatLite::GetTagFieldNumber(tag);
    const WireFormatLite::WireType type = WireFormatLite::GetTagWireType(tag);
    bool ok = true;
    if (field == v1::Tensor::kShapeFieldNumber && type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      google::protobuf::RepeatedField<int64_t> shape;
      ok = WireFormatLite::ReadPackedPrimitive<int64_t, WireFormatLite::TYPE_INT64>(in, &shape);
      wire->tensor->shape.insert(wire->tensor->shape.end(), shape.begin(), shape.end());
    } else if (field == v1::Tensor::kShapeFieldNumber && type == WireFormatLite::WIRETYPE_VARINT) {
      int64_t extent = 0;
      ok = WireFormatLite::ReadPrimitive<int64_t, WireFormatLite::TYPE_INT64>(in, &extent);
      wire->tensor->shape.push_back(extent);
    } else if (field == v1::Tensor::kDtypeFieldNumber && type == WireFormatLite::WIRETYPE_VARINT) {
      ok = WireFormatLite::ReadPrimitive<int, WireFormatLite::TYPE_ENUM>(in, &wire->dtype);
    } else if (field == v1::Tensor::kDataFieldNumber && type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      uint32_t bytes = 0;
      ok = in->ReadVarint32(&bytes) && bytes <= static_cast<uint32_t>(in->BytesUntilLimit());
      if (ok) {
        // Whole floats hold the bytes; a BFLOAT16 tensor is widened in place afterwards.
        wire->tensor->values.resize((bytes + sizeof(float) - 1) / sizeof(float));
        wire->data_bytes = bytes;
        ok = bytes == 0 || in->ReadRaw(wire->tensor->values.data(), static_cast<int>(bytes));
      }
    } else if (field == v1::Tensor::kValuesFieldNumber && type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      ok = WireFormatLite::ReadPackedPrimitive<float, WireFormatLite::TYPE_FLOAT>(in, &wire->values);
    } else if (field == v1::Tensor::kValuesFieldNumber && type == WireFormatLite::WIRETYPE_FIXED32) {
      float value = 0;
      ok = WireFormatLite::ReadPrimitive<float, WireFormatLite::TYPE_FLOAT>(in, &value);
      wire->values.Add(value);
    } else {
      ok = WireFormatLite::SkipField(in, tag);
    }
    if (!ok) return false;
  }
  // Ending short of the length (the stream ran out) is a truncated message.
  if (!in->ConsumedEntireMessage() || in->BytesUntilLimit() != 0) return false;
  in->PopLimit(limit);
  return true;
}

}  // namespace

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
  const absl::StatusOr<int64_t> count = ElementCount(tensor.shape);
  if (!count.ok()) return count.status();
  if (proto.values_size() > 0) {
    if (absl::Status status = CheckValuesSize(proto.values_size(), *count); !status.ok()) return status;
    tensor.values.assign(proto.values().begin(), proto.values().end());
    return tensor;
  }
  const bool bf16 = proto.dtype() == v1::DATA_TYPE_BFLOAT16;
  if (absl::Status status = CheckDataSize(proto.data().size(), *count, bf16 ? 2 : 4); !status.ok()) return status;
  const char* bytes = proto.data().data();
  if (!bf16 && reinterpret_cast<uintptr_t>(bytes) % alignof(float) == 0) {
    // One copy with no zero-fill first (resize + memcpy writes a 64 MiB tensor twice).
    const float* first = reinterpret_cast<const float*>(bytes);
    tensor.values.assign(first, first + *count);
    return tensor;
  }
  tensor.values.resize(static_cast<size_t>(*count));
  if (bf16) {
    WidenBf16(bytes, tensor.values.size(), tensor.values.data());
  } else {
    std::memcpy(tensor.values.data(), bytes, proto.data().size());
  }
  return tensor;
}

namespace internal {

absl::Status ParseTensorReply(grpc::ByteBuffer& wire, int tensor_field, Tensor* tensor) {
  const absl::Status malformed = absl::InternalError("cannot parse the response message");
  grpc::ProtoBufferReader reader(&wire);
  if (!reader.status().ok()) return malformed;
  google::protobuf::io::CodedInputStream in(&reader);
  in.SetTotalBytesLimit(INT_MAX);  // gRPC's message size limit has already applied.
  *tensor = Tensor();
  WireTensor parts(tensor);
  for (uint32_t tag = in.ReadTag(); tag != 0; tag = in.ReadTag()) {
    const bool ok = WireFormatLite::GetTagFieldNumber(tag) == tensor_field &&
                            WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED
                        ? MergeTensor(&in, &parts)
                        : WireFormatLite::SkipField(&in, tag);
    if (!ok) return malformed;
  }
  if (!in.ConsumedEntireMessage()) return malformed;
  // As FromProto: `values` when present, else `data` of the tensor's dtype.
  const absl::StatusOr<int64_t> count = ElementCount(tensor->shape);
  if (!count.ok()) return count.status();
  if (!parts.values.empty()) {
    if (absl::Status status = CheckValuesSize(parts.values.size(), *count); !status.ok()) return status;
    tensor->values.assign(parts.values.begin(), parts.values.end());
    return absl::OkStatus();
  }
  const bool bf16 = parts.dtype == v1::DATA_TYPE_BFLOAT16;
  if (absl::Status status = CheckDataSize(parts.data_bytes, *count, bf16 ? 2 : 4); !status.ok()) return status;
  if (bf16) {
    tensor->values.resize(static_cast<size_t>(*count));
    WidenBf16(reinterpret_cast<const char*>(tensor->values.data()), tensor->values.size(), tensor->values.data());
  }
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace client
}  // namespace primserve

namespace grpc {

Status SerializationTraits<primserve::client::internal::TensorReply, void>::Serialize(
    const primserve::client::internal::TensorReply&, ByteBuffer*, bool*) {
  return Status(StatusCode::INTERNAL, "a TensorReply is a response; it is never sent");
}

Status SerializationTraits<primserve::client::internal::TensorReply, void>::Deserialize(
    ByteBuffer* buffer, primserve::client::internal::TensorReply* reply) {
  reply->status = primserve::client::internal::ParseTensorReply(*buffer, reply->tensor_field, &reply->tensor);
  buffer->Clear();  // The traits own the received bytes (gRPC's protobuf traits do the same).
  return reply->status.ok() ? Status::OK : Status(StatusCode::INTERNAL, std::string(reply->status.message()));
}

}  // namespace grpc
