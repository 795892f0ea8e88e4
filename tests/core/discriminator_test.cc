// Tests for core/discriminator.h (MATH.md section 8, GN-GAN / GraN-GAN scoring).
//
// Levels (STYLE.md habit 8):
//   1. Goldens: the linear discriminator of MATH.md (f = 8, ||g|| = 5, GN 8/13,
//      ||grad f_hat|| = 25/169, GraN 1.59999999936) and the 0/0 convention.
//   2. Differential: Score against a plain double reference of the same network
//      (discriminator_test_util.h) for MLPs and CNNs with every activation, odd shapes (7x5,
//      5x7, 32x32, 1/3/64 channels, stride 2, padding 1, a final convolution to [1, 1, 1]),
//      batches 1, 3, 17 (chunked) and every normalization; the reference itself is checked
//      against central finite differences of f and of f_hat.
//   3. Properties: |f_hat| <= 1 (GN), ||grad f_hat|| <= 1 (GN, ReLU nets), hinge D -
//      wasserstein D = 2 on GN scores, chunking and threads do not change results.
// Plus plan caching per chunk size and no oneDNN "ref" implementation among the primitives;
// the validation table and Score's bad inputs are in discriminator_validation_test.cc.
#include "core/discriminator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
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

Network LinearNetwork(std::vector<float> w, float b) {
  Network net;
  net.input_shape = {static_cast<int64_t>(w.size())};
  const int64_t in = static_cast<int64_t>(w.size());
  net.layers.push_back(DenseLayer{MakeTensor({1, in}, std::move(w)), MakeTensor({1}, {b})});
  return net;
}

ScoreOptions Options(Normalization normalization, bool gradient, double epsilon = 1e-8) {
  ScoreOptions o;
  o.normalization = normalization;
  o.return_input_gradient = gradient;
  o.epsilon = epsilon;
  return o;
}

double VectorNorm(const float* v, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(v[i]) * v[i];
  return std::sqrt(s);
}

// ---------------------------------------------------------------------------------------------
// 1. Goldens (MATH.md section 8). Tolerances: float32 results ("numbers on the wire are
// float32"), so a few float32 ulps of the value.

TEST(DiscriminatorGolden, LinearDiscriminator) {
  ASSERT_OK_AND_ASSIGN(auto net, CompiledNetwork::Create(LinearNetwork({3, 4}, 1)));
  const Tensor x = MakeTensor({1, 2}, {1, 1});
  ASSERT_OK_AND_ASSIGN(ScoreResult gn, Score(*net, x, Options(Normalization::kGradientNorm, true)));
  EXPECT_NEAR(gn.raw_scores.values[0], 8.0, 8 * 2e-7);
  EXPECT_NEAR(gn.gradient_norms.values[0], 5.0, 5 * 2e-7);
  EXPECT_NEAR(gn.scores.values[0], 8.0 / 13.0, 2e-7);  // 0.6153846154
  ASSERT_TRUE(gn.input_gradients.has_value());
  EXPECT_EQ(gn.input_gradients->shape, (Shape{1, 2}));
  EXPECT_NEAR(VectorNorm(gn.input_gradients->values.data(), 2), 25.0 / 169.0, 2e-7);  // 0.1479289941
  // Exact region formula: grad f_hat = g n / (n + |f|)^2 = [3, 4] * 5 / 169.
  EXPECT_NEAR(gn.input_gradients->values[0], 15.0 / 169.0, 1e-7);
  EXPECT_NEAR(gn.input_gradients->values[1], 20.0 / 169.0, 1e-7);

  ASSERT_OK_AND_ASSIGN(ScoreResult gran, Score(*net, x, Options(Normalization::kGran, true, 1e-8)));
  EXPECT_NEAR(gran.scores.values[0], 1.59999999936, 1.6 * 2e-7);
  // GraN region formula: grad f_hat = g n / (n^2 + eps) = [3, 4] / 5.
  EXPECT_NEAR(gran.input_gradients->values[0], 0.6, 2e-7);
  EXPECT_NEAR(gran.input_gradients->values[1], 0.8, 2e-7);

  ASSERT_OK_AND_ASSIGN(ScoreResult none, Score(*net, x, Options(Normalization::kNone, true)));
  EXPECT_FLOAT_EQ(none.scores.values[0], 8.0f);
  EXPECT_FLOAT_EQ(none.input_gradients->values[0], 3.0f);
  EXPECT_FLOAT_EQ(none.input_gradients->values[1], 4.0f);
}

