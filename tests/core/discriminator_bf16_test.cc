// Tests for compute precision BF16 of core/discriminator.h: bfloat16 products with float32
// accumulation, against the same plain double-precision reference as the F32 tests
// (discriminator_test_util.h), on odd shapes; no oneDNN reference implementation in BF16
// plans; plans cached per (chunk, precision); UNIMPLEMENTED without native bf16. Also the
// activation fusion of piecewise-linear networks (F32 and BF16).
//
// Error bound (documented in discriminator.h): rounding an operand to bfloat16 (8 significant
// bits) has relative error <= 2^-9 ~ 2e-3. A layer's products see two rounded operands, and
// the activations and their gradients are stored in bfloat16 between layers, so each layer
// adds ~3 roundings; these add up over 2-4 layers and are amplified by the network's condition
// (sum |terms| / |sum|, O(1)-O(10) for these He-scaled nets). The batch-relative errors
// below (||a - b|| / ||b|| over the batch) come out at 1e-3 to 2e-2 for f, ||g|| and f_hat
// (bound 4e-2). input_gradients are elementwise and worse, up to ~5e-2: besides the roundings,
// every pre-activation z within bf16 error of 0 may take the other side of a RELU / LEAKY_RELU
// kink than in the double reference, which changes that unit's slope (1 vs alpha) in the
// backward pass; ||g|| averages such flips out, single elements do not (bound 8e-2). F32 on
// the same cases stays below 2e-5 / 1e-4 (printed next to BF16).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/discriminator.h"
#include "core/tile_matmul.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/discriminator_test_util.h"

