// The Toolkit handlers without a network: wire defaults (UNSPECIFIED enums, coefficient 0), the
// request -> core conversion (the handler gives exactly what the core gives for the same
// options), the MATH.md goldens through the wire types, limits, and the bad-input tables.
#include "server/toolkit_handlers.h"

#include <cmath>
#include <cstring>
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

TEST(ToolkitEnums, UnspecifiedMeansTheFirstListedValue) {
  EXPECT_EQ(*InitDistributionFromProto(v1::INIT_DISTRIBUTION_UNSPECIFIED, "d"), InitDistribution::kNormal);
  EXPECT_EQ(*InitDistributionFromProto(v1::INIT_DISTRIBUTION_NORMAL, "d"), InitDistribution::kNormal);
  EXPECT_EQ(*InitDistributionFromProto(v1::INIT_DISTRIBUTION_UNIFORM, "d"), InitDistribution::kUniform);
  EXPECT_EQ(*InitDistributionFromProto(v1::INIT_DISTRIBUTION_TRUNCATED_NORMAL, "d"),
            InitDistribution::kTruncatedNormal);
  EXPECT_EQ(*InitSchemeFromProto(v1::INIT_SCHEME_UNSPECIFIED, "s"), InitScheme::kLecun);
  EXPECT_EQ(*InitSchemeFromProto(v1::INIT_SCHEME_LECUN, "s"), InitScheme::kLecun);
  EXPECT_EQ(*InitSchemeFromProto(v1::INIT_SCHEME_HE, "s"), InitScheme::kHe);
  EXPECT_EQ(*InitSchemeFromProto(v1::INIT_SCHEME_XAVIER, "s"), InitScheme::kXavier);
  EXPECT_EQ(*InitSchemeFromProto(v1::INIT_SCHEME_STDDEV, "s"), InitScheme::kStddev);
  EXPECT_EQ(*ChildTuningModeFromProto(v1::CHILD_TUNING_MODE_UNSPECIFIED, "m"), ChildTuningMode::kTaskFree);
  EXPECT_EQ(*ChildTuningModeFromProto(v1::CHILD_TUNING_MODE_TASK_FREE, "m"), ChildTuningMode::kTaskFree);
  EXPECT_EQ(*ChildTuningModeFromProto(v1::CHILD_TUNING_MODE_TASK_DRIVEN, "m"), ChildTuningMode::kTaskDriven);
  const absl::Status unknown = InitSchemeFromProto(static_cast<v1::InitScheme>(9), "scheme").status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.message()), HasSubstr("scheme: unknown enum value 9"));
}

TEST(HandleEmbeddingDimension, MathGoldensAndTheDefaultCoefficient) {
  // MATH.md section 4 (4 decimals given: tolerance half a unit of the last).
  struct Row {
    int64_t vocab_size;
    double bound;
    int64_t dimension;
  };
  for (const Row& row : {Row{100000, 95.9027, 96}, Row{512, 51.9652, 52}, Row{5000000, 128.4898, 129}}) {
    SCOPED_TRACE(row.vocab_size);
    v1::EmbeddingDimensionRequest request;
    request.set_vocab_size(row.vocab_size);
    v1::EmbeddingDimensionResponse response;
    ASSERT_TRUE(HandleEmbeddingDimension(request, &response).ok());
    EXPECT_NEAR(response.bound(), row.bound, 5e-5);
    EXPECT_EQ(response.dimension(), row.dimension);
    request.set_coefficient(8.33);  // Explicit 8.33 is the same answer, bit for bit.
    v1::EmbeddingDimensionResponse explicit_coefficient;
    ASSERT_TRUE(HandleEmbeddingDimension(request, &explicit_coefficient).ok());
    EXPECT_EQ(explicit_coefficient.SerializeAsString(), response.SerializeAsString());
  }
  v1::EmbeddingDimensionRequest other;
  other.set_vocab_size(512);
  other.set_coefficient(4);
  v1::EmbeddingDimensionResponse response;
  ASSERT_TRUE(HandleEmbeddingDimension(other, &response).ok());
  EXPECT_DOUBLE_EQ(response.bound(), 4 * std::log(512.0));
  EXPECT_EQ(response.dimension(), 25);  // 24.95
}

