// Bad inputs for core/discriminator.h: the layer-by-layer validation table (each message names
// the layer index and the mismatch, expected and actual) and Score's / the losses' bad inputs
// (wrong input shape, NaN, epsilon <= 0 for GRAN, size limits, cancellation, empty batches).
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/discriminator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/discriminator_test_util.h"

namespace primserve {
namespace {

using ::testing::HasSubstr;
using namespace disc_test;  // NOLINT: test helpers.

#define PS_TEST_CONCAT_INNER_(a, b) a##b
#define PS_TEST_CONCAT_(a, b) PS_TEST_CONCAT_INNER_(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) ASSERT_OK_AND_ASSIGN_IMPL_(PS_TEST_CONCAT_(statusor_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                               \
  ASSERT_TRUE(statusor.ok()) << statusor.status();      \
  lhs = *std::move(statusor)

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

ScoreOptions Options(Normalization normalization, bool gradient, double epsilon = 1e-8) {
  ScoreOptions o;
  o.normalization = normalization;
  o.return_input_gradient = gradient;
  o.epsilon = epsilon;
  return o;
}

struct BadNetwork {
  const char* what;
  std::function<void(Network&)> mutate;
  absl::StatusCode code;
  std::vector<std::string> message;  // Substrings.
};

// input [3, 6, 6] -> Conv(4, k3 s1 p1) -> RELU -> Flatten (144) -> Dense(32) -> TANH -> Dense(1).
Network ValidNetwork() {
  std::mt19937 rng(1);
  Network net;
  net.input_shape = {3, 6, 6};
  net.layers = {Conv(4, 3, 3, 1, 1, rng), Act(ActivationKind::kRelu), FlattenLayer{}, Dense(32, 144, rng),
                Act(ActivationKind::kTanh), Dense(1, 32, rng)};
  return net;
}

TEST(DiscriminatorValidation, ErrorsNameTheLayerAndTheMismatch) {
  using C = absl::StatusCode;
  std::mt19937 rng(2);
  const std::vector<BadNetwork> cases = {
      {"dense in mismatch", [&](Network& n) { n.layers[5] = Dense(1, 30, rng); }, C::kInvalidArgument,
       {"layers[5] (Dense): weight is [1, 30], expected in = 32 from the previous layer's output [32]"}},
      {"non-scalar output", [&](Network& n) { n.layers[5] = Dense(4, 32, rng); }, C::kInvalidArgument,
       {"output: expected one scalar per sample, got [4]", "layers[5] (Dense)"}},
      {"weight value count", [](Network& n) { std::get<DenseLayer>(n.layers[3]).weight.values.pop_back(); },
       C::kInvalidArgument, {"layers[3] (Dense): weight has 4607 values, expected 4608 for shape [32, 144]"}},
      {"NaN weight", [](Network& n) { std::get<Conv2dLayer>(n.layers[0]).weight.values[7] = kNaN; },
       C::kInvalidArgument, {"layers[0] (Conv2d): weight[7]: expected a finite number, got NaN"}},
      {"Inf bias", [](Network& n) { std::get<DenseLayer>(n.layers[5]).bias.values[0] = -INFINITY; },
       C::kInvalidArgument, {"layers[5] (Dense): bias[0]", "-Inf"}},
      {"bias shape", [](Network& n) { std::get<DenseLayer>(n.layers[3]).bias = Tensor::Zeros({31}); },
       C::kInvalidArgument, {"layers[3] (Dense): bias is [31], expected [32]"}},
      {"dense weight rank", [](Network& n) { std::get<DenseLayer>(n.layers[5]).weight.shape = {1, 32, 1}; },
       C::kInvalidArgument, {"layers[5] (Dense): weight is [1, 32, 1], expected rank 2 [out, in]"}},
      {"conv channels", [&](Network& n) { n.layers[0] = Conv(4, 2, 3, 1, 1, rng); }, C::kInvalidArgument,
       {"layers[0] (Conv2d): weight is [4, 2, 3, 3], expected in = 3 channels from the input_shape [3, 6, 6]"}},
      {"conv stride", [](Network& n) { std::get<Conv2dLayer>(n.layers[0]).stride = 0; }, C::kInvalidArgument,
       {"layers[0] (Conv2d): stride is 0"}},
      {"conv padding", [](Network& n) { std::get<Conv2dLayer>(n.layers[0]).padding = -1; }, C::kInvalidArgument,
       {"layers[0] (Conv2d): padding is -1"}},
      {"conv kernel too large", [&](Network& n) { n.layers[0] = Conv(4, 3, 9, 1, 1, rng); }, C::kInvalidArgument,
       {"layers[0] (Conv2d): kernel 9x9 does not fit the input_shape [3, 6, 6] with padding 1"}},
      {"dense after conv", [](Network& n) { n.layers.erase(n.layers.begin() + 2); }, C::kInvalidArgument,
       {"layers[2] (Dense): expected a flat input [features], got the previous layer's output [4, 6, 6]", "Flatten"}},
      {"conv after flatten", [&](Network& n) { n.layers.insert(n.layers.begin() + 3, Conv(1, 1, 1, 1, 0, rng)); },
       C::kInvalidArgument, {"layers[3] (Conv2d): expected an input [channels, height, width], got the previous "
                             "layer's output [144]"}},
      {"unspecified activation", [](Network& n) { n.layers[1] = ActivationLayer{}; }, C::kInvalidArgument,
       {"layers[1] (Activation): kind is unspecified"}},
      {"leaky alpha NaN", [](Network& n) { n.layers[1] = Act(ActivationKind::kLeakyRelu, NAN); }, C::kInvalidArgument,
       {"layers[1] (Activation): alpha is nan"}},
      {"elu alpha negative", [](Network& n) { n.layers[4] = Act(ActivationKind::kElu, -1); }, C::kInvalidArgument,
       {"layers[4] (Activation): alpha is -1, expected finite in float32 and >= 0 for ELU"}},
      // Finite in double, Inf once the kernels' float32 holds it.
      {"leaky alpha beyond float32", [](Network& n) { n.layers[1] = Act(ActivationKind::kLeakyRelu, 1e39); },
       C::kInvalidArgument, {"layers[1] (Activation): alpha is 1e+39, expected finite in float32"}},
      {"elu alpha beyond float32", [](Network& n) { n.layers[4] = Act(ActivationKind::kElu, 4e38); },
       C::kInvalidArgument, {"layers[4] (Activation): alpha is 4e+38, expected finite in float32"}},
      {"no layers", [](Network& n) { n.layers.clear(); }, C::kInvalidArgument, {"layers: expected at least one layer"}},
      {"input rank 0", [](Network& n) { n.input_shape = {}; }, C::kInvalidArgument, {"input_shape: expected 1 to 3"}},
      {"input rank 4", [](Network& n) { n.input_shape = {1, 3, 6, 6}; }, C::kInvalidArgument,
       {"input_shape: expected 1 to 3", "[1, 3, 6, 6]"}},
      {"input extent 0", [](Network& n) { n.input_shape = {3, 0, 6}; }, C::kInvalidArgument,
       {"input_shape[1]: expected an extent >= 1, got 0"}},
      {"huge activation", [&](Network& n) { n.input_shape = {3, 100000, 100000}; }, C::kResourceExhausted,
       {"input_shape"}},
  };
  for (const BadNetwork& c : cases) {
    SCOPED_TRACE(c.what);
    Network net = ValidNetwork();
    ASSERT_TRUE(ValidateNetwork(net).ok());
    c.mutate(net);
    const absl::Status status = ValidateNetwork(net);
    EXPECT_EQ(status.code(), c.code) << status;
    for (const std::string& s : c.message) EXPECT_THAT(std::string(status.message()), HasSubstr(s));
    EXPECT_EQ(CompiledNetwork::Create(net).status(), status);
  }
}

TEST(DiscriminatorValidation, BadScoreInputs) {
  ASSERT_OK_AND_ASSIGN(auto compiled, CompiledNetwork::Create(ValidNetwork()));
  std::mt19937 rng(4);
  const Tensor good = NormalTensor({2, 3, 6, 6}, rng, 1.0);
  auto message = [](const absl::StatusOr<ScoreResult>& r) { return std::string(r.status().message()); };

  auto wrong = Score(*compiled, NormalTensor({2, 6, 6, 3}, rng, 1.0), ScoreOptions{});
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(message(wrong), HasSubstr("inputs.shape: expected [batch, 3, 6, 6]"));
  EXPECT_THAT(message(wrong), HasSubstr("got [2, 6, 6, 3]"));
  EXPECT_THAT(message(Score(*compiled, NormalTensor({108}, rng, 1.0), ScoreOptions{})),
              HasSubstr("inputs.shape: expected [batch, 3, 6, 6]"));

  Tensor nan = good;
  nan.values[5] = kNaN;
  auto r = Score(*compiled, nan, ScoreOptions{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(message(r), HasSubstr("inputs[5]: expected a finite number, got NaN"));

  for (double eps : {0.0, -1.0, static_cast<double>(kNaN)}) {
    auto e = Score(*compiled, good, Options(Normalization::kGran, false, eps));
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << eps;
    EXPECT_THAT(message(e), HasSubstr("epsilon: expected a finite value > 0 for GRAN"));
  }
  EXPECT_TRUE(Score(*compiled, good, Options(Normalization::kGradientNorm, false, 0.0)).ok());  // Unused.

  ScoreOptions limited;
  limited.max_elements = 100;
  auto big = Score(*compiled, good, limited);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(message(big), HasSubstr("inputs"));

  ScoreOptions cancel;
  cancel.cancelled = [] { return true; };
  EXPECT_EQ(Score(*compiled, good, cancel).status().code(), absl::StatusCode::kCancelled);

  ASSERT_OK_AND_ASSIGN(ScoreResult empty, Score(*compiled, Tensor::Zeros({0, 3, 6, 6}), Options(Normalization::kGran, true)));
  EXPECT_EQ(empty.scores.shape, (Shape{0}));
  EXPECT_EQ(empty.input_gradients->shape, (Shape{0, 3, 6, 6}));

  auto losses = DiscriminatorLosses(*compiled, good, NormalTensor({1, 3, 6, 5}, rng, 1.0), LossKind::kHinge, {});
  EXPECT_THAT(std::string(losses.status().message()), HasSubstr("fake_inputs.shape"));
  losses = DiscriminatorLosses(*compiled, Tensor::Zeros({0, 3, 6, 6}), good, LossKind::kHinge, {});
  EXPECT_THAT(std::string(losses.status().message()), HasSubstr("real_inputs: expected at least one sample"));
}

TEST(DiscriminatorValidation, OneSampleAboveTheWorkspaceBoundIsRefused) {
  // A probe's 104-byte request: a 1x1 input, a 1x1 conv padded by 4000 (an 8001 x 8001 map),
  // tanh, then a conv whose stride leaves one output. Chunks never go below one sample, so it
  // ran (2.6 GB touched) and its cached plan kept most of it. Now Create refuses it.
  Network net;
  net.input_shape = {1, 1, 1};
  Conv2dLayer wide{MakeTensor({1, 1, 1, 1}, {1.0f}), MakeTensor({1}, {0.0f}), 1, 4000};
  Conv2dLayer pick{MakeTensor({1, 1, 1, 1}, {1.0f}), MakeTensor({1}, {0.0f}), 1 << 20, 0};
  net.layers = {wide, Act(ActivationKind::kTanh), pick};
  const absl::StatusOr<std::shared_ptr<const CompiledNetwork>> compiled = CompiledNetwork::Create(net);
  EXPECT_EQ(compiled.status().code(), absl::StatusCode::kResourceExhausted) << compiled.status();
  EXPECT_THAT(std::string(compiled.status().message()), HasSubstr("network: one sample needs about"));
  EXPECT_THAT(std::string(compiled.status().message()), HasSubstr("above the limit of 2147483648 bytes for one sample"));
  // The same shape with a small padding is fine, and a smaller bound refuses it too.
  net.layers[0] = Conv2dLayer{MakeTensor({1, 1, 1, 1}, {1.0f}), MakeTensor({1}, {0.0f}), 1, 10};
  ASSERT_TRUE(CompiledNetwork::Create(net).ok());
  CompileOptions tight;
  tight.max_sample_workspace_bytes = 1000;
  EXPECT_EQ(CompiledNetwork::Create(net, tight).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(DiscriminatorValidation, OverflowInTheNetworkIsRefusedNotReturned) {
  // Finite inputs and weights whose products pass float's range: f = 4e60 as a float is +Inf,
  // and f_hat = f / (|grad f| + |f|) NaN. The probe got raw_scores [inf], scores [nan] with OK.
  Network net;
  net.input_shape = {4};
  net.layers = {DenseLayer{MakeTensor({1, 4}, std::vector<float>(4, 1e30f)), MakeTensor({1}, {0.0f})}};
  ASSERT_OK_AND_ASSIGN(auto compiled, CompiledNetwork::Create(net));
  Tensor inputs = MakeTensor({2, 4}, {1, 1, 1, 1, 1e30f, 1e30f, 1e30f, 1e30f});
  for (bool gradient : {false, true}) {
    const absl::StatusOr<ScoreResult> r = Score(*compiled, inputs, Options(Normalization::kGradientNorm, gradient));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("inputs: sample 1 overflows float32"));
  }
  const absl::StatusOr<GanLosses> losses = DiscriminatorLosses(*compiled, inputs, inputs, LossKind::kHinge, {});
  EXPECT_THAT(std::string(losses.status().message()), HasSubstr("real_inputs: sample 1 overflows float32"));
  // Sample 0 alone is fine: f = 4e30.
  ASSERT_OK_AND_ASSIGN(ScoreResult ok, Score(*compiled, MakeTensor({1, 4}, {1, 1, 1, 1}), ScoreOptions{}));
  EXPECT_FLOAT_EQ(ok.raw_scores.values[0], 4e30f);
}

}  // namespace
}  // namespace primserve
