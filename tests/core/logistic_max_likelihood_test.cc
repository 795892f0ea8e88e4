// The maximum-likelihood reference solver (converges to its stated gradient tolerance, checked
// against an independent double gradient; rejects separable data without l2; reports an
// iteration limit), prediction and evaluation, and the bad-input table of every entry point.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/logistic_regression.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/logistic_test_util.h"

namespace primserve {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using logistic_test::Data;
using logistic_test::Fit;
using logistic_test::GoldenBinary;
using logistic_test::Logits;
using logistic_test::MakeGaussian;
using logistic_test::MakeTensor;
using logistic_test::Softmax;

// ----- maximum likelihood -----------------------------------------------------------------------

// Gradient of the ML objective in double at a (float32) model, mapped to the solver's
// standardized parametrisation (MaxLikelihoodOptions::gradient_tolerance):
// dL/dV_kj = (g_W_kj - g_b_k m_j) / s_j, dL/db'' = g_b.
double StandardizedGradientNorm(const Data& data, const LogisticModel& model, double l2) {
  const int64_t n = data.n(), d = data.d(), k = data.num_classes;
  std::vector<double> gw(static_cast<size_t>(k * d), 0.0), gb(static_cast<size_t>(k), 0.0), x(static_cast<size_t>(d));
  std::vector<double> mean(static_cast<size_t>(d), 0.0), sq(static_cast<size_t>(d), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < d; ++j) x[static_cast<size_t>(j)] = data.x(i, j);
    const std::vector<double> p = Softmax(Logits(model, x.data()));
    const int64_t y = data.labels[static_cast<size_t>(i)];
    for (int64_t c = 0; c < k; ++c) {
      const double g = (p[static_cast<size_t>(c)] - (c == y ? 1 : 0)) / static_cast<double>(n);
      gb[static_cast<size_t>(c)] += g;
      for (int64_t j = 0; j < d; ++j) gw[static_cast<size_t>(c * d + j)] += g * x[static_cast<size_t>(j)];
    }
    for (int64_t j = 0; j < d; ++j) mean[static_cast<size_t>(j)] += x[static_cast<size_t>(j)] / static_cast<double>(n);
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) sq[static_cast<size_t>(j)] += std::pow(data.x(i, j) - mean[static_cast<size_t>(j)], 2) / static_cast<double>(n);
  double norm = 0;
  for (int64_t c = 0; c < k; ++c) {
    norm += gb[static_cast<size_t>(c)] * gb[static_cast<size_t>(c)];
    for (int64_t j = 0; j < d; ++j) {
      const double s = std::sqrt(sq[static_cast<size_t>(j)]);
      const double gwj = gw[static_cast<size_t>(c * d + j)] + l2 * model.weights[static_cast<size_t>(c * d + j)];
      const double v = (gwj - gb[static_cast<size_t>(c)] * mean[static_cast<size_t>(j)]) / s;
      norm += v * v;
    }
  }
  return std::sqrt(norm);
}

TEST(LogisticMaxLikelihood, ReachesGradientTolerance) {
  // Overlapping classes (spread 0.7): the MLE exists. Offset and uneven scales exercise the
  // internal standardization.
  Data data = MakeGaussian(3000, 5, 3, 51, 3.0, 0.7);
  for (int64_t i = 0; i < data.n(); ++i) data.features.values[static_cast<size_t>(i * 5 + 2)] *= 50.0f;
  for (double l2 : {1e-3, 0.0}) {
    SCOPED_TRACE(testing::Message() << "l2 " << l2);
    MaxLikelihoodOptions options;
    options.l2 = l2;
    options.gradient_tolerance = 1e-6;
    absl::StatusOr<MaxLikelihoodResult> result = FitMaxLikelihood(data.features, data.labels, 0, options);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_TRUE(result->converged) << result->message;
    EXPECT_LE(result->gradient_norm, 1e-6);
    EXPECT_GT(result->iterations, 0);
    EXPECT_THAT(result->message, HasSubstr("converged"));
    // Independent double gradient at the returned float32 model: within the tolerance plus the
    // float32 rounding of the weights (Hessian ~1 times 2^-24 |W|) and of the solver's own
    // float32 evaluation.
    EXPECT_LE(StandardizedGradientNorm(data, result->model, l2), 1e-6 + 2e-6);
    // The article's comparison: on such data both fits classify about equally well.
    absl::StatusOr<LogisticModel> analytic = Fit(data);
    ASSERT_TRUE(analytic.ok());
    const double ml_accuracy = Evaluate(result->model, data.features, data.labels)->accuracy;
    const double analytic_accuracy = Evaluate(*analytic, data.features, data.labels)->accuracy;
    EXPECT_NEAR(ml_accuracy, analytic_accuracy, 0.03);
    // Maximum likelihood minimises the training log-loss (l2 = 0: nothing else does better).
    if (l2 == 0) {
      EXPECT_LE(Evaluate(result->model, data.features, data.labels)->log_loss,
                Evaluate(*analytic, data.features, data.labels)->log_loss + 1e-9);
    }
  }
}