TEST(DiscriminatorGolden, ZeroOverZeroIsZero) {
  // f = 0 and grad f = 0: GN would be 0/0 in the official code; primserve defines 0.
  ASSERT_OK_AND_ASSIGN(auto zero, CompiledNetwork::Create(LinearNetwork({0, 0}, 0)));
  const Tensor x = MakeTensor({2, 2}, {1, 2, -3, 4});
  for (Normalization norm : {Normalization::kGradientNorm, Normalization::kGran}) {
    ASSERT_OK_AND_ASSIGN(ScoreResult r, Score(*zero, x, Options(norm, true)));
    for (int b = 0; b < 2; ++b) {
      EXPECT_EQ(r.scores.values[b], 0.0f);
      EXPECT_EQ(r.gradient_norms.values[b], 0.0f);
    }
    for (float v : r.input_gradients->values) EXPECT_EQ(v, 0.0f);
  }
  // f = 2, grad f = 0: GN f_hat = sign(f) = 1, and the gradient is 0 (f_hat constant).
  ASSERT_OK_AND_ASSIGN(auto constant, CompiledNetwork::Create(LinearNetwork({0, 0}, 2)));
  ASSERT_OK_AND_ASSIGN(ScoreResult r, Score(*constant, x, Options(Normalization::kGradientNorm, true)));
  EXPECT_EQ(r.scores.values[0], 1.0f);
  for (float v : r.input_gradients->values) EXPECT_EQ(v, 0.0f);

  // The same through the Hessian path (TANH): g = 0 gives v = 0 and H v = 0, never NaN, even
  // for a GraN epsilon so small that f / epsilon overflows.
  std::mt19937 rng(1);
  Network smooth;
  smooth.input_shape = {2};
  smooth.layers = {DenseLayer{Tensor::Zeros({3, 2}), MakeTensor({3}, {0.5f, -1.0f, 2.0f})},
                   Act(ActivationKind::kTanh), Dense(1, 3, rng)};
  ASSERT_OK_AND_ASSIGN(auto flat, CompiledNetwork::Create(std::move(smooth)));
  for (auto [norm, eps] : {std::pair{Normalization::kGradientNorm, 1e-8}, std::pair{Normalization::kGran, 1e-300}}) {
    ASSERT_OK_AND_ASSIGN(ScoreResult s, Score(*flat, x, Options(norm, true, eps)));
    EXPECT_EQ(s.gradient_norms.values[0], 0.0f);
    EXPECT_EQ(std::fabs(s.scores.values[0]), norm == Normalization::kGran ? 0.0f : 1.0f);
    for (float v : s.input_gradients->values) EXPECT_EQ(v, 0.0f);
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Differential against the double reference.

struct NetCase {
  const char* name;
  Shape input_shape;
  // Builds the layers with activation `act` between them.
  std::function<std::vector<Layer>(const ActivationLayer& act, std::mt19937& rng)> layers;
};

std::vector<NetCase> NetCases() {
  return {
      {"mlp", {7},
       [](const ActivationLayer& a, std::mt19937& rng) {
         return std::vector<Layer>{Dense(5, 7, rng), a, Dense(4, 5, rng), a, Dense(1, 4, rng)};
       }},
      {"cnn_1x7x5", {1, 7, 5},
       [](const ActivationLayer& a, std::mt19937& rng) {
         // 7x5 -(k3 s2 p1)-> 4x3 -(k3 s1 p1)-> 4x3, 4 and 3 channels (padded in blocked layouts).
         return std::vector<Layer>{Conv(4, 1, 3, 2, 1, rng), a, Conv(3, 4, 3, 1, 1, rng), a, FlattenLayer{},
                                   Dense(1, 36, rng)};
       }},
      {"cnn_3x5x7", {3, 5, 7},
       [](const ActivationLayer& a, std::mt19937& rng) {
         // 5x7 -(k3 s2 p1)-> 3x4 -(k2 s1 p0)-> 2x3.
         return std::vector<Layer>{Conv(3, 3, 3, 2, 1, rng), a, Conv(5, 3, 2, 1, 0, rng), a, FlattenLayer{},
                                   Dense(2, 30, rng), a, Dense(1, 2, rng)};
       }},
      {"dcgan_tail_3x8x8", {3, 8, 8},
       [](const ActivationLayer& a, std::mt19937& rng) {
         // A final convolution to [1, 1, 1], no Dense layer (the DCGAN discriminator's last layer).
         return std::vector<Layer>{Conv(8, 3, 4, 2, 1, rng), a, Conv(1, 8, 4, 1, 0, rng)};
       }},
      {"cnn_64x5x7", {64, 5, 7},
       [](const ActivationLayer& a, std::mt19937& rng) {
         return std::vector<Layer>{Conv(16, 64, 3, 2, 1, rng), a, FlattenLayer{}, Dense(1, 16 * 3 * 4, rng)};
       }},
      {"cnn_3x32x32", {3, 32, 32},
       [](const ActivationLayer& a, std::mt19937& rng) {
         // 32x32 -(k4 s2 p1)-> 64 x 16x16 -(k3 s2 p1)-> 8 x 8x8.
         return std::vector<Layer>{Conv(64, 3, 4, 2, 1, rng), a, Conv(8, 64, 3, 2, 1, rng), a, FlattenLayer{},
                                   Dense(1, 512, rng)};
       }},
  };
}

std::vector<ActivationLayer> AllActivations() {
  return {Act(ActivationKind::kRelu),      Act(ActivationKind::kLeakyRelu, 0.2), Act(ActivationKind::kTanh),
          Act(ActivationKind::kSigmoid),   Act(ActivationKind::kElu, 1.0),       Act(ActivationKind::kElu, 0.5),
          Act(ActivationKind::kIdentity)};
}

std::string ActName(const ActivationLayer& a) {
  static const char* kNames[] = {"UNSPECIFIED", "RELU", "LEAKY_RELU", "TANH", "SIGMOID", "ELU", "IDENTITY"};
  return absl::StrCat(kNames[static_cast<int>(a.kind)], "(", a.alpha, ")");
}

// ||a - b|| / ||b|| over a whole batch (floats against doubles).
double RelativeError(const std::vector<float>& a, const std::vector<double>& b) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff += (a[i] - b[i]) * (a[i] - b[i]);
    ref += b[i] * b[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(ref), 1e-30);
}

// Relative tolerance of float32 network outputs against the double reference. The network
// computes in float32 from the same float weights and inputs; each value is a chain of dot
// products of up to ~1000 terms (accumulated in blocks by oneDNN), whose rounding grows like
// sqrt(K) eps ~ 30 * 6e-8 ~ 2e-6 per layer, a few layers deep and amplified by the network's
// condition (ratio of sum |terms| to |sum|, O(1)-O(10) for these He-scaled nets): 2e-5.
// H v goes through two more passes and cancellation in n g - f H v: 1e-4 for input_gradients.
constexpr double kValueTolerance = 2e-5;
constexpr double kGradientTolerance = 1e-4;

TEST(DiscriminatorDifferential, MatchesDoubleReference) {
  uint32_t seed = 1;
  double worst[4] = {0, 0, 0, 0};
  for (const NetCase& nc : NetCases()) {
    for (const ActivationLayer& act : AllActivations()) {
      for (int64_t batch : {1, 3, 17}) {
        const bool big = NumElements(nc.input_shape) > 1000;
        if (big && batch == 17) continue;  // The 32x32 x 64-channel reference is slow; 1 and 3 suffice.
        SCOPED_TRACE(absl::StrCat(nc.name, " ", ActName(act), " batch ", batch));
        std::mt19937 rng(seed++);
        Network net;
        net.input_shape = nc.input_shape;
        net.layers = nc.layers(act, rng);
        CompileOptions copts;
        copts.max_chunk = 8;  // Batch 17 runs as 8 + 8 + 1.
        ASSERT_OK_AND_ASSIGN(auto compiled, CompiledNetwork::Create(net, copts));
        Shape shape{batch};
        shape.insert(shape.end(), nc.input_shape.begin(), nc.input_shape.end());
        const Tensor x = NormalTensor(shape, rng, 1.0);
        const std::vector<RefSample> ref = RefScoreBatch(net, x);
        for (auto [norm, eps] : {std::pair{Normalization::kGradientNorm, 1e-8}, std::pair{Normalization::kGran, 1e-8},
                                 std::pair{Normalization::kGran, 0.5}, std::pair{Normalization::kNone, 1e-8}}) {
          SCOPED_TRACE(absl::StrCat("normalization ", static_cast<int>(norm), " eps ", eps));
          ASSERT_OK_AND_ASSIGN(ScoreResult r, Score(*compiled, x, Options(norm, true, eps)));
          std::vector<double> f, n, fhat, grad;
          for (const RefSample& s : ref) {
            f.push_back(s.f);
            n.push_back(s.n);
            fhat.push_back(RefNormalize(s.f, s.n, norm, eps));
            const std::vector<double> gs = RefNormalizedGradient(s, norm, eps);
            grad.insert(grad.end(), gs.begin(), gs.end());
          }
          const double errors[4] = {RelativeError(r.raw_scores.values, f), RelativeError(r.gradient_norms.values, n),
                                    RelativeError(r.scores.values, fhat),
                                    RelativeError(r.input_gradients->values, grad)};
          EXPECT_LT(errors[0], kValueTolerance) << "raw_scores";
          EXPECT_LT(errors[1], kValueTolerance) << "gradient_norms";
          EXPECT_LT(errors[2], kValueTolerance) << "scores";
          EXPECT_LT(errors[3], kGradientTolerance) << "input_gradients";
          for (int i = 0; i < 4; ++i) worst[i] = std::max(worst[i], errors[i]);
        }
      }
    }
  }
  std::printf("worst relative errors: raw_scores %.2g, gradient_norms %.2g, scores %.2g, input_gradients %.2g\n",
              worst[0], worst[1], worst[2], worst[3]);
}

// The reference's own derivatives against central differences of the reference (double):
// g = grad f, and the chain-rule grad f_hat (with H v) against differences of f_hat itself,
// which checks the GN / GraN gradient formulas of the header, sign term included.
TEST(DiscriminatorDifferential, ReferenceMatchesFiniteDifferences) {
  uint32_t seed = 100;
  for (const NetCase& nc : NetCases()) {
    if (NumElements(nc.input_shape) > 300) continue;  // One difference pair per input element.
    for (const ActivationLayer& act : AllActivations()) {
      SCOPED_TRACE(absl::StrCat(nc.name, " ", ActName(act)));
      std::mt19937 rng(seed++);
      Network net;
      net.input_shape = nc.input_shape;
      net.layers = nc.layers(act, rng);
      const Tensor xt = NormalTensor(nc.input_shape, rng, 1.0);
      const std::vector<double> x(xt.values.begin(), xt.values.end());
      const RefSample r = RefScore(net, x, true);
      // Step 1e-5 in double: truncation ~1e-10, rounding ~1e-11 (see RefScore); a crossing of
      // a ReLU kink within +-1e-5 would show up as an O(1) error, not be hidden.
      constexpr double h = 1e-5;
      for (auto [norm, eps] : {std::pair{Normalization::kNone, 0.0}, std::pair{Normalization::kGradientNorm, 0.0},
                               std::pair{Normalization::kGran, 1e-8}, std::pair{Normalization::kGran, 0.5}}) {
        const std::vector<double> want = RefNormalizedGradient(r, norm, eps);
        double max_err = 0, max_ref = 0;
        for (size_t i = 0; i < x.size(); ++i) {
          std::vector<double> xp = x, xm = x, gp, gm;
          xp[i] += h;
          xm[i] -= h;
          const double fp = RefForward(net, xp, &gp), fm = RefForward(net, xm, &gm);
          const double fd = (RefNormalize(fp, Norm(gp), norm, eps) - RefNormalize(fm, Norm(gm), norm, eps)) / (2 * h);
          max_err = std::max(max_err, std::fabs(fd - want[i]));
          max_ref = std::max(max_ref, std::fabs(want[i]));
        }
        EXPECT_LT(max_err, 1e-6 * std::max(max_ref, 1.0)) << "normalization " << static_cast<int>(norm);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Properties.

Network RandomCnn(const ActivationLayer& act, std::mt19937& rng, double gain) {
  Network net;
  net.input_shape = {3, 9, 9};
  net.layers = {Conv(6, 3, 3, 2, 1, rng, gain), act, Conv(4, 6, 3, 1, 0, rng, gain), act, FlattenLayer{},
                Dense(1, 36, rng, gain)};
  return net;
}

TEST(DiscriminatorProperties, GradientNormScoresAreBounded) {
  std::mt19937 rng(7);
  for (const ActivationLayer& act : AllActivations()) {
    for (double gain : {0.01, 1.0, 30.0}) {
      SCOPED_TRACE(absl::StrCat(ActName(act), " gain ", gain));
      Network net = RandomCnn(act, rng, gain);
      std::get<DenseLayer>(net.layers.back()).bias.values[0] = static_cast<float>(gain);  // Large |f| too.
      ASSERT_OK_AND_ASSIGN(auto compiled, CompiledNetwork::Create(std::move(net)));
      const Tensor x = NormalTensor({32, 3, 9, 9}, rng, gain);
      ASSERT_OK_AND_ASSIGN(ScoreResult r, Score(*compiled, x, Options(Normalization::kGradientNorm, true)));
      for (int64_t b = 0; b < 32; ++b) {
        // |f| / (n + |f|) <= 1 in double, and rounding to float cannot pass 1: exact.
        EXPECT_LE(std::fabs(r.scores.values[b]), 1.0f);
        if (!IsPiecewiseLinear(compiled->network())) continue;
        // ReLU-type nets: ||grad f_hat|| = n^2 / (n + |f|)^2 <= 1; float32 rounding of the
        // 243-element gradient and its norm: 1e-5.
        EXPECT_LE(VectorNorm(r.input_gradients->values.data() + b * 243, 243), 1.0 + 1e-5);
      }
    }
  }
}

TEST(DiscriminatorProperties, HingeMinusWassersteinIsTwoOnGradientNormScores) {
  std::mt19937 rng(11);
  ASSERT_OK_AND_ASSIGN(auto compiled,
                       CompiledNetwork::Create(RandomCnn(Act(ActivationKind::kLeakyRelu, 0.2), rng, 3.0)));
  const Tensor real = NormalTensor({40, 3, 9, 9}, rng, 2.0);
  const Tensor fake = NormalTensor({24, 3, 9, 9}, rng, 0.5);
  ScoreOptions options;  // GRADIENT_NORM
  ASSERT_OK_AND_ASSIGN(GanLosses hinge, DiscriminatorLosses(*compiled, real, fake, LossKind::kHinge, options));
  ASSERT_OK_AND_ASSIGN(GanLosses wass, DiscriminatorLosses(*compiled, real, fake, LossKind::kWasserstein, options));
  // |f_hat| <= 1 makes both relus linear: the difference is 1 + 1 up to double rounding of
  // 64 terms of size <= 2 (~64 * 2 * 2^-53).
  EXPECT_NEAR(hinge.discriminator - wass.discriminator, 2.0, 1e-13);
  EXPECT_DOUBLE_EQ(hinge.generator, wass.generator);
}

TEST(DiscriminatorLosses, HandComputedValues) {
  const std::vector<float> real = {0.5f, 2.0f}, fake = {-0.5f, -3.0f};
  ASSERT_OK_AND_ASSIGN(GanLosses hinge, ComputeGanLosses(real, fake, LossKind::kHinge));
  EXPECT_DOUBLE_EQ(hinge.discriminator, (0.5 + 0.0) / 2 + (0.5 + 0.0) / 2);
  EXPECT_DOUBLE_EQ(hinge.generator, 1.75);
  ASSERT_OK_AND_ASSIGN(GanLosses wass, ComputeGanLosses(real, fake, LossKind::kWasserstein));
  EXPECT_DOUBLE_EQ(wass.discriminator, -1.25 + -1.75);
  EXPECT_DOUBLE_EQ(wass.generator, 1.75);
  ASSERT_OK_AND_ASSIGN(GanLosses bce, ComputeGanLosses(real, fake, LossKind::kBce));
  auto sp = [](double x) { return std::log(1.0 + std::exp(x)); };  // Naive: fine at these sizes.
  EXPECT_NEAR(bce.discriminator, (sp(-0.5) + sp(-2.0)) / 2 + (sp(-0.5) + sp(-3.0)) / 2, 1e-15);
  EXPECT_NEAR(bce.generator, (sp(0.5) + sp(3.0)) / 2, 1e-15);
  // Stable at large logits: softplus(1000) = 1000, softplus(-1000) = e^-1000 (no overflow).
  const std::vector<float> big = {1000.0f}, small = {-1000.0f};
  ASSERT_OK_AND_ASSIGN(GanLosses extreme, ComputeGanLosses(small, big, LossKind::kBce));
  EXPECT_DOUBLE_EQ(extreme.discriminator, 2000.0);
  EXPECT_DOUBLE_EQ(extreme.generator, 0.0);
  EXPECT_EQ(ComputeGanLosses({}, fake, LossKind::kHinge).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ComputeGanLosses(real, {}, LossKind::kBce).status().message()), HasSubstr("fake_scores"));
}

TEST(DiscriminatorProperties, ChunksAndThreadsDoNotChangeResults) {
  std::mt19937 rng(5);
  const Network net = RandomCnn(Act(ActivationKind::kTanh), rng, 1.5);
  ASSERT_OK_AND_ASSIGN(auto whole, CompiledNetwork::Create(net));
  CompileOptions small;
  small.max_chunk = 4;
  ASSERT_OK_AND_ASSIGN(auto chunked, CompiledNetwork::Create(net, small));
  const Tensor x = NormalTensor({10, 3, 9, 9}, rng, 1.0);
  const ScoreOptions options = Options(Normalization::kGradientNorm, true);
  ASSERT_OK_AND_ASSIGN(ScoreResult a, Score(*whole, x, options));
  ASSERT_OK_AND_ASSIGN(ScoreResult b, Score(*chunked, x, options));
  EXPECT_EQ(chunked->CachedChunkSizes(), (std::vector<int64_t>{2, 4}));  // 4 + 4 + 2.
  for (size_t i = 0; i < a.scores.values.size(); ++i) {
    // Different batch sizes may block the float32 sums differently: a few ulps.
    EXPECT_NEAR(a.scores.values[i], b.scores.values[i], 1e-6);
  }
  // Concurrent calls on one CompiledNetwork give the single-threaded result.
  std::vector<ScoreResult> results(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] { results[t] = *Score(*whole, x, options); });
  }
  for (std::thread& t : threads) t.join();
  for (const ScoreResult& r : results) {
    EXPECT_EQ(r.scores.values, a.scores.values);
    EXPECT_EQ(r.input_gradients->values, a.input_gradients->values);
  }
}

// ---------------------------------------------------------------------------------------------
// Caching and oneDNN implementations.

TEST(DiscriminatorCompile, CachesOnePlanPerChunkSize) {
  std::mt19937 rng(3);
  ASSERT_OK_AND_ASSIGN(auto compiled, CompiledNetwork::Create(RandomCnn(Act(ActivationKind::kRelu), rng, 1.5)));
  EXPECT_EQ(compiled->plans_built(), 0);
  const Tensor x3 = NormalTensor({3, 3, 9, 9}, rng, 1.0);
  ASSERT_TRUE(Score(*compiled, x3, ScoreOptions{}).ok());
  ASSERT_TRUE(Score(*compiled, x3, Options(Normalization::kGran, true)).ok());
  EXPECT_EQ(compiled->plans_built(), 1);
  EXPECT_EQ(compiled->CachedChunkSizes(), (std::vector<int64_t>{3}));
  ASSERT_TRUE(Score(*compiled, NormalTensor({5, 3, 9, 9}, rng, 1.0), ScoreOptions{}).ok());
  ASSERT_TRUE(Score(*compiled, x3, ScoreOptions{}).ok());
  EXPECT_EQ(compiled->plans_built(), 2);
  EXPECT_EQ(compiled->CachedChunkSizes(), (std::vector<int64_t>{3, 5}));
  ASSERT_OK_AND_ASSIGN(auto plan_a, compiled->GetPlan(3));
  ASSERT_OK_AND_ASSIGN(auto plan_b, compiled->GetPlan(3));
  EXPECT_EQ(plan_a.get(), plan_b.get());
}

// Idle workspaces of every network are bounded together: to keep a released workspace within
// the budget, the ones released longest ago (the coldest networks') are freed, and those networks'
// next calls allocate afresh with bit-identical results.
TEST(DiscriminatorCompile, IdleWorkspacesStayWithinTheProcessBudgetColdestFreedFirst) {
  struct RestoreBudget {
    ~RestoreBudget() { SetIdleWorkspaceBudget(kDefaultIdleWorkspaceBudget); }
  } restore;
  SetIdleWorkspaceBudget(0);  // Frees what earlier tests left idle.
  ASSERT_EQ(IdleWorkspaceBytes(), 0);
  SetIdleWorkspaceBudget(kDefaultIdleWorkspaceBudget);
  std::mt19937 rng(5);
  const Tensor x = NormalTensor({16, 3, 9, 9}, rng, 1.0);
  const ScoreOptions options = Options(Normalization::kGradientNorm, true);
  ASSERT_OK_AND_ASSIGN(auto probe, CompiledNetwork::Create(RandomCnn(Act(ActivationKind::kRelu), rng, 1.5)));
  ASSERT_OK_AND_ASSIGN(ScoreResult probe_first, Score(*probe, x, options));
  const int64_t one = IdleWorkspaceBytes();  // Every network below has the same shapes.
  ASSERT_GT(one, 0);
  const int64_t budget = 3 * one + one / 2;
  SetIdleWorkspaceBudget(budget);
  std::vector<std::shared_ptr<const CompiledNetwork>> networks;
  std::vector<ScoreResult> first;
  for (int i = 0; i < 6; ++i) {
    ASSERT_OK_AND_ASSIGN(auto net, CompiledNetwork::Create(RandomCnn(Act(ActivationKind::kRelu), rng, 1.5)));
    ASSERT_OK_AND_ASSIGN(ScoreResult r, Score(*net, x, options));
    networks.push_back(net);
    first.push_back(std::move(r));
    EXPECT_EQ(IdleWorkspaceBytes(), std::min<int64_t>(i + 2, 3) * one) << "network " << i;
  }
  // The probe's and the first networks' workspaces were freed (coldest first); every network
  // still scores exactly as before, with a kept workspace or a fresh one.
  for (size_t i = 0; i < networks.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(ScoreResult again, Score(*networks[i], x, options));
    EXPECT_EQ(again.scores.values, first[i].scores.values) << "network " << i;
    EXPECT_EQ(again.input_gradients->values, first[i].input_gradients->values) << "network " << i;
    EXPECT_LE(IdleWorkspaceBytes(), budget);
  }
  ASSERT_OK_AND_ASSIGN(ScoreResult probe_again, Score(*probe, x, options));
  EXPECT_EQ(probe_again.scores.values, probe_first.scores.values);
  EXPECT_EQ(IdleWorkspaceBytes(), 3 * one);  // The probe and networks 4, 5.
  networks.clear();  // A plan's idle workspace leaves the total with the plan.
  EXPECT_EQ(IdleWorkspaceBytes(), one);
  SetIdleWorkspaceBudget(one - 1);  // Lowering the budget frees what no longer fits.
  EXPECT_EQ(IdleWorkspaceBytes(), 0);
  ASSERT_TRUE(Score(*probe, x, options).ok());  // A workspace larger than the budget is not kept.
  EXPECT_EQ(IdleWorkspaceBytes(), 0);
  SetIdleWorkspaceBudget(budget);
  ASSERT_TRUE(Score(*probe, x, options).ok());
  EXPECT_EQ(IdleWorkspaceBytes(), one);
  probe.reset();
  EXPECT_EQ(IdleWorkspaceBytes(), 0);
}

TEST(DiscriminatorCompile, NoReferenceImplementations) {
  // A DCGAN-like net with a 3-channel first layer (whose backward-data oneDNN 2.6 implements
  // well only with format_tag::any) and every activation, including SIGMOID on 4 padded
  // channels (no jit kernel on the blocked layout), batch 1 and 64.
  std::mt19937 rng(9);
  Network net;
  net.input_shape = {3, 16, 16};
  net.layers = {Conv(4, 3, 4, 2, 1, rng),  Act(ActivationKind::kSigmoid),     Conv(16, 4, 4, 2, 1, rng),
                Act(ActivationKind::kLeakyRelu, 0.2), Conv(32, 16, 3, 1, 1, rng), Act(ActivationKind::kTanh),
                Conv(8, 32, 3, 2, 1, rng), Act(ActivationKind::kElu, 1.0),   Act(ActivationKind::kRelu),
                FlattenLayer{},            Dense(8, 32, rng),                Act(ActivationKind::kSigmoid),
                Dense(1, 8, rng)};
  ASSERT_OK_AND_ASSIGN(auto compiled, CompiledNetwork::Create(std::move(net)));
  for (int64_t batch : {1, 64}) {
    ASSERT_TRUE(Score(*compiled, NormalTensor({batch, 3, 16, 16}, rng, 1.0), Options(Normalization::kGran, true)).ok());
  }
  // The benchmark's DCGAN discriminator (3x32x32, conv 3->64->128->256 4x4 stride 2, LeakyReLU
  // 0.2, Dense 4096 -> 1): building its plans picks every implementation it will run.
  Network dcgan;
  dcgan.input_shape = {3, 32, 32};
  const ActivationLayer lrelu = Act(ActivationKind::kLeakyRelu, 0.2);
  dcgan.layers = {Conv(64, 3, 4, 2, 1, rng),    lrelu, Conv(128, 64, 4, 2, 1, rng), lrelu,
                  Conv(256, 128, 4, 2, 1, rng), lrelu, FlattenLayer{},              Dense(1, 4096, rng)};
  ASSERT_OK_AND_ASSIGN(auto dcgan_compiled, CompiledNetwork::Create(std::move(dcgan)));
  for (int64_t batch : {1, 64, 256}) ASSERT_TRUE(dcgan_compiled->GetPlan(batch).ok());

  std::vector<std::string> impls = compiled->Implementations();
  for (const std::string& impl : dcgan_compiled->Implementations()) impls.push_back(impl);
  ASSERT_FALSE(impls.empty());
  for (const std::string& impl : impls) {
    EXPECT_NE(impl.rfind("ref", 0), 0u) << "oneDNN fell back to a reference implementation: " << impl;
  }
  std::string all;
  for (const std::string& impl : impls) absl::StrAppend(&all, impl, "; ");
  std::printf("implementations: %s\n", all.c_str());
}

}  // namespace
}  // namespace primserve
