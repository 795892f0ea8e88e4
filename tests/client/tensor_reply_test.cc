// Tests for client/src/tensor_call.h's ParseTensorReply, differential against protobuf: every
// wire message is also parsed by protobuf into an EchoResponse and converted with FromProto, and
// both must give the same tensor (bit for bit) or the same status. The bytes reach the parser in
// slices of odd sizes, so `data` straddles slice boundaries at every offset.
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "client/src/tensor_call.h"
#include "gmock/gmock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "gtest/gtest.h"
#include "primserve/v1/diagnostics.pb.h"

namespace primserve {
namespace client {
namespace {

constexpr int kOutput = v1::EchoResponse::kOutputFieldNumber;

// `wire` as a ByteBuffer of slices of `slice_bytes` bytes (the last one shorter).
grpc::ByteBuffer Slices(const std::string& wire, size_t slice_bytes) {
  std::vector<grpc::Slice> slices;
  for (size_t at = 0; at < wire.size(); at += slice_bytes) {
    slices.emplace_back(wire.data() + at, std::min(slice_bytes, wire.size() - at));
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

// What protobuf + FromProto make of `wire`: INTERNAL when protobuf cannot parse it.
absl::StatusOr<Tensor> Reference(const std::string& wire) {
  v1::EchoResponse response;
  if (!response.ParseFromString(wire)) return absl::InternalError("cannot parse the response message");
  return FromProto(response.output());
}

std::vector<uint32_t> Bits(const std::vector<float>& values) {
  std::vector<uint32_t> bits(values.size());
  if (!values.empty()) std::memcpy(bits.data(), values.data(), 4 * values.size());
  return bits;
}

// Parses `wire` in several slicings and checks each against the reference.
void ExpectSameAsProtobuf(const std::string& wire) {
  const absl::StatusOr<Tensor> expected = Reference(wire);
  for (size_t slice_bytes : {size_t{1}, size_t{3}, size_t{7}, size_t{4096}, wire.size() + 1}) {
    SCOPED_TRACE(testing::Message() << "slices of " << slice_bytes << " bytes, wire " << wire.size() << " bytes");
    grpc::ByteBuffer buffer = Slices(wire, slice_bytes);
    Tensor parsed;
    const absl::Status status = internal::ParseTensorReply(buffer, kOutput, &parsed);
    ASSERT_EQ(status.code(), expected.status().code()) << status << " vs " << expected.status();
    if (!expected.ok()) {
      EXPECT_EQ(status.message(), expected.status().message());
      continue;
    }
    EXPECT_EQ(parsed.shape, expected->shape);
    EXPECT_EQ(Bits(parsed.values), Bits(expected->values));
  }
}

std::vector<float> Ramp(size_t count, float scale) {
  std::vector<float> values(count);
  for (size_t i = 0; i < count; ++i) values[i] = scale * (static_cast<float>(i) - 0.37f * static_cast<float>(count));
  return values;
}

std::string Wire(const v1::Tensor& tensor) {
  v1::EchoResponse response;
  *response.mutable_output() = tensor;
  return response.SerializeAsString();
}

// Hand-written wire bytes, for what protobuf's serializer never emits (field order, unpacked
// repeated fields, unknown fields).
class WireWriter {
 public:
  WireWriter& Varint(uint32_t field, uint64_t value) {
    Tag(field, 0);
    Raw(value);
    return *this;
  }
  WireWriter& Bytes(uint32_t field, const std::string& bytes) {
    Tag(field, 2);
    Raw(bytes.size());
    out_ += bytes;
    return *this;
  }
  WireWriter& Fixed32(uint32_t field, float value) {
    Tag(field, 5);
    char bytes[4];
    std::memcpy(bytes, &value, 4);
    out_.append(bytes, 4);
    return *this;
  }
  const std::string& str() const { return out_; }

 private:
  void Tag(uint32_t field, uint32_t type) { Raw((field << 3) | type); }
  void Raw(uint64_t value) {
    for (; value >= 0x80; value >>= 7) out_ += static_cast<char>((value & 0x7f) | 0x80);
    out_ += static_cast<char>(value);
  }
  std::string out_;
};

std::string FloatBytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), 4 * values.size());
}

TEST(ParseTensorReplyTest, Float32DataOfOddShapesMatchesProtobuf) {
  for (const std::vector<int64_t>& shape : std::vector<std::vector<int64_t>>{{}, {0}, {1}, {3, 5}, {2, 1, 7}, {1031}}) {
    v1::Tensor tensor;
    tensor.mutable_shape()->Add(shape.begin(), shape.end());
    tensor.set_dtype(v1::DATA_TYPE_FLOAT32);
    int64_t count = 1;
    for (int64_t extent : shape) count *= extent;
    *tensor.mutable_data() = FloatBytes(Ramp(static_cast<size_t>(count), 0.25f));
    ExpectSameAsProtobuf(Wire(tensor));
  }
}

TEST(ParseTensorReplyTest, Bfloat16DataIsWidenedAsFromProtoDoes) {
  for (int64_t count : {1, 2, 3, 8, 129}) {
    v1::Tensor tensor;
    tensor.add_shape(count);
    tensor.set_dtype(v1::DATA_TYPE_BFLOAT16);
    std::mt19937 random(static_cast<uint32_t>(count));
    std::string bytes(2 * count, '\0');
    for (char& byte : bytes) byte = static_cast<char>(random());
    *tensor.mutable_data() = bytes;
    ExpectSameAsProtobuf(Wire(tensor));
  }
}

// FromProto and the parser share the widening, so its values are also checked by hand:
// bfloat16 0x3f80 = 1, 0xc000 = -2, 0x4049 = 3.140625 (little-endian on the wire).
TEST(ParseTensorReplyTest, Bfloat16GoldenValues) {
  const std::string tensor = WireWriter().Varint(1, 3).Varint(2, v1::DATA_TYPE_BFLOAT16).Bytes(3, std::string("\x80\x3f\x00\xc0\x49\x40", 6)).str();
  grpc::ByteBuffer buffer = Slices(WireWriter().Bytes(kOutput, tensor).str(), 3);
  Tensor parsed;
  ASSERT_TRUE(internal::ParseTensorReply(buffer, kOutput, &parsed).ok());
  EXPECT_THAT(parsed.shape, testing::ElementsAre(3));
  EXPECT_THAT(parsed.values, testing::ElementsAre(1.0f, -2.0f, 3.140625f));
}

TEST(ParseTensorReplyTest, ValuesFieldPackedOrNotMatchesProtobuf) {
  v1::Tensor tensor;
  tensor.add_shape(2);
  tensor.add_shape(3);
  for (float value : Ramp(6, -1.5f)) tensor.add_values(value);
  ExpectSameAsProtobuf(Wire(tensor));

  // Unpacked shape and values; `values` wins over `data`, as in FromProto.
  const std::string unpacked = WireWriter()
                                   .Varint(1, 2)
                                   .Varint(1, 2)
                                   .Bytes(3, FloatBytes(Ramp(7, 1.0f)))
                                   .Fixed32(4, 1.5f)
                                   .Fixed32(4, -2.0f)
                                   .Fixed32(4, 3.25f)
                                   .Fixed32(4, 0.0f)
                                   .str();
  ExpectSameAsProtobuf(WireWriter().Bytes(kOutput, unpacked).str());
}

TEST(ParseTensorReplyTest, FieldOrderUnknownFieldsAndRepeatedTensorsMergeAsProtobufDoes) {
  // dtype after data: the bytes are bfloat16 although they arrived before the dtype said so.
  const std::string late_dtype = WireWriter().Bytes(3, std::string("\x80\x3f\x00\xc0\x49\x40", 6)).Varint(1, 3).Varint(2, 2).str();
  ExpectSameAsProtobuf(WireWriter().Bytes(kOutput, late_dtype).str());

  // Unknown fields of every wire type, at the top level and inside the tensor.
  const std::string tensor = WireWriter()
                                 .Varint(99, 12345)
                                 .Varint(1, 2)
                                 .Bytes(77, "ignored")
                                 .Fixed32(55, 1.0f)
                                 .Varint(2, 1)
                                 .Bytes(3, FloatBytes({1.0f, -2.0f}))
                                 .str();
  ExpectSameAsProtobuf(WireWriter().Varint(7, 1).Bytes(kOutput, tensor).Bytes(9, "tail").str());

  // The tensor field twice: shape appends, the last data wins.
  const std::string first = WireWriter().Varint(1, 2).Bytes(3, FloatBytes({9.0f, 9.0f, 9.0f})).str();
  const std::string second = WireWriter().Varint(1, 2).Bytes(3, FloatBytes({1.0f, 2.0f, 3.0f, 4.0f})).str();
  ExpectSameAsProtobuf(WireWriter().Bytes(kOutput, first).Bytes(kOutput, second).str());
}

TEST(ParseTensorReplyTest, ElementCountMismatchAndBadShapesGiveFromProtosStatus) {
  v1::Tensor short_data;
  short_data.add_shape(4);
  *short_data.mutable_data() = FloatBytes({1.0f, 2.0f, 3.0f});
  ExpectSameAsProtobuf(Wire(short_data));

  v1::Tensor odd_bf16;
  odd_bf16.add_shape(2);
  odd_bf16.set_dtype(v1::DATA_TYPE_BFLOAT16);
  *odd_bf16.mutable_data() = std::string(5, '\1');
  ExpectSameAsProtobuf(Wire(odd_bf16));

  v1::Tensor negative;
  negative.add_shape(-3);
  ExpectSameAsProtobuf(Wire(negative));

  v1::Tensor overflow;
  overflow.add_shape(int64_t{1} << 40);
  overflow.add_shape(int64_t{1} << 40);
  ExpectSameAsProtobuf(Wire(overflow));

  v1::Tensor wrong_values;
  wrong_values.add_shape(3);
  wrong_values.add_values(1.0f);
  ExpectSameAsProtobuf(Wire(wrong_values));

  // No tensor at all: FromProto of an empty tensor (a scalar without its 4 bytes).
  ExpectSameAsProtobuf("");
}

TEST(ParseTensorReplyTest, MalformedBytesAreInternal) {
  v1::Tensor tensor;
  tensor.add_shape(5);
  *tensor.mutable_data() = FloatBytes(Ramp(5, 1.0f));
  const std::string wire = Wire(tensor);
  // Every truncation, and a data length running past the tensor's own length.
  for (size_t length = 1; length < wire.size(); ++length) {
    SCOPED_TRACE(length);
    ExpectSameAsProtobuf(wire.substr(0, length));
  }
  const std::string overlong = WireWriter().Bytes(kOutput, WireWriter().Bytes(3, "abcd").str() + "x").str();
  std::string lying = overlong;
  lying[3] = 0x7f;  // The data field now claims 127 bytes inside a 7-byte tensor.
  ExpectSameAsProtobuf(lying);
  ExpectSameAsProtobuf(std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11));  // Overlong varint tag.
  ExpectSameAsProtobuf(WireWriter().Varint(kOutput, 3).str());  // The tensor field as a varint.

  grpc::ByteBuffer buffer = Slices(lying, 2);
  Tensor parsed;
  EXPECT_EQ(internal::ParseTensorReply(buffer, kOutput, &parsed).code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace client
}  // namespace primserve
