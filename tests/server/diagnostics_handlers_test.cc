// Echo (the transport baseline) and the zero-copy tensor views the ApplyRope handler uses.
#include "server/diagnostics_handlers.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/tensor_conversion.h"

namespace primserve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Bytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

v1::Tensor Make(std::vector<int64_t> shape, const std::string& data) {
  v1::Tensor t;
  for (int64_t e : shape) t.add_shape(e);
  t.set_data(data);
  return t;
}

TEST(HandleEcho, ReturnsTheInputFieldForField) {
  v1::EchoRequest request;
  *request.mutable_input() = Make({2, 3}, Bytes({1, 2, 3, 4, 5, 6}));
  request.mutable_input()->set_dtype(v1::DATA_TYPE_BFLOAT16);  // Not validated: echoed as sent.
  v1::EchoResponse response;
  ASSERT_TRUE(HandleEcho(Limits{}, request, &response).ok());
  EXPECT_EQ(response.output().SerializeAsString(), request.input().SerializeAsString());
}

TEST(HandleEcho, RefusesPayloadsOverTheMessageLimit) {
  v1::EchoRequest request;
  *request.mutable_input() = Make({5}, Bytes({1, 2, 3, 4, 5}));
  v1::EchoResponse response;
  const absl::Status status = HandleEcho(Limits::ForMessageBytes(Limits::kResponseEnvelopeBytes + 16), request, &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("at most 16 payload bytes"));
  EXPECT_THAT(status.message(), HasSubstr("got 20"));
}

TEST(TensorView, AliasesFloat32DataWithoutACopy) {
  const v1::Tensor proto = Make({2, 2}, Bytes({1.5f, -2, 3, 4}));
  absl::StatusOr<TensorView> view = TensorViewFromProto(proto, "input", 100);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(static_cast<const void*>(view->values.data()), static_cast<const void*>(proto.data().data()));
  EXPECT_THAT(view->values, ElementsAre(1.5f, -2, 3, 4));
  EXPECT_THAT(view->shape, ElementsAre(2, 2));
  EXPECT_TRUE(view->owned.empty());
}

TEST(TensorView, ConvertsValuesAndBfloat16IntoOwnedStorage) {
  v1::Tensor values;
  values.add_shape(2);
  values.add_values(1);
  values.add_values(2);
  absl::StatusOr<TensorView> view = TensorViewFromProto(values, "input", 100);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->values.data(), view->owned.data());
  EXPECT_THAT(view->values, ElementsAre(1, 2));

  const uint16_t one_and_half = 0x3FC0;  // bfloat16 1.5
  v1::Tensor bf16 = Make({1}, std::string(reinterpret_cast<const char*>(&one_and_half), 2));
  bf16.set_dtype(v1::DATA_TYPE_BFLOAT16);
  view = TensorViewFromProto(bf16, "input", 100);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_THAT(view->values, ElementsAre(1.5f));
}

// The view reports exactly what TensorFromProto reports, for each kind of bad tensor.
TEST(TensorView, ErrorsMatchTensorFromProto) {
  v1::Tensor both = Make({1}, Bytes({1}));
  both.add_values(1);
  v1::Tensor negative = Make({-1}, Bytes({1}));
  const std::vector<v1::Tensor> bad = {Make({3}, Bytes({1, 2})), both, negative, Make({1000}, Bytes({1}))};
  for (const v1::Tensor& proto : bad) {
    SCOPED_TRACE(proto.DebugString());
    const absl::Status expected = TensorFromProto(proto, "input", 100).status();
    const absl::Status actual = TensorViewFromProto(proto, "input", 100).status();
    ASSERT_FALSE(expected.ok());
    EXPECT_EQ(actual, expected);
  }
}

TEST(MutableTensorData, SizesTheResponseBytesToFillInPlace) {
  v1::Tensor proto = Make({9}, "stale");
  absl::Span<float> out = MutableTensorData({2, 3}, &proto);
  ASSERT_EQ(out.size(), 6u);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(i);
  EXPECT_EQ(proto.data(), Bytes({0, 1, 2, 3, 4, 5}));
  EXPECT_THAT(proto.shape(), ElementsAre(2, 3));
  EXPECT_EQ(proto.dtype(), v1::DATA_TYPE_FLOAT32);
}

// A zero extent makes a shape valid whatever the other extents are; their product must not be
// formed (signed overflow; found by tests/fuzz, corpus regression-rope-zero-extent-overflow).
TEST(MutableTensorData, ZeroExtentNextToHugeOnesIsEmpty) {
  v1::Tensor proto;
  const int64_t huge = int64_t{1} << 40;
  EXPECT_TRUE(MutableTensorData({huge, huge, 0}, &proto).empty());
  EXPECT_TRUE(proto.data().empty());
  EXPECT_THAT(proto.shape(), ElementsAre(huge, huge, 0));
}

}  // namespace
}  // namespace primserve
