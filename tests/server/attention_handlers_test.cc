// The Attention handlers without a network: the bad-input table (code and field for every
// row), the request -> core options conversion (the handler gives exactly what core Attend
// gives for the same options), limits, and the EstimateCost goldens through the wire types.
#include "server/attention_handlers.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/tile_matmul.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/tensor_conversion.h"

namespace primserve {
namespace {

using ::testing::HasSubstr;

Tensor RandomTensor(Shape shape, uint32_t seed) {
  Tensor t;
  t.shape = shape;
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  t.values.resize(static_cast<size_t>(n));
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  for (float& v : t.values) v = dist(rng);
  return t;
}

v1::Tensor ToWire(const Tensor& t) {
  v1::Tensor proto;
  TensorToProto(t, &proto);
  return proto;
}

Tensor FromWire(const v1::Tensor& proto) {
  absl::StatusOr<Tensor> t = TensorFromProto(proto, "response", kDefaultMaxElements);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : Tensor();
}

bool BitEqual(const Tensor& a, const Tensor& b) {
  return a.shape == b.shape && a.values.size() == b.values.size() &&
         std::memcmp(a.values.data(), b.values.data(), a.values.size() * sizeof(float)) == 0;
}

// batch 2, 4 query heads over 2 key/value heads (grouped-query), q_len 3, k_len 5, head_dim 8,
// value_dim 6.
v1::AttendRequest BaseRequest() {
  v1::AttendRequest request;
  *request.mutable_query() = ToWire(RandomTensor({2, 4, 3, 8}, 1));
  *request.mutable_key() = ToWire(RandomTensor({2, 2, 5, 8}, 2));
  *request.mutable_value() = ToWire(RandomTensor({2, 2, 5, 6}, 3));
  return request;
}

TEST(AttentionEnums, UnspecifiedMeansTheFirstListedValue) {
  EXPECT_EQ(*AttentionKindFromProto(v1::ATTENTION_KIND_UNSPECIFIED, "kind"), AttentionKind::kSoftmax);
  EXPECT_EQ(*AttentionKindFromProto(v1::ATTENTION_KIND_SOFTMAX, "kind"), AttentionKind::kSoftmax);
  EXPECT_EQ(*AttentionKindFromProto(v1::ATTENTION_KIND_LINEAR, "kind"), AttentionKind::kLinear);
  EXPECT_EQ(*ComputePrecisionFromProto(v1::COMPUTE_PRECISION_UNSPECIFIED, "p"), ComputePrecision::kF32);
  EXPECT_EQ(*ComputePrecisionFromProto(v1::COMPUTE_PRECISION_F32, "p"), ComputePrecision::kF32);
  EXPECT_EQ(*ComputePrecisionFromProto(v1::COMPUTE_PRECISION_BF16, "p"), ComputePrecision::kBF16);
  const absl::Status unknown = AttentionKindFromProto(static_cast<v1::AttentionKind>(7), "kind").status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.message()), HasSubstr("kind: unknown enum value 7"));
}

