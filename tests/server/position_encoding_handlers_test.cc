// The PositionEncoding handlers without a network: the bad-input table (code and field for
// every row) and a golden call through the wire types.
#include "server/position_encoding_handlers.h"

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/tensor_conversion.h"

namespace primserve {
namespace {

using ::testing::HasSubstr;

v1::Tensor FloatTensor(std::vector<int64_t> shape, float fill = 0.5f) {
  Tensor t;
  t.shape = shape;
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  t.values.assign(static_cast<size_t>(n), fill);
  v1::Tensor proto;
  TensorToProto(t, &proto);
  return proto;
}

TEST(HandleApplyRope, GoldenInterleavedAndHalfSplit) {
  // MATH.md section 2: q = [1, 2, 3, 4] at position 1.
  v1::ApplyRopeRequest request;
  for (float v : {1.0f, 2.0f, 3.0f, 4.0f}) request.mutable_input()->add_values(v);
  request.mutable_input()->add_shape(1);
  request.mutable_input()->add_shape(4);
  request.add_positions(1.0);
  const std::vector<std::pair<v1::RopePairing, std::vector<double>>> expected = {
      {v1::ROPE_PAIRING_INTERLEAVED, {-1.1426396637, 1.9220755965, 2.9598506679, 4.0297995017}},
      {v1::ROPE_PAIRING_HALF_SPLIT, {-1.9841106486, 1.9599006675, 2.4623779024, 4.0197996683}},
  };
  for (const auto& [pairing, want] : expected) {
    SCOPED_TRACE(v1::RopePairing_Name(pairing));
    request.set_pairing(pairing);
    v1::ApplyRopeResponse response;
    ASSERT_TRUE(HandleApplyRope(Limits(), request, &response).ok());
    absl::StatusOr<Tensor> out = TensorFromProto(response.output(), "output", 100);
    ASSERT_TRUE(out.ok());
    EXPECT_EQ(out->shape, (Shape{1, 4}));
    // float32 on the wire: a few ulps of values of magnitude ~4.
    for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(out->values[i], want[i], 2e-6);
  }
}

TEST(HandleSinusoidal, GoldenAndExplicitPositions) {
  v1::SinusoidalRequest request;
  request.set_length(2);
  request.set_dim(4);
  v1::SinusoidalResponse response;
  ASSERT_TRUE(HandleSinusoidal(Limits(), request, &response).ok());
  absl::StatusOr<Tensor> out = TensorFromProto(response.output(), "output", 100);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->shape, (Shape{2, 4}));
  const double want[] = {0, 1, 0, 1, 0.8414709848, 0.5403023059, 0.0099998333, 0.9999500004};
  for (size_t i = 0; i < 8; ++i) EXPECT_NEAR(out->values[i], want[i], 1e-7);

