#include "server/tensor_conversion.h"

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace primserve {
namespace {

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

TEST(TensorConversion, RoundTripsDataExactly) {
  const std::vector<float> values = {1.5f, -0.0f, 3.25e-30f, std::numeric_limits<float>::max(), 7, 8};
  absl::StatusOr<Tensor> t = TensorFromProto(Make({2, 3}, Bytes(values)), "input", 100);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->shape, (Shape{2, 3}));
  ASSERT_EQ(t->values.size(), values.size());
  EXPECT_EQ(std::memcmp(t->values.data(), values.data(), values.size() * 4), 0);
  v1::Tensor back;
  TensorToProto(*t, &back);
  EXPECT_EQ(back.data(), Bytes(values));
  EXPECT_EQ(back.dtype(), v1::DATA_TYPE_FLOAT32);
  EXPECT_THAT(back.shape(), ::testing::ElementsAre(2, 3));
}

TEST(TensorConversion, AcceptsValues) {
  v1::Tensor proto;
  proto.add_shape(3);
  for (float v : {1.0f, 2.0f, 3.0f}) proto.add_values(v);
  absl::StatusOr<Tensor> t = TensorFromProto(proto, "input", 100);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(t->values, ::testing::ElementsAre(1.0f, 2.0f, 3.0f));
}

TEST(TensorConversion, WidensBfloat16Exactly) {
  // bfloat16 bit patterns of 1.0, -2.0, 0.15625 (exactly representable).
  const uint16_t halves[] = {0x3f80, 0xc000, 0x3e20};
  v1::Tensor proto = Make({3}, std::string(reinterpret_cast<const char*>(halves), sizeof halves));
  proto.set_dtype(v1::DATA_TYPE_BFLOAT16);
  absl::StatusOr<Tensor> t = TensorFromProto(proto, "input", 100);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(t->values, ::testing::ElementsAre(1.0f, -2.0f, 0.15625f));
}

TEST(TensorConversion, EmptyTensorNeedsNoData) {
  absl::StatusOr<Tensor> t = TensorFromProto(Make({4, 0, 3}, ""), "input", 100);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->values.empty());
}

struct BadCase {
  std::string name;
  v1::Tensor proto;
  absl::StatusCode code;
  std::vector<std::string> substrings;
};

TEST(TensorConversion, RejectsBadTensorsBeforeAllocating) {
  std::vector<BadCase> cases;
  cases.push_back({"wrong byte count", Make({2, 3}, std::string(20, '\0')), absl::StatusCode::kInvalidArgument,
                   {"input.data", "expected 24 bytes", "got 20"}});
  {
    v1::Tensor p = Make({2}, std::string(8, '\0'));
    p.add_values(1);
    cases.push_back({"both data and values", p, absl::StatusCode::kInvalidArgument, {"input", "both"}});
  }
  cases.push_back({"neither", Make({2}, ""), absl::StatusCode::kInvalidArgument, {"input", "neither", "2 elements"}});
  {
    v1::Tensor p = Make({2}, std::string(8, '\0'));
    p.set_dtype(static_cast<v1::DataType>(42));
    cases.push_back({"unknown dtype", p, absl::StatusCode::kInvalidArgument, {"input.dtype", "42"}});
  }
  cases.push_back({"negative extent", Make({3, -1}, ""), absl::StatusCode::kInvalidArgument,
                   {"input.shape[1]", "-1"}});
  cases.push_back({"overflowing shape", Make({int64_t{1} << 40, int64_t{1} << 40}, "abcd"),
                   absl::StatusCode::kInvalidArgument, {"input.shape", "overflows"}});
  // [1e6, 1e6] with 4 bytes of data: must fail on the size cap, not try to allocate 4 TB.
  cases.push_back({"huge claim, tiny data", Make({1000000, 1000000}, "abcd"),
                   absl::StatusCode::kResourceExhausted, {"input.shape", "1000000000000", "limit of 1000"}});
  {
    v1::Tensor p;
    p.add_shape(3);
    p.add_values(1);
    cases.push_back({"values count", p, absl::StatusCode::kInvalidArgument, {"input.values", "expected 3", "got 1"}});
  }
  {
    v1::Tensor p = Make({1}, "");
    p.add_values(1);
    p.set_dtype(v1::DATA_TYPE_BFLOAT16);
    cases.push_back({"bf16 values", p, absl::StatusCode::kInvalidArgument, {"input.values", "BFLOAT16"}});
  }
  {
    v1::Tensor p = Make({3}, std::string(4, '\0'));
    p.set_dtype(v1::DATA_TYPE_BFLOAT16);
    cases.push_back({"bf16 byte count", p, absl::StatusCode::kInvalidArgument, {"expected 6 bytes", "bfloat16"}});
  }
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<Tensor> t = TensorFromProto(c.proto, "input", 1000);
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), c.code) << t.status();
    for (const std::string& s : c.substrings) EXPECT_THAT(std::string(t.status().message()), HasSubstr(s));
  }
}

}  // namespace
}  // namespace primserve