// Every option on the wire reaches the core: the handler's answer is bit-identical to core
// Attend called with the options spelled out by hand.
TEST(HandleAttend, EqualsCoreAttendWithTheSameOptions) {
  const Tensor query = RandomTensor({2, 4, 3, 8}, 1);
  const Tensor key = RandomTensor({2, 2, 5, 8}, 2);
  const Tensor value = RandomTensor({2, 2, 5, 6}, 3);
  Tensor bias = RandomTensor({1, 4, 1, 5}, 4);
  bias.values[3] = -std::numeric_limits<float>::infinity();  // A mask entry.

  struct Case {
    std::string name;
    std::function<void(v1::AttendRequest*, AttentionOptions*)> set;
  };
  const std::vector<Case> cases = {
      {"defaults", [](auto*, auto*) {}},
      {"causal, key_lengths, scale, weights",
       [](v1::AttendRequest* r, AttentionOptions* o) {
         r->set_causal(true);
         o->causal = true;
         r->add_key_lengths(5);
         r->add_key_lengths(2);
         o->key_lengths = {5, 2};
         r->set_scale(0.25);
         o->scale = 0.25;
         r->set_return_weights(true);
         o->return_weights = true;
       }},
      {"bias",
       [&bias](v1::AttendRequest* r, AttentionOptions* o) {
         *r->mutable_bias() = ToWire(bias);
         o->bias = &bias;
         r->set_return_weights(true);
         o->return_weights = true;
       }},
      {"rope 1-D half split, base 0 is 10000, explicit positions",
       [](v1::AttendRequest* r, AttentionOptions* o) {
         r->mutable_rope()->set_pairing(v1::ROPE_PAIRING_HALF_SPLIT);
         r->mutable_rope()->set_rotary_dim(4);
         for (double p : {0.5, 7.0, -2.0}) r->mutable_rope()->add_query_positions(p);
         AttentionRope rope;
         rope.pairing = RopePairing::kHalfSplit;
         rope.rotary_dim = 4;
         rope.query_positions = {0.5, 7.0, -2.0};
         o->rope = rope;
       }},
      {"rope 1-D default positions, base 500",
       [](v1::AttendRequest* r, AttentionOptions* o) {
         r->mutable_rope()->set_base(500);
         AttentionRope rope;
         rope.base = 500;
         o->rope = rope;
       }},
      {"linear, causal, rope",
       [](v1::AttendRequest* r, AttentionOptions* o) {
         r->set_kind(v1::ATTENTION_KIND_LINEAR);
         o->kind = AttentionKind::kLinear;
         r->set_causal(true);
         o->causal = true;
         r->mutable_rope()->set_kind(v1::ROPE_KIND_ROPE_1D);
         o->rope = AttentionRope();
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::AttendRequest request;
    *request.mutable_query() = ToWire(query);
    *request.mutable_key() = ToWire(key);
    *request.mutable_value() = ToWire(value);
    AttentionOptions options;
    c.set(&request, &options);
    absl::StatusOr<AttentionResult> local = Attend(query, key, value, options);
    ASSERT_TRUE(local.ok()) << local.status();
    v1::AttendResponse response;
    const absl::Status status = HandleAttend(Limits(), request, &response);
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_EQ(response.output().shape_size(), 4);
    EXPECT_TRUE(BitEqual(FromWire(response.output()), local->output));
    ASSERT_EQ(response.has_weights(), local->weights.has_value());
    if (response.has_weights()) {
      EXPECT_EQ(FromWire(response.weights()).shape, (Shape{2, 4, 3, 5}));
      EXPECT_TRUE(BitEqual(FromWire(response.weights()), *local->weights));
    }
  }
}

TEST(HandleAttend, Rope2DGridReachesTheCore) {
  // k_len 6 on a 2 x 3 grid; head_dim 8 (a multiple of 4).
  const Tensor query = RandomTensor({1, 2, 6, 8}, 5);
  const Tensor key = RandomTensor({1, 2, 6, 8}, 6);
  const Tensor value = RandomTensor({1, 2, 6, 3}, 7);
  v1::AttendRequest request;
  *request.mutable_query() = ToWire(query);
  *request.mutable_key() = ToWire(key);
  *request.mutable_value() = ToWire(value);
  request.mutable_rope()->set_kind(v1::ROPE_KIND_ROPE_2D);
  request.mutable_rope()->set_grid_height(2);
  request.mutable_rope()->set_grid_width(3);
  AttentionOptions options;
  AttentionRope rope;
  rope.kind = RopeKind::k2D;
  rope.grid_height = 2;
  rope.grid_width = 3;
  options.rope = rope;
  absl::StatusOr<AttentionResult> local = Attend(query, key, value, options);
  ASSERT_TRUE(local.ok()) << local.status();
  v1::AttendResponse response;
  ASSERT_TRUE(HandleAttend(Limits(), request, &response).ok());
  EXPECT_TRUE(BitEqual(FromWire(response.output()), local->output));
  // And the RoPE changed something (the spec was not dropped on the way).
  absl::StatusOr<AttentionResult> plain = Attend(query, key, value, AttentionOptions());
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(BitEqual(plain->output, local->output));
}

TEST(HandleAttend, BadInputTable) {
  struct Row {
    std::string name;
    std::function<void(v1::AttendRequest*)> edit;
    absl::StatusCode code;
    std::string field;
  };
  const std::vector<Row> rows = {
      {"missing query", [](auto* r) { r->clear_query(); }, absl::StatusCode::kInvalidArgument,
       "query: required"},
      {"missing key", [](auto* r) { r->clear_key(); }, absl::StatusCode::kInvalidArgument, "key: required"},
      {"missing value", [](auto* r) { r->clear_value(); }, absl::StatusCode::kInvalidArgument, "value: required"},
      {"unknown kind", [](auto* r) { r->set_kind(static_cast<v1::AttentionKind>(3)); },
       absl::StatusCode::kInvalidArgument, "kind: unknown enum value 3"},
      {"unknown compute_precision", [](auto* r) { r->set_compute_precision(static_cast<v1::ComputePrecision>(9)); },
       absl::StatusCode::kInvalidArgument, "compute_precision"},
      {"unknown rope.kind", [](auto* r) { r->mutable_rope()->set_kind(static_cast<v1::RopeKind>(5)); },
       absl::StatusCode::kInvalidArgument, "rope.kind"},
      {"unknown rope.pairing", [](auto* r) { r->mutable_rope()->set_pairing(static_cast<v1::RopePairing>(5)); },
       absl::StatusCode::kInvalidArgument, "rope.pairing"},
      {"query data/shape mismatch", [](auto* r) { r->mutable_query()->mutable_data()->resize(20); },
       absl::StatusCode::kInvalidArgument, "query.data"},
      {"value dtype", [](auto* r) { r->mutable_value()->set_dtype(static_cast<v1::DataType>(9)); },
       absl::StatusCode::kInvalidArgument, "value"},
      {"bias data/shape mismatch",
       [](auto* r) {
         r->mutable_bias()->add_shape(5);
         r->mutable_bias()->add_values(1.0f);
       },
       absl::StatusCode::kInvalidArgument, "bias"},
      {"bias with LINEAR",
       [](auto* r) {
         r->set_kind(v1::ATTENTION_KIND_LINEAR);
         *r->mutable_bias() = ToWire(RandomTensor({5}, 9));
       },
       absl::StatusCode::kInvalidArgument, "bias"},
      {"return_weights with LINEAR",
       [](auto* r) {
         r->set_kind(v1::ATTENTION_KIND_LINEAR);
         r->set_return_weights(true);
       },
       absl::StatusCode::kInvalidArgument, "return_weights"},
      {"negative scale", [](auto* r) { r->set_scale(-0.5); }, absl::StatusCode::kInvalidArgument, "scale"},
      {"NaN scale", [](auto* r) { r->set_scale(std::nan("")); }, absl::StatusCode::kInvalidArgument, "scale"},
      {"key_lengths wrong size", [](auto* r) { r->add_key_lengths(5); }, absl::StatusCode::kInvalidArgument,
       "key_lengths"},
      {"key_lengths out of range",
       [](auto* r) {
         r->add_key_lengths(5);
         r->add_key_lengths(6);
       },
       absl::StatusCode::kInvalidArgument, "key_lengths"},
      {"heads not grouped", [](auto* r) { *r->mutable_key() = ToWire(RandomTensor({2, 3, 5, 8}, 2)); },
       absl::StatusCode::kInvalidArgument, "head"},
      {"oversized claim",
       [](auto* r) {
         r->mutable_query()->clear_shape();
         for (int64_t e : {1000, 1000, 1000, 1000}) r->mutable_query()->add_shape(e);
       },
       absl::StatusCode::kResourceExhausted, "query.shape"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    v1::AttendRequest request = BaseRequest();
    row.edit(&request);
    v1::AttendResponse response;
    const absl::Status status = HandleAttend(Limits(), request, &response);
    EXPECT_EQ(status.code(), row.code) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(row.field));
  }
}

// bfloat16 bits of float32 values that bfloat16 represents exactly (the upper halves).
v1::Tensor ToBfloat16Wire(const Tensor& t) {
  v1::Tensor proto;
  proto.mutable_shape()->Add(t.shape.begin(), t.shape.end());
  proto.set_dtype(v1::DATA_TYPE_BFLOAT16);
  std::string* data = proto.mutable_data();
  for (float x : t.values) {
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    const uint16_t half = static_cast<uint16_t>(bits >> 16);
    data->append(reinterpret_cast<const char*>(&half), 2);
  }
  return proto;
}

Tensor TruncatedToBfloat16(Tensor t) {
  for (float& x : t.values) {
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    bits &= 0xffff0000u;
    std::memcpy(&x, &bits, 4);
  }
  return t;
}

// compute_precision BF16 with bfloat16 wire tensors: the handler's answer is bit-identical to
// core Attend in BF16 on the widened values (and is not the F32 answer), or UNIMPLEMENTED on a
// CPU without native bfloat16.
TEST(HandleAttend, Bf16PrecisionWithBfloat16TensorsReachesTheCore) {
  const Tensor query = TruncatedToBfloat16(RandomTensor({2, 4, 3, 8}, 1));
  const Tensor key = TruncatedToBfloat16(RandomTensor({2, 2, 5, 8}, 2));
  const Tensor value = TruncatedToBfloat16(RandomTensor({2, 2, 5, 6}, 3));
  v1::AttendRequest request;
  *request.mutable_query() = ToBfloat16Wire(query);
  *request.mutable_key() = ToBfloat16Wire(key);
  *request.mutable_value() = ToBfloat16Wire(value);
  request.set_causal(true);
  request.set_return_weights(true);
  request.set_compute_precision(v1::COMPUTE_PRECISION_BF16);
  v1::AttendResponse response;
  const absl::Status status = HandleAttend(Limits(), request, &response);
  if (!HasNativeBf16()) {
    EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented) << status;
    GTEST_SKIP() << "no native bf16 on this CPU: " << status;
  }
  ASSERT_TRUE(status.ok()) << status;
  AttentionOptions options;
  options.causal = true;
  options.return_weights = true;
  options.precision = ComputePrecision::kBF16;
  absl::StatusOr<AttentionResult> bf16 = Attend(query, key, value, options);
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  EXPECT_TRUE(BitEqual(FromWire(response.output()), bf16->output));
  EXPECT_TRUE(BitEqual(FromWire(response.weights()), *bf16->weights));
  options.precision = ComputePrecision::kF32;
  absl::StatusOr<AttentionResult> f32 = Attend(query, key, value, options);
  ASSERT_TRUE(f32.ok()) << f32.status();
  EXPECT_FALSE(BitEqual(FromWire(response.output()), f32->output)) << "BF16 gave the F32 answer";
}

TEST(HandleAttend, Bf16LinearIsUnimplemented) {
  v1::AttendRequest request = BaseRequest();
  request.set_kind(v1::ATTENTION_KIND_LINEAR);
  request.set_compute_precision(v1::COMPUTE_PRECISION_BF16);
  v1::AttendResponse response;
  const absl::Status status = HandleAttend(Limits(), request, &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("compute_precision"));
}

TEST(HandleAttend, WeightsAboveTheLimitAreResourceExhausted) {
  v1::AttendRequest request = BaseRequest();  // Weights [2, 4, 3, 5]: 120 elements.
  request.set_return_weights(true);
  Limits limits;
  limits.max_weight_elements = 119;
  v1::AttendResponse response;
  const absl::Status status = HandleAttend(limits, request, &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  limits.max_weight_elements = 120;
  EXPECT_TRUE(HandleAttend(limits, request, &response).ok());
  // Without return_weights the limit does not apply.
  request.set_return_weights(false);
  limits.max_weight_elements = 0;
  v1::AttendResponse plain;
  EXPECT_TRUE(HandleAttend(limits, request, &plain).ok());
  EXPECT_FALSE(plain.has_weights());
}

TEST(HandleAttend, ACancelledCallStops) {
  v1::AttendRequest request;
  *request.mutable_query() = ToWire(RandomTensor({1, 4, 512, 64}, 1));
  *request.mutable_key() = ToWire(RandomTensor({1, 4, 512, 64}, 2));
  *request.mutable_value() = ToWire(RandomTensor({1, 4, 512, 64}, 3));
  v1::AttendResponse response;
  const absl::Status status = HandleAttend(Limits(), request, &response, [] { return true; });
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
}

TEST(HandleAttend, OutputAndWeightsMustFitOneResponse) {
  // A probe asked for 4096 x 4096 weights with 4096 query rows: each tensor passed its own cap,
  // the computation ran, and gRPC then refused to send 67125285 bytes over the 64 MiB limit.
  // BaseRequest: output [2, 4, 3, 6] (144) and weights [2, 4, 3, 5] (120), 264 elements.
  v1::AttendRequest request = BaseRequest();
  request.set_return_weights(true);
  v1::AttendResponse response;
  const int64_t short_by_one = Limits::kResponseEnvelopeBytes + 4 * 263;
  const absl::Status status = HandleAttend(Limits::ForMessageBytes(short_by_one), request, &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("return_weights: output [2, 4, 3, 6] and weights [2, 4, 3, 5]"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("144 + 120 elements together; at most 263"));
  // At the limit it runs, and the whole response fits the message size the limits came from.
  const int64_t exact = Limits::kResponseEnvelopeBytes + 4 * 264;
  ASSERT_TRUE(HandleAttend(Limits::ForMessageBytes(exact), request, &response).ok());
  EXPECT_LE(static_cast<int64_t>(response.ByteSizeLong()), exact);
}

TEST(Limits, ForMessageBytesCapsTheWeightsToo) {
  const Limits limits = Limits::ForMessageBytes(Limits::kResponseEnvelopeBytes + 4096, int64_t{1} << 30);
  EXPECT_EQ(limits.max_elements, 1024);
  EXPECT_EQ(limits.max_weight_elements, 1024);
  EXPECT_EQ(Limits::ForMessageBytes(100).max_elements, 0);  // Below the envelope: no tensor fits.
  // 64 MiB: the default weight cap (2^24) yields to the elements left after the envelope.
  EXPECT_EQ(Limits::ForMessageBytes(int64_t{64} << 20).max_weight_elements,
            ((int64_t{64} << 20) - Limits::kResponseEnvelopeBytes) / 4);
  EXPECT_EQ(Limits::ForMessageBytes(int64_t{128} << 20).max_weight_elements, kDefaultMaxWeightElements);
  EXPECT_EQ(Limits::ForMessageBytes(int64_t{64} << 20, 100).max_weight_elements, 100);
}

TEST(HandleEstimateCost, MathGoldensAndWireDefaults) {
  // MATH.md section 6; ffn_multiplier and linear_head_multiplier 0 mean 4.
  v1::EstimateCostRequest request;
  request.set_seq_len(512);
  request.set_head_size(64);
  request.set_num_heads(12);
  v1::EstimateCostResponse response;
  ASSERT_TRUE(HandleEstimateCost(request, &response).ok());
  EXPECT_EQ(response.projections(), 1207959552.0);
  EXPECT_EQ(response.attention_quadratic(), 402653184.0);
  EXPECT_EQ(response.self_attention(), 1610612736.0);
  EXPECT_EQ(response.ffn(), 2415919104.0);
  EXPECT_EQ(response.linear_attention(), 805306368.0);
  EXPECT_EQ(response.attention_exceeds_ffn_length(), 1536.0);
  EXPECT_EQ(response.quadratic_dominates_length(), 4608.0);
  EXPECT_EQ(response.linear_attention_wins_length(), 1024.0);

  request.set_ffn_multiplier(4);
  request.set_linear_head_multiplier(4);
  v1::EstimateCostResponse explicit_fours;
  ASSERT_TRUE(HandleEstimateCost(request, &explicit_fours).ok());
  EXPECT_EQ(explicit_fours.SerializeAsString(), response.SerializeAsString());

  request.set_ffn_multiplier(8);
  request.set_linear_head_multiplier(2);
  v1::EstimateCostResponse other;
  ASSERT_TRUE(HandleEstimateCost(request, &other).ok());
  EXPECT_EQ(other.ffn(), 2 * response.ffn());
  EXPECT_EQ(other.attention_exceeds_ffn_length(), 6.0 * 768);
  EXPECT_EQ(other.quadratic_dominates_length(), 10.0 * 768);
  EXPECT_EQ(other.linear_attention_wins_length(), 4.0 * 64);
}

TEST(HandleEstimateCost, BadInputTable) {
  struct Row {
    std::string name;
    std::function<void(v1::EstimateCostRequest*)> edit;
    std::string field;
  };
  const std::vector<Row> rows = {
      {"no seq_len", [](auto* r) { r->clear_seq_len(); }, "seq_len"},
      {"negative head_size", [](auto* r) { r->set_head_size(-64); }, "head_size"},
      {"no num_heads", [](auto* r) { r->clear_num_heads(); }, "num_heads"},
      {"negative ffn_multiplier", [](auto* r) { r->set_ffn_multiplier(-1); }, "ffn_multiplier"},
      {"NaN linear_head_multiplier", [](auto* r) { r->set_linear_head_multiplier(std::nan("")); },
       "linear_head_multiplier"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    v1::EstimateCostRequest request;
    request.set_seq_len(512);
    request.set_head_size(64);
    request.set_num_heads(12);
    row.edit(&request);
    v1::EstimateCostResponse response;
    const absl::Status status = HandleEstimateCost(request, &response);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(row.field));
  }
}

}  // namespace
}  // namespace primserve