TEST(LogisticMaxLikelihood, SeparableDataWithoutL2IsRejected) {
  Data data = MakeGaussian(200, 2, 2, 61, 0.0, 0.0);
  for (int64_t i = 0; i < data.n(); ++i) data.features.values[static_cast<size_t>(i * 2)] += data.labels[static_cast<size_t>(i)] == 1 ? 10.0f : -10.0f;
  absl::StatusOr<MaxLikelihoodResult> result = FitMaxLikelihood(data.features, data.labels, 2, MaxLikelihoodOptions{});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(result.status().message()), AllOf(HasSubstr("separable"), HasSubstr("l2 > 0")));
  MaxLikelihoodOptions options;
  options.l2 = 1e-2;
  result = FitMaxLikelihood(data.features, data.labels, 2, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->converged) << result->message;
  EXPECT_EQ(Evaluate(result->model, data.features, data.labels)->accuracy, 1.0);
}

TEST(LogisticMaxLikelihood, IterationLimitReportsNonConvergence) {
  const Data data = MakeGaussian(500, 4, 3, 71, 1.0, 0.7);
  MaxLikelihoodOptions options;
  options.l2 = 1e-3;
  options.max_iterations = 2;
  options.gradient_tolerance = 1e-9;
  absl::StatusOr<MaxLikelihoodResult> result = FitMaxLikelihood(data.features, data.labels, 0, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FALSE(result->converged);
  EXPECT_EQ(result->iterations, 2);
  EXPECT_GT(result->gradient_norm, 1e-9);
  EXPECT_THAT(result->message, HasSubstr("max_iterations (2)"));
}

TEST(LogisticMaxLikelihood, CancellationIsPolledBetweenIterations) {
  const Data data = MakeGaussian(500, 4, 3, 71, 1.0, 0.7);
  MaxLikelihoodOptions options;
  options.l2 = 1e-3;
  options.max_iterations = 1 << 30;  // Without the poll, effectively endless at this tolerance.
  options.gradient_tolerance = 1e-300;
  int polls = 0;
  options.cancelled = [&polls] { return ++polls > 3; };
  absl::StatusOr<MaxLikelihoodResult> result = FitMaxLikelihood(data.features, data.labels, 0, options);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("cancelled after 3 L-BFGS iteration(s)"));
  EXPECT_EQ(polls, 4);
}

// ----- prediction and evaluation ----------------------------------------------------------------