namespace primserve {
namespace {

using ::testing::HasSubstr;
using namespace disc_test;  // NOLINT: test helpers.

#define PS_BF16_CONCAT_INNER_(a, b) a##b
#define PS_BF16_CONCAT_(a, b) PS_BF16_CONCAT_INNER_(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) ASSERT_OK_AND_ASSIGN_IMPL_(PS_BF16_CONCAT_(statusor_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                               \
  ASSERT_TRUE(statusor.ok()) << statusor.status();      \
  lhs = *std::move(statusor)

constexpr double kBf16ValueBound = 4e-2;
constexpr double kBf16GradientBound = 8e-2;
constexpr double kF32ValueBound = 2e-5;     // As discriminator_test.cc (float32 rounding).
constexpr double kF32GradientBound = 1e-4;  // As discriminator_test.cc.

ScoreOptions Options(Normalization normalization, ComputePrecision precision) {
  ScoreOptions o;
  o.normalization = normalization;
  o.return_input_gradient = true;
  o.precision = precision;
  return o;
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

struct Bf16Case {
  const char* name;
  Shape input_shape;
  std::vector<Layer> (*layers)(const ActivationLayer& act, std::mt19937& rng);
};

std::vector<Bf16Case> Cases() {
  return {
      {"mlp_7", {7},
       [](const ActivationLayer& a, std::mt19937& rng) {
         return std::vector<Layer>{Dense(5, 7, rng), a, Dense(4, 5, rng), a, Dense(1, 4, rng)};
       }},
      {"cnn_3x5x7", {3, 5, 7},
       [](const ActivationLayer& a, std::mt19937& rng) {
         // 5x7 -(k3 s2 p1)-> 3x4 -(k2 s1 p0)-> 2x3; 3 and 5 channels (padded in blocked layouts).
         return std::vector<Layer>{Conv(3, 3, 3, 2, 1, rng), a, Conv(5, 3, 2, 1, 0, rng), a, FlattenLayer{},
                                   Dense(2, 30, rng), a, Dense(1, 2, rng)};
       }},
      {"dcgan_tail_3x8x8", {3, 8, 8},
       [](const ActivationLayer& a, std::mt19937& rng) {
         // A final convolution to [1, 1, 1]: f comes out of a convolution's f32 dst.
         return std::vector<Layer>{Conv(8, 3, 4, 2, 1, rng), a, Conv(1, 8, 4, 1, 0, rng)};
       }},
      {"cnn_3x32x32", {3, 32, 32},
       [](const ActivationLayer& a, std::mt19937& rng) {
         return std::vector<Layer>{Conv(64, 3, 4, 2, 1, rng), a, Conv(8, 64, 3, 2, 1, rng), a, FlattenLayer{},
                                   Dense(1, 512, rng)};
       }},
  };
}

// The errors of raw_scores, gradient_norms, scores, input_gradients against the reference.
struct Errors {
  double value[4] = {0, 0, 0, 0};
  void Max(const Errors& other) {
    for (int i = 0; i < 4; ++i) value[i] = std::max(value[i], other.value[i]);
  }
};

Errors Compare(const ScoreResult& r, const std::vector<RefSample>& ref, Normalization norm) {
  std::vector<double> f, n, fhat, grad;
  for (const RefSample& s : ref) {
    f.push_back(s.f);
    n.push_back(s.n);
    fhat.push_back(RefNormalize(s.f, s.n, norm, 1e-8));
    const std::vector<double> gs = RefNormalizedGradient(s, norm, 1e-8);
    grad.insert(grad.end(), gs.begin(), gs.end());
  }
  Errors e;
  e.value[0] = RelativeError(r.raw_scores.values, f);
  e.value[1] = RelativeError(r.gradient_norms.values, n);
  e.value[2] = RelativeError(r.scores.values, fhat);
  e.value[3] = RelativeError(r.input_gradients->values, grad);
  return e;
}

void ExpectWithin(const Errors& e, double value_bound, double gradient_bound) {
  EXPECT_LT(e.value[0], value_bound) << "raw_scores";
  EXPECT_LT(e.value[1], value_bound) << "gradient_norms";
  EXPECT_LT(e.value[2], value_bound) << "scores";
  EXPECT_LT(e.value[3], gradient_bound) << "input_gradients";
}

void Print(const char* what, const Errors& e) {
  std::printf("%s worst relative errors vs double: raw_scores %.2g, gradient_norms %.2g, scores %.2g, "
              "input_gradients %.2g\n",
              what, e.value[0], e.value[1], e.value[2], e.value[3]);
}

TEST(DiscriminatorBf16, MatchesDoubleReference) {
  if (!HasNativeBf16()) GTEST_SKIP() << "no native bf16 on this CPU (UNIMPLEMENTED is tested below)";
  uint32_t seed = 100;
  Errors worst_bf16, worst_f32;
  // LEAKY_RELU and RELU are fused into the convolutions; TANH and ELU take the Hessian term's
  // tangent and second-order passes on bf16 activations.
  const std::vector<ActivationLayer> activations = {Act(ActivationKind::kLeakyRelu, 0.2), Act(ActivationKind::kRelu),
                                                    Act(ActivationKind::kTanh), Act(ActivationKind::kElu, 1.0)};
  for (const Bf16Case& c : Cases()) {
    for (const ActivationLayer& act : activations) {
      for (int64_t batch : {1, 3, 17}) {
        const bool big = NumElements(c.input_shape) > 1000;
        if (big && batch == 17) continue;  // The 32x32 reference is slow; 1 and 3 suffice.
        SCOPED_TRACE(absl::StrCat(c.name, " activation ", static_cast<int>(act.kind), " batch ", batch));
        std::mt19937 rng(seed++);
        Network net;
        net.input_shape = c.input_shape;
        net.layers = c.layers(act, rng);
        CompileOptions copts;
        copts.max_chunk = 8;  // Batch 17 runs as 8 + 8 + 1.
        ASSERT_OK_AND_ASSIGN(auto compiled, CompiledNetwork::Create(net, copts));
        Shape shape{batch};
        shape.insert(shape.end(), c.input_shape.begin(), c.input_shape.end());
        const Tensor x = NormalTensor(shape, rng, 1.0);
        const std::vector<RefSample> ref = RefScoreBatch(net, x);
        for (Normalization norm : {Normalization::kGradientNorm, Normalization::kGran}) {
          SCOPED_TRACE(absl::StrCat("normalization ", static_cast<int>(norm)));
          ASSERT_OK_AND_ASSIGN(ScoreResult bf16, Score(*compiled, x, Options(norm, ComputePrecision::kBF16)));
          ASSERT_OK_AND_ASSIGN(ScoreResult f32, Score(*compiled, x, Options(norm, ComputePrecision::kF32)));
          const Errors e_bf16 = Compare(bf16, ref, norm), e_f32 = Compare(f32, ref, norm);
          ExpectWithin(e_bf16, kBf16ValueBound, kBf16GradientBound);
          ExpectWithin(e_f32, kF32ValueBound, kF32GradientBound);
          worst_bf16.Max(e_bf16);
          worst_f32.Max(e_f32);
        }
      }
    }
  }
  Print("BF16", worst_bf16);
  Print("F32 ", worst_f32);
  // BF16 must really compute in bf16: if it silently ran in f32 its error would be F32's.
  EXPECT_GT(worst_bf16.value[0], 10 * worst_f32.value[0]) << "BF16 looks like F32";
}

// Piecewise-linear networks fuse RELU / LEAKY_RELU with alpha >= 0 into the preceding
// convolution (backward from the output's sign); a negative alpha, or a second activation in a
// row, runs unfused. Every combination against the double reference, in F32 and BF16.
TEST(DiscriminatorFusion, FusedAndUnfusedActivationsMatchTheReference) {
  const std::vector<std::vector<ActivationLayer>> chains = {
      {Act(ActivationKind::kLeakyRelu, -0.5)},                              // unfused: sign(y) != sign(z)
      {Act(ActivationKind::kLeakyRelu, 0.0)},                               // fused, alpha 0
      {Act(ActivationKind::kRelu), Act(ActivationKind::kLeakyRelu, 0.3)},   // fused, then unfused
      {Act(ActivationKind::kIdentity), Act(ActivationKind::kLeakyRelu, 0.1)},  // identity is skipped
  };
  uint32_t seed = 300;
  for (const std::vector<ActivationLayer>& chain : chains) {
    SCOPED_TRACE(absl::StrCat("first activation kind ", static_cast<int>(chain[0].kind), " alpha ", chain[0].alpha));
    std::mt19937 rng(seed++);
    Network net;
    net.input_shape = {3, 9, 7};
    net.layers.push_back(Conv(16, 3, 3, 2, 1, rng));
    net.layers.insert(net.layers.end(), chain.begin(), chain.end());
    net.layers.push_back(Conv(32, 16, 3, 2, 1, rng));
    net.layers.insert(net.layers.end(), chain.begin(), chain.end());
    net.layers.push_back(FlattenLayer{});
    net.layers.push_back(Dense(1, 32 * 3 * 2, rng));
    ASSERT_OK_AND_ASSIGN(auto compiled, CompiledNetwork::Create(net));
    const Tensor x = NormalTensor({5, 3, 9, 7}, rng, 1.0);
    const std::vector<RefSample> ref = RefScoreBatch(net, x);
    ASSERT_OK_AND_ASSIGN(ScoreResult f32,
                         Score(*compiled, x, Options(Normalization::kGradientNorm, ComputePrecision::kF32)));
    ExpectWithin(Compare(f32, ref, Normalization::kGradientNorm), kF32ValueBound, kF32GradientBound);
    if (!HasNativeBf16()) continue;
    ASSERT_OK_AND_ASSIGN(ScoreResult bf16,
                         Score(*compiled, x, Options(Normalization::kGradientNorm, ComputePrecision::kBF16)));
    ExpectWithin(Compare(bf16, ref, Normalization::kGradientNorm), kBf16ValueBound, kBf16GradientBound);
  }
}

TEST(DiscriminatorBf16, GradientNormScoresStayBounded) {
  if (!HasNativeBf16()) GTEST_SKIP() << "no native bf16 on this CPU";
  // |f_hat| <= 1 holds whatever f and n are (the normalisation runs in double on the f32 f, n).
  std::mt19937 rng(5);
  Network net;
  net.input_shape = {3, 9, 9};
  const ActivationLayer lrelu = Act(ActivationKind::kLeakyRelu, 0.2);
  net.layers = {Conv(16, 3, 3, 2, 1, rng), lrelu, Conv(32, 16, 3, 2, 1, rng), lrelu, FlattenLayer{},
                Dense(1, 32 * 3 * 3, rng)};
  ASSERT_OK_AND_ASSIGN(auto compiled, CompiledNetwork::Create(std::move(net)));
  const Tensor x = NormalTensor({40, 3, 9, 9}, rng, 3.0);
  ASSERT_OK_AND_ASSIGN(ScoreResult r, Score(*compiled, x, Options(Normalization::kGradientNorm, ComputePrecision::kBF16)));
  for (float s : r.scores.values) EXPECT_LE(std::fabs(s), 1.0f);
  for (float n : r.gradient_norms.values) EXPECT_GT(n, 0.0f);
}

TEST(DiscriminatorBf16, NoReferenceImplementations) {
  if (!HasNativeBf16()) GTEST_SKIP() << "no native bf16 on this CPU";
  // Every activation, SIGMOID on 4 padded channels, a 3-channel first layer, batch 1 and 64;
  // and the benchmark's DCGAN discriminator at 1, 64 and 256.
  std::mt19937 rng(11);
  Network mixed;
  mixed.input_shape = {3, 16, 16};
  mixed.layers = {Conv(4, 3, 4, 2, 1, rng),  Act(ActivationKind::kSigmoid),       Conv(16, 4, 4, 2, 1, rng),
                  Act(ActivationKind::kLeakyRelu, 0.2), Conv(32, 16, 3, 1, 1, rng), Act(ActivationKind::kTanh),
                  Conv(8, 32, 3, 2, 1, rng), Act(ActivationKind::kElu, 1.0),     Act(ActivationKind::kRelu),
                  FlattenLayer{},            Dense(8, 32, rng),                  Act(ActivationKind::kSigmoid),
                  Dense(1, 8, rng)};
  ASSERT_OK_AND_ASSIGN(auto mixed_compiled, CompiledNetwork::Create(std::move(mixed)));
  for (int64_t batch : {1, 64}) {
    ScoreOptions options = Options(Normalization::kGran, ComputePrecision::kBF16);
    ASSERT_TRUE(Score(*mixed_compiled, NormalTensor({batch, 3, 16, 16}, rng, 1.0), options).ok());
  }
  Network dcgan;
  dcgan.input_shape = {3, 32, 32};
  const ActivationLayer lrelu = Act(ActivationKind::kLeakyRelu, 0.2);
  dcgan.layers = {Conv(64, 3, 4, 2, 1, rng),    lrelu, Conv(128, 64, 4, 2, 1, rng), lrelu,
                  Conv(256, 128, 4, 2, 1, rng), lrelu, FlattenLayer{},              Dense(1, 4096, rng)};
  ASSERT_OK_AND_ASSIGN(auto dcgan_compiled, CompiledNetwork::Create(std::move(dcgan)));
  for (int64_t batch : {1, 64, 256}) ASSERT_TRUE(dcgan_compiled->GetPlan(batch, ComputePrecision::kBF16).ok());

  std::vector<std::string> impls = mixed_compiled->Implementations();
  for (const std::string& impl : dcgan_compiled->Implementations()) impls.push_back(impl);
  ASSERT_FALSE(impls.empty());
  std::string all;
  for (const std::string& impl : impls) {
    EXPECT_NE(impl.rfind("ref", 0), 0u) << "oneDNN fell back to a reference implementation: " << impl;
    absl::StrAppend(&all, impl, "; ");
  }
  // The linear layers really are bf16 kernels.
  EXPECT_THAT(all, HasSubstr("bf16"));
  std::printf("bf16 implementations: %s\n", all.c_str());
}

TEST(DiscriminatorBf16, PlansAreCachedPerPrecision) {
  if (!HasNativeBf16()) GTEST_SKIP() << "no native bf16 on this CPU";
  std::mt19937 rng(13);
  Network net;
  net.input_shape = {3, 6, 6};
  net.layers = {Conv(8, 3, 3, 1, 1, rng), Act(ActivationKind::kRelu), FlattenLayer{}, Dense(1, 8 * 36, rng)};
  ASSERT_OK_AND_ASSIGN(auto compiled, CompiledNetwork::Create(std::move(net)));
  ASSERT_OK_AND_ASSIGN(auto f32, compiled->GetPlan(3, ComputePrecision::kF32));
  ASSERT_OK_AND_ASSIGN(auto bf16, compiled->GetPlan(3, ComputePrecision::kBF16));
  ASSERT_OK_AND_ASSIGN(auto bf16_again, compiled->GetPlan(3, ComputePrecision::kBF16));
  EXPECT_NE(f32.get(), bf16.get());
  EXPECT_EQ(bf16.get(), bf16_again.get());
  EXPECT_EQ(compiled->plans_built(), 2);
  EXPECT_EQ(compiled->CachedChunkSizes(), (std::vector<int64_t>{3}));
}

TEST(DiscriminatorBf16, UnimplementedWithoutNativeBf16) {
  std::mt19937 rng(17);
  Network net;
  net.input_shape = {4};
  net.layers = {Dense(1, 4, rng)};
  ASSERT_OK_AND_ASSIGN(auto compiled, CompiledNetwork::Create(std::move(net)));
  const absl::StatusOr<ScoreResult> r =
      Score(*compiled, NormalTensor({2, 4}, rng, 1.0), Options(Normalization::kGradientNorm, ComputePrecision::kBF16));
  if (HasNativeBf16()) {
    EXPECT_TRUE(r.ok()) << r.status();
  } else {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented) << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr("compute_precision"));
  }
}

}  // namespace
}  // namespace primserve