  // Explicit positions override length; a matching length is accepted too.
  request.add_positions(1.0);
  v1::SinusoidalResponse one;
  EXPECT_EQ(HandleSinusoidal(Limits(), request, &one).code(), absl::StatusCode::kInvalidArgument)
      << "length 2 with 1 position is ambiguous";
  request.set_length(0);
  ASSERT_TRUE(HandleSinusoidal(Limits(), request, &one).ok());
  absl::StatusOr<Tensor> row = TensorFromProto(one.output(), "output", 100);
  ASSERT_TRUE(row.ok());
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(row->values[i], out->values[4 + i]);
}

struct BadRow {
  std::string name;
  std::function<void(v1::ApplyRopeRequest*)> edit;
  absl::StatusCode code;
  std::string field;
};

TEST(HandleApplyRope, BadInputTable) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<BadRow> rows = {
      {"missing input", [](auto* r) { r->clear_input(); }, absl::StatusCode::kInvalidArgument, "input"},
      {"odd dim", [](auto* r) { *r->mutable_input() = FloatTensor({3, 5}); }, absl::StatusCode::kInvalidArgument,
       "input.shape[-1]"},
      {"2-D dim not multiple of 4",
       [](auto* r) {
         *r->mutable_input() = FloatTensor({4, 6});
         r->set_kind(v1::ROPE_KIND_ROPE_2D);
         r->set_grid_height(2);
         r->set_grid_width(2);
       },
       absl::StatusCode::kInvalidArgument, "multiple of 4"},
      {"rotary_dim > dim", [](auto* r) { r->set_rotary_dim(10); }, absl::StatusCode::kInvalidArgument, "rotary_dim"},
      {"rotary_dim odd", [](auto* r) { r->set_rotary_dim(3); }, absl::StatusCode::kInvalidArgument, "rotary_dim"},
      {"rotary_dim negative", [](auto* r) { r->set_rotary_dim(-2); }, absl::StatusCode::kInvalidArgument,
       "rotary_dim"},
      {"positions length", [](auto* r) { r->add_positions(1.0); }, absl::StatusCode::kInvalidArgument,
       "positions: expected 3"},
      {"NaN position",
       [nan](auto* r) {
         for (double p : {0.0, nan, 2.0}) r->add_positions(p);
       },
       absl::StatusCode::kInvalidArgument, "positions[1]"},
      {"Inf position",
       [inf](auto* r) {
         for (double p : {0.0, 1.0, inf}) r->add_positions(p);
       },
       absl::StatusCode::kInvalidArgument, "positions[2]"},
      {"NaN input",
       [](auto* r) { *r->mutable_input() = FloatTensor({3, 8}, std::numeric_limits<float>::quiet_NaN()); },
       absl::StatusCode::kInvalidArgument, "input[0]"},
      {"Inf input",
       [](auto* r) { *r->mutable_input() = FloatTensor({3, 8}, -std::numeric_limits<float>::infinity()); },
       absl::StatusCode::kInvalidArgument, "-Inf"},
      {"rank 1", [](auto* r) { *r->mutable_input() = FloatTensor({8}); }, absl::StatusCode::kInvalidArgument,
       "rank >= 2"},
      {"data/shape mismatch", [](auto* r) { r->mutable_input()->mutable_data()->resize(20); },
       absl::StatusCode::kInvalidArgument, "input.data: expected 96 bytes"},
      {"grid mismatch",
       [](auto* r) {
         r->set_kind(v1::ROPE_KIND_ROPE_2D);
         r->set_grid_height(2);
         r->set_grid_width(2);
       },
       absl::StatusCode::kInvalidArgument, "grid_height"},
      {"2-D neither positions nor grid", [](auto* r) { r->set_kind(v1::ROPE_KIND_ROPE_2D); },
       absl::StatusCode::kInvalidArgument, "neither"},
      {"2-D positions_x length",
       [](auto* r) {
         r->set_kind(v1::ROPE_KIND_ROPE_2D);
         r->add_positions_x(0);
         r->add_positions_y(0);
       },
       absl::StatusCode::kInvalidArgument, "positions_x"},
      {"1-D with grid", [](auto* r) { r->set_grid_width(3); }, absl::StatusCode::kInvalidArgument, "ROPE_2D"},
      {"unknown pairing", [](auto* r) { r->set_pairing(static_cast<v1::RopePairing>(9)); },
       absl::StatusCode::kInvalidArgument, "pairing"},
      {"unknown kind", [](auto* r) { r->set_kind(static_cast<v1::RopeKind>(9)); }, absl::StatusCode::kInvalidArgument,
       "kind"},
      {"negative base", [](auto* r) { r->set_base(-1); }, absl::StatusCode::kInvalidArgument, "base"},
      {"oversized claim",
       [](auto* r) {
         r->mutable_input()->clear_shape();
         r->mutable_input()->add_shape(1000000);
         r->mutable_input()->add_shape(1000000);
       },
       absl::StatusCode::kResourceExhausted, "input.shape"},
  };
  for (const BadRow& row : rows) {
    SCOPED_TRACE(row.name);
    v1::ApplyRopeRequest request;
    *request.mutable_input() = FloatTensor({3, 8});
    row.edit(&request);
    v1::ApplyRopeResponse response;
    const absl::Status status = HandleApplyRope(Limits(), request, &response);
    EXPECT_EQ(status.code(), row.code) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(row.field));
  }
}

TEST(HandleSinusoidal, BadInputTable) {
  struct Row {
    std::string name;
    std::function<void(v1::SinusoidalRequest*)> edit;
    absl::StatusCode code;
    std::string field;
  };
  const std::vector<Row> rows = {
      {"odd dim", [](auto* r) { r->set_dim(5); }, absl::StatusCode::kInvalidArgument, "dim"},
      {"zero dim", [](auto* r) { r->set_dim(0); }, absl::StatusCode::kInvalidArgument, "dim"},
      {"no length", [](auto* r) { r->set_length(0); }, absl::StatusCode::kInvalidArgument, "length"},
      {"negative length", [](auto* r) { r->set_length(-4); }, absl::StatusCode::kInvalidArgument, "length"},
      {"length vs positions", [](auto* r) { r->add_positions(0.5); }, absl::StatusCode::kInvalidArgument, "length"},
      {"NaN position",
       [](auto* r) {
         r->set_length(0);
         r->add_positions(std::nan(""));
       },
       absl::StatusCode::kInvalidArgument, "positions[0]"},
      {"unknown layout", [](auto* r) { r->set_layout(static_cast<v1::SinusoidalLayout>(5)); },
       absl::StatusCode::kInvalidArgument, "layout"},
      {"base zero is default, NaN is not", [](auto* r) { r->set_base(std::nan("")); },
       absl::StatusCode::kInvalidArgument, "base"},
      {"too large", [](auto* r) { r->set_length(int64_t{1} << 40); }, absl::StatusCode::kResourceExhausted,
       "output"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    v1::SinusoidalRequest request;
    request.set_length(3);
    request.set_dim(8);
    row.edit(&request);
    v1::SinusoidalResponse response;
    const absl::Status status = HandleSinusoidal(Limits(), request, &response);
    EXPECT_EQ(status.code(), row.code) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(row.field));
  }
}

}  // namespace
}  // namespace primserve