TEST(LogisticPredict, StableSoftmaxAndEvaluate) {
  LogisticModel model;
  model.num_classes = 3;
  model.dim = 2;
  model.weights = {1e4f, 0, 0, 1e4f, -1e4f, -1e4f};  // logits up to ~1e6: exp would overflow unshifted
  model.bias = {0, 0, 5};
  const Tensor x = MakeTensor(4, 2, {100, 0, 0, 100, -100, -100, 0, 0});
  absl::StatusOr<Prediction> p = Predict(model, x);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->probabilities.shape, (Shape{4, 3}));
  EXPECT_EQ(p->labels, (std::vector<int64_t>{0, 1, 2, 2}));
  for (int64_t i = 0; i < 4; ++i) {
    double sum = 0;
    for (int64_t c = 0; c < 3; ++c) {
      const float v = p->probabilities.values[static_cast<size_t>(i * 3 + c)];
      ASSERT_TRUE(std::isfinite(v));
      sum += v;
    }
    EXPECT_NEAR(sum, 1.0, 1e-6);  // float32 rounding of K terms
  }
  // Evaluate against a hand computation on the golden model.
  const Data data = GoldenBinary();
  absl::StatusOr<LogisticModel> golden = Fit(data);
  ASSERT_TRUE(golden.ok());
  absl::StatusOr<FitQuality> quality = Evaluate(*golden, data.features, data.labels);
  ASSERT_TRUE(quality.ok()) << quality.status();
  double loss = 0;
  int correct = 0;
  for (int64_t i = 0; i < 6; ++i) {
    const double xi[2] = {data.x(i, 0), data.x(i, 1)};
    const std::vector<double> prob = Softmax(Logits(*golden, xi));
    const int64_t y = data.labels[static_cast<size_t>(i)];
    loss -= std::log(prob[static_cast<size_t>(y)]);
    correct += (prob[1] > prob[0]) == (y == 1);
  }
  EXPECT_EQ(quality->samples, 6);
  EXPECT_DOUBLE_EQ(quality->accuracy, correct / 6.0);
  EXPECT_NEAR(quality->log_loss, loss / 6, 1e-6);  // float32 logits
  // Many rows (several blocks, a short tail) agree with the double evaluation.
  const Data big = MakeGaussian(1000, 3, 4, 81);
  absl::StatusOr<LogisticModel> m = Fit(big);
  ASSERT_TRUE(m.ok());
  absl::StatusOr<Prediction> bp = Predict(*m, big.features);
  ASSERT_TRUE(bp.ok());
  for (int64_t i = 0; i < big.n(); i += 37) {
    const double xi[3] = {big.x(i, 0), big.x(i, 1), big.x(i, 2)};
    const std::vector<double> want = Softmax(Logits(*m, xi));
    for (int64_t c = 0; c < 4; ++c) ASSERT_NEAR(bp->probabilities.values[static_cast<size_t>(i * 4 + c)], want[static_cast<size_t>(c)], 1e-5);
  }
  // M = 0: empty results.
  absl::StatusOr<Prediction> empty = Predict(*m, MakeTensor(0, 3, {}));
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->labels.empty());
}

// ----- bad inputs -------------------------------------------------------------------------------