TEST(HandleEmbeddingDimension, BadInputs) {
  v1::EmbeddingDimensionRequest request;
  request.set_vocab_size(1);
  v1::EmbeddingDimensionResponse response;
  absl::Status status = HandleEmbeddingDimension(request, &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("vocab_size: expected an integer >= 2"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("got 1"));
  request.set_vocab_size(100);
  request.set_coefficient(-2);
  status = HandleEmbeddingDimension(request, &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("coefficient"));
}

TEST(HandleInitializeParameters, EqualsTheCoreWithTheSameOptions) {
  struct Case {
    std::string name;
    std::function<void(v1::InitializeParametersRequest*, InitOptions*)> set;
  };
  const std::vector<Case> cases = {
      {"defaults: NORMAL, LECUN", [](auto*, auto*) {}},
      {"uniform He with a seed",
       [](v1::InitializeParametersRequest* r, InitOptions* o) {
         r->set_distribution(v1::INIT_DISTRIBUTION_UNIFORM);
         o->distribution = InitDistribution::kUniform;
         r->set_scheme(v1::INIT_SCHEME_HE);
         o->scheme = InitScheme::kHe;
         r->set_seed(0xfedcba9876543210ull);
         o->seed = 0xfedcba9876543210ull;
       }},
      {"truncated Xavier with given fans",
       [](v1::InitializeParametersRequest* r, InitOptions* o) {
         r->set_distribution(v1::INIT_DISTRIBUTION_TRUNCATED_NORMAL);
         o->distribution = InitDistribution::kTruncatedNormal;
         r->set_scheme(v1::INIT_SCHEME_XAVIER);
         o->scheme = InitScheme::kXavier;
         r->set_fan_in(11);
         o->fan_in = 11;
         r->set_fan_out(13);
         o->fan_out = 13;
       }},
      {"stddev",
       [](v1::InitializeParametersRequest* r, InitOptions* o) {
         r->set_scheme(v1::INIT_SCHEME_STDDEV);
         o->scheme = InitScheme::kStddev;
         r->set_stddev(0.02);
         o->stddev = 0.02;
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::InitializeParametersRequest request;
    for (int64_t e : {37, 3, 5, 5}) request.add_shape(e);
    InitOptions options;
    options.shape = {37, 3, 5, 5};
    c.set(&request, &options);
    absl::StatusOr<InitResult> local = InitializeParameters(options);
    ASSERT_TRUE(local.ok()) << local.status();
    v1::InitializeParametersResponse response;
    const absl::Status status = HandleInitializeParameters(Limits(), request, &response);
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_TRUE(BitEqual(FromWire(response.parameters()), local->parameters));
    EXPECT_EQ(response.stddev(), local->stddev);
    EXPECT_EQ(response.fan_in(), local->fans.fan_in);
    EXPECT_EQ(response.fan_out(), local->fans.fan_out);
  }
}

TEST(HandleInitializeParameters, ReportsTheSchemeStddevAndInferredFans) {
  // Conv [out 64, in 3, 7, 7]: fan_in 147, fan_out 3136; He: s^2 = 2 / 147.
  v1::InitializeParametersRequest request;
  for (int64_t e : {64, 3, 7, 7}) request.add_shape(e);
  request.set_scheme(v1::INIT_SCHEME_HE);
  v1::InitializeParametersResponse response;
  ASSERT_TRUE(HandleInitializeParameters(Limits(), request, &response).ok());
  EXPECT_EQ(response.fan_in(), 147);
  EXPECT_EQ(response.fan_out(), 3136);
  EXPECT_DOUBLE_EQ(response.stddev(), std::sqrt(2.0 / 147));
  EXPECT_EQ(FromWire(response.parameters()).shape, (Shape{64, 3, 7, 7}));
}

TEST(HandleInitializeParameters, BadInputTable) {
  struct Row {
    std::string name;
    std::function<void(v1::InitializeParametersRequest*)> edit;
    absl::StatusCode code;
    std::string message;
  };
  using Code = absl::StatusCode;
  const std::vector<Row> rows = {
      {"no shape", [](auto* r) { r->clear_shape(); }, Code::kInvalidArgument, "shape: expected rank 1 to 5, got rank 0"},
      {"zero axis", [](auto* r) { r->set_shape(1, 0); }, Code::kInvalidArgument, "shape[1]: expected an extent >= 1, got 0"},
      {"negative axis", [](auto* r) { r->set_shape(0, -4); }, Code::kInvalidArgument,
       "shape[0]: expected an extent >= 1, got -4"},
      {"over the element limit (Limits of a 4 KiB message: 768 elements after the 1 KiB envelope)",
       [](auto* r) {
         r->set_shape(0, 33);
         r->set_shape(1, 32);
       },
       Code::kResourceExhausted, "shape: [33, 32] has 1056 elements, above the limit of 768"},
      {"STDDEV without stddev", [](auto* r) { r->set_scheme(v1::INIT_SCHEME_STDDEV); }, Code::kInvalidArgument,
       "stddev: expected a finite number in (0, 2e+37] with scheme STDDEV, got 0"},
      {"STDDEV with stddev < 0",
       [](auto* r) {
         r->set_scheme(v1::INIT_SCHEME_STDDEV);
         r->set_stddev(-1);
       },
       Code::kInvalidArgument, "got -1"},
      {"stddev with XAVIER",
       [](auto* r) {
         r->set_scheme(v1::INIT_SCHEME_XAVIER);
         r->set_stddev(0.1);
       },
       Code::kInvalidArgument, "stddev: only read by scheme STDDEV (expected 0 with XAVIER)"},
      {"negative fan_in", [](auto* r) { r->set_fan_in(-1); }, Code::kInvalidArgument, "fan_in"},
      {"unknown distribution", [](auto* r) { r->set_distribution(static_cast<v1::InitDistribution>(8)); },
       Code::kInvalidArgument, "distribution: unknown enum value 8"},
      {"unknown scheme", [](auto* r) { r->set_scheme(static_cast<v1::InitScheme>(-3)); }, Code::kInvalidArgument,
       "scheme: unknown enum value -3"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    v1::InitializeParametersRequest request;
    request.add_shape(16);
    request.add_shape(8);
    row.edit(&request);
    v1::InitializeParametersResponse response;
    const absl::Status status = HandleInitializeParameters(Limits::ForMessageBytes(4096), request, &response);
    EXPECT_EQ(status.code(), row.code) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(row.message));
  }
}

TEST(HandleInitializeParameters, ACancelledCallStops) {
  v1::InitializeParametersRequest request;
  request.add_shape(1000);
  request.add_shape(1000);
  v1::InitializeParametersResponse response;
  const absl::Status status = HandleInitializeParameters(Limits(), request, &response, [] { return true; });
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
}

v1::ChildTuningMaskRequest ArticleRequest() {
  // MATH.md section 9: g = [-4, -6], p = 0.5; Fisher [2, 1] selects M = [1, 0].
  v1::ChildTuningMaskRequest request;
  *request.mutable_gradient() = ToWire(Tensor{{2}, {-4, -6}});
  *request.mutable_fisher() = ToWire(Tensor{{2}, {2, 1}});
  request.set_mode(v1::CHILD_TUNING_MODE_TASK_DRIVEN);
  request.set_keep_probability(0.5);
  request.set_rescale(true);
  return request;
}

TEST(HandleChildTuningMask, ArticleExample) {
  v1::ChildTuningMaskResponse response;
  ASSERT_TRUE(HandleChildTuningMask(Limits(), ArticleRequest(), &response).ok());
  EXPECT_EQ(FromWire(response.gradient()).values, (std::vector<float>{-8, 0}));
  EXPECT_EQ(response.kept_fraction(), 0.5);
  v1::ChildTuningMaskRequest official = ArticleRequest();
  official.set_rescale(false);
  ASSERT_TRUE(HandleChildTuningMask(Limits(), official, &response).ok());
  EXPECT_EQ(FromWire(response.gradient()).values, (std::vector<float>{-4, 0}));
}

TEST(HandleChildTuningMask, EqualsTheCoreWithTheSameOptions) {
  Tensor gradient = Tensor::Zeros({3, 50});
  Tensor fisher = Tensor::Zeros({3, 50});
  for (size_t i = 0; i < gradient.values.size(); ++i) {
    gradient.values[i] = std::sin(static_cast<float>(i));
    fisher.values[i] = static_cast<float>((i * 37) % 11);
  }
  for (const bool driven : {false, true}) {
    SCOPED_TRACE(driven ? "TASK_DRIVEN" : "TASK_FREE (mode UNSPECIFIED)");
    v1::ChildTuningMaskRequest request;
    *request.mutable_gradient() = ToWire(gradient);
    request.set_keep_probability(0.35);
    request.set_rescale(true);
    request.set_seed(123456789);
    ChildTuningOptions options;
    options.keep_probability = 0.35;
    options.rescale = true;
    options.seed = 123456789;
    if (driven) {
      request.set_mode(v1::CHILD_TUNING_MODE_TASK_DRIVEN);
      *request.mutable_fisher() = ToWire(fisher);
      options.mode = ChildTuningMode::kTaskDriven;
      options.fisher = &fisher;
    }
    absl::StatusOr<ChildTuningResult> local = ChildTuningMask(gradient, options);
    ASSERT_TRUE(local.ok()) << local.status();
    v1::ChildTuningMaskResponse response;
    const absl::Status status = HandleChildTuningMask(Limits(), request, &response);
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_TRUE(BitEqual(FromWire(response.gradient()), local->gradient));
    EXPECT_EQ(response.kept_fraction(), local->kept_fraction);
  }
}

TEST(HandleChildTuningMask, BadInputTable) {
  struct Row {
    std::string name;
    std::function<void(v1::ChildTuningMaskRequest*)> edit;
    absl::StatusCode code;
    std::string message;
  };
  using Code = absl::StatusCode;
  const std::vector<Row> rows = {
      {"no gradient", [](auto* r) { r->clear_gradient(); }, Code::kInvalidArgument, "gradient: required, got no tensor"},
      {"gradient data/shape mismatch", [](auto* r) { r->mutable_gradient()->mutable_data()->resize(4); },
       Code::kInvalidArgument, "gradient.data"},
      {"oversized gradient claim",
       [](auto* r) {
         r->mutable_gradient()->clear_shape();
         for (int64_t e : {100000, 100000}) r->mutable_gradient()->add_shape(e);
       },
       Code::kResourceExhausted, "gradient.shape"},
      {"NaN gradient (values)",
       [](auto* r) {
         r->mutable_gradient()->clear_data();
         r->mutable_gradient()->add_values(1.0f);
         r->mutable_gradient()->add_values(std::nanf(""));
       },
       Code::kInvalidArgument, "gradient"},
      {"keep_probability 0", [](auto* r) { r->set_keep_probability(0); }, Code::kInvalidArgument,
       "keep_probability: expected a number in (0, 1], got 0"},
      {"keep_probability above 1", [](auto* r) { r->set_keep_probability(1.01); }, Code::kInvalidArgument,
       "got 1.01"},
      {"no fisher", [](auto* r) { r->clear_fisher(); }, Code::kInvalidArgument,
       "fisher: required with mode TASK_DRIVEN, got no tensor"},
      {"fisher shape", [](auto* r) { *r->mutable_fisher() = ToWire(Tensor{{1, 2}, {2, 1}}); },
       Code::kInvalidArgument, "fisher.shape: expected [2] (the gradient's shape), got [1, 2]"},
      {"NaN fisher", [](auto* r) { *r->mutable_fisher() = ToWire(Tensor{{2}, {std::nanf(""), 1}}); },
       Code::kInvalidArgument, "fisher[0]: expected a finite number, got NaN"},
      {"negative fisher", [](auto* r) { *r->mutable_fisher() = ToWire(Tensor{{2}, {2, -1}}); },
       Code::kInvalidArgument, "fisher[1]: expected a value >= 0"},
      {"fisher with TASK_FREE", [](auto* r) { r->set_mode(v1::CHILD_TUNING_MODE_TASK_FREE); },
       Code::kInvalidArgument, "fisher: only read by mode TASK_DRIVEN"},
      {"unknown mode", [](auto* r) { r->set_mode(static_cast<v1::ChildTuningMode>(5)); }, Code::kInvalidArgument,
       "mode: unknown enum value 5"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    v1::ChildTuningMaskRequest request = ArticleRequest();
    row.edit(&request);
    v1::ChildTuningMaskResponse response;
    const absl::Status status = HandleChildTuningMask(Limits(), request, &response);
    EXPECT_EQ(status.code(), row.code) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(row.message));
  }
}

}  // namespace
}  // namespace primserve