TEST(LogisticBadInputs, Table) {
  const Data good = MakeGaussian(20, 3, 2, 91);
  const float nan = std::nanf("");
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    const char* name;
    Tensor features;
    std::vector<int64_t> labels;
    int64_t num_classes;
    const char* message;
  };
  auto with_value = [&](size_t index, float v) {
    Tensor t = good.features;
    t.values[index] = v;
    return t;
  };
  std::vector<int64_t> out_of_range = good.labels;
  out_of_range[3] = 2;
  std::vector<int64_t> negative = good.labels;
  negative[1] = -1;
  const std::vector<int64_t> single(20, 0);
  const std::vector<Case> cases = {
      {"NaN feature", with_value(7, nan), good.labels, 0, "features[7]"},
      {"+Inf feature", with_value(8, inf), good.labels, 0, "features[8]"},
      {"-Inf feature", with_value(9, -inf), good.labels, 0, "features[9]"},
      {"label out of range", good.features, out_of_range, 2, "labels[3]: expected a class in [0, 2), got 2"},
      {"negative label", good.features, negative, 0, "labels[1]"},
      {"labels size", good.features, std::vector<int64_t>(19, 0), 0, "labels: expected one label per sample (20"},
      {"rank 1", [&] { Tensor t = good.features; t.shape = {60}; return t; }(), good.labels, 0,
       "features.shape: expected rank 2"},
      {"rank 3", [&] { Tensor t = good.features; t.shape = {20, 3, 1}; return t; }(), good.labels, 0,
       "features.shape: expected rank 2"},
      {"d = 0", MakeTensor(20, 0, {}), good.labels, 0, "features.shape: expected dim >= 1"},
      {"value count", MakeTensor(20, 4, good.features.values), good.labels, 0, "features: shape [20, 4] needs 80"},
      {"negative num_classes", good.features, good.labels, -1, "num_classes"},
      {"single class", good.features, single, 0, "num_classes: expected at least 2 classes, got 1"},
      {"class without samples", good.features, good.labels, 3, "labels: class 2 has no samples"},
      {"N < K", MakeTensor(2, 3, {1, 2, 3, 4, 5, 6}), {0, 1}, 3, "labels: expected at least num_classes = 3 samples, got N = 2"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<SufficientStatistics> stats = ComputeStatistics(c.features, c.labels, c.num_classes);
    absl::Status analytic = stats.status();
    if (stats.ok()) analytic = FitAnalytic(*stats, AnalyticFitOptions{}).status();
    EXPECT_EQ(analytic.code(), absl::StatusCode::kInvalidArgument) << analytic;
    EXPECT_THAT(std::string(analytic.message()), HasSubstr(c.message));
    const absl::Status ml = FitMaxLikelihood(c.features, c.labels, c.num_classes, MaxLikelihoodOptions{}).status();
    EXPECT_EQ(ml.code(), absl::StatusCode::kInvalidArgument) << ml;
    EXPECT_THAT(std::string(ml.message()), HasSubstr(c.message));
  }

  // Options.
  absl::StatusOr<SufficientStatistics> stats = ComputeStatistics(good.features, good.labels, 0);
  ASSERT_TRUE(stats.ok());
  for (double ridge : {-1.0, double{nan}, double{inf}}) {
    AnalyticFitOptions options;
    options.ridge = ridge;
    const absl::Status status = FitAnalytic(*stats, options).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()), HasSubstr("ridge"));
  }
  struct OptionCase {
    MaxLikelihoodOptions options;
    const char* field;
  };
  std::vector<OptionCase> option_cases(4);
  option_cases[0].options.l2 = -1;
  option_cases[0].field = "l2";
  option_cases[1].options.l2 = nan;
  option_cases[1].field = "l2";
  option_cases[2].options.max_iterations = -1;
  option_cases[2].field = "max_iterations";
  option_cases[3].options.gradient_tolerance = -1;
  option_cases[3].field = "gradient_tolerance";
  for (const OptionCase& c : option_cases) {
    SCOPED_TRACE(c.field);
    const absl::Status status = FitMaxLikelihood(good.features, good.labels, 0, c.options).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.field));
  }

  // Streams and statistics.
  SufficientStatistics stream;
  ASSERT_TRUE(AccumulateStatistics(good.features, good.labels, 0, &stream).ok());
  absl::Status status = AccumulateStatistics(MakeTensor(1, 4, {1, 2, 3, 4}), {0}, 0, &stream);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("features.shape: expected [num_samples, 3]"));
  SufficientStatistics other = *ComputeStatistics(MakeTensor(2, 2, {1, 2, 3, 4}), {0, 1}, 0);
  status = stream.Merge(other);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("statistics.dim"));
  SufficientStatistics broken = *stats;
  broken.counts[0] = -1;
  EXPECT_THAT(std::string(ValidateStatistics(broken).message()), HasSubstr("statistics.counts[0]"));
  broken = *stats;
  broken.scatter.pop_back();
  EXPECT_THAT(std::string(ValidateStatistics(broken).message()), HasSubstr("statistics.scatter"));
  broken = *stats;
  broken.class_sums[0] = nan;
  EXPECT_EQ(FitAnalytic(broken, AnalyticFitOptions{}).status().code(), absl::StatusCode::kInvalidArgument);

  // Predict.
  absl::StatusOr<LogisticModel> model = FitAnalytic(*stats, AnalyticFitOptions{});
  ASSERT_TRUE(model.ok());
  status = Predict(*model, MakeTensor(1, 4, {1, 2, 3, 4})).status();
  EXPECT_THAT(std::string(status.message()), HasSubstr("features.shape: expected [num_samples, 3]"));
  status = Predict(*model, MakeTensor(1, 3, {1, nan, 3})).status();
  EXPECT_THAT(std::string(status.message()), HasSubstr("features[1]"));
  LogisticModel bad = *model;
  bad.weights.pop_back();
  EXPECT_THAT(std::string(Predict(bad, good.features).status().message()), HasSubstr("model.weights"));
  bad = *model;
  bad.bias[1] = inf;
  EXPECT_THAT(std::string(Predict(bad, good.features).status().message()), HasSubstr("model.bias[1]"));
  bad = *model;
  bad.num_classes = 1;
  EXPECT_THAT(std::string(Predict(bad, good.features).status().message()), HasSubstr("model.num_classes"));
  // Finite but huge: float32 overflow of the logits / the scatter is a precise error, not NaN.
  status = Predict(*model, MakeTensor(1, 3, {3e38f, -3e38f, 3e38f})).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("features: row 0 gives a non-finite logit"));
  Tensor huge = good.features;
  for (size_t i = 0; i < huge.values.size(); i += 3) huge.values[i] *= 1e30f;
  status = ComputeStatistics(huge, good.labels, 0).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("features: values too large"));
  SufficientStatistics enormous;
  enormous.dim = int64_t{1} << 40;
  EXPECT_EQ(ValidateStatistics(enormous).code(), absl::StatusCode::kResourceExhausted);
  status = Evaluate(*model, good.features, out_of_range).status();
  EXPECT_THAT(std::string(status.message()), HasSubstr("labels[3]"));
}

}  // namespace
}  // namespace primserve
