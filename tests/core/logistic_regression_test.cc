// Analytic logistic regression (MATH.md section 5): the golden values, an independent double
// computation of the formula, affine equivariance, streaming and shard merging, singular
// covariances. (The maximum-likelihood solver, prediction and the bad-input table are in
// logistic_max_likelihood_test.cc.)
#include "core/logistic_regression.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/logistic_test_util.h"

namespace primserve {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

using logistic_test::Data;
using logistic_test::Fit;
using logistic_test::GoldenBinary;
using logistic_test::Logits;
using logistic_test::LogitScale;
using logistic_test::MakeGaussian;
using logistic_test::MakeTensor;
using logistic_test::Slice;

// ----- independent double-precision reference of the formula --------------------------------

// Solves A X = B (A n x n, B n x m, row-major) by Gaussian elimination with partial pivoting:
// deliberately not Cholesky, not Eigen, so it shares nothing with the code under test.
std::vector<double> Solve(std::vector<double> a, std::vector<double> b, int64_t n, int64_t m) {
  for (int64_t col = 0; col < n; ++col) {
    int64_t pivot = col;
    for (int64_t r = col + 1; r < n; ++r)
      if (std::abs(a[static_cast<size_t>(r * n + col)]) > std::abs(a[static_cast<size_t>(pivot * n + col)])) pivot = r;
    for (int64_t j = 0; j < n; ++j) std::swap(a[static_cast<size_t>(col * n + j)], a[static_cast<size_t>(pivot * n + j)]);
    for (int64_t j = 0; j < m; ++j) std::swap(b[static_cast<size_t>(col * m + j)], b[static_cast<size_t>(pivot * m + j)]);
    for (int64_t r = col + 1; r < n; ++r) {
      const double f = a[static_cast<size_t>(r * n + col)] / a[static_cast<size_t>(col * n + col)];
      for (int64_t j = col; j < n; ++j) a[static_cast<size_t>(r * n + j)] -= f * a[static_cast<size_t>(col * n + j)];
      for (int64_t j = 0; j < m; ++j) b[static_cast<size_t>(r * m + j)] -= f * b[static_cast<size_t>(col * m + j)];
    }
  }
  for (int64_t r = n - 1; r >= 0; --r) {
    for (int64_t j = 0; j < m; ++j) {
      double v = b[static_cast<size_t>(r * m + j)];
      for (int64_t c = r + 1; c < n; ++c) v -= a[static_cast<size_t>(r * n + c)] * b[static_cast<size_t>(c * m + j)];
      b[static_cast<size_t>(r * m + j)] = v / a[static_cast<size_t>(r * n + r)];
    }
  }
  return b;
}

struct Reference {
  std::vector<double> sigma;  // d x d
  std::vector<double> w, b;   // literal formula: w_c = mu_c Sigma^-1, b_c = ln p_c - 1/2 mu_c Sigma^-1 mu_c^T
};

// Two-pass double computation straight from MATH.md section 5.
Reference ReferenceFit(const Data& data, Covariance covariance, double ridge = 0.0) {
  const int64_t n = data.n(), d = data.d(), k = data.num_classes;
  std::vector<double> mean(static_cast<size_t>(k * d), 0.0), all(static_cast<size_t>(d), 0.0);
  std::vector<double> count(static_cast<size_t>(k), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = data.labels[static_cast<size_t>(i)];
    count[static_cast<size_t>(c)] += 1;
    for (int64_t j = 0; j < d; ++j) {
      mean[static_cast<size_t>(c * d + j)] += data.x(i, j);
      all[static_cast<size_t>(j)] += data.x(i, j);
    }
  }
  for (int64_t c = 0; c < k; ++c)
    for (int64_t j = 0; j < d; ++j) mean[static_cast<size_t>(c * d + j)] /= count[static_cast<size_t>(c)];
  for (double& v : all) v /= static_cast<double>(n);
  Reference ref;
  ref.sigma.assign(static_cast<size_t>(d * d), 0.0);
  std::vector<double> dev(static_cast<size_t>(d));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = data.labels[static_cast<size_t>(i)];
    for (int64_t j = 0; j < d; ++j) {
      const double centre = covariance == Covariance::kTotal ? all[static_cast<size_t>(j)] : mean[static_cast<size_t>(c * d + j)];
      dev[static_cast<size_t>(j)] = data.x(i, j) - centre;
    }
    for (int64_t a = 0; a < d; ++a)
      for (int64_t b = 0; b < d; ++b) ref.sigma[static_cast<size_t>(a * d + b)] += dev[static_cast<size_t>(a)] * dev[static_cast<size_t>(b)];
  }
  for (double& v : ref.sigma) v /= static_cast<double>(n);
  std::vector<double> a = ref.sigma;
  for (int64_t j = 0; j < d; ++j) a[static_cast<size_t>(j * d + j)] += ridge;
  // Sigma W^T = M^T (Sigma symmetric): columns of the solution are w_c^T.
  std::vector<double> rhs(static_cast<size_t>(d * k));
  for (int64_t c = 0; c < k; ++c)
    for (int64_t j = 0; j < d; ++j) rhs[static_cast<size_t>(j * k + c)] = mean[static_cast<size_t>(c * d + j)];
  const std::vector<double> sol = Solve(a, rhs, d, k);
  ref.w.resize(static_cast<size_t>(k * d));
  ref.b.resize(static_cast<size_t>(k));
  for (int64_t c = 0; c < k; ++c) {
    double quad = 0;
    for (int64_t j = 0; j < d; ++j) {
      ref.w[static_cast<size_t>(c * d + j)] = sol[static_cast<size_t>(j * k + c)];
      quad += mean[static_cast<size_t>(c * d + j)] * sol[static_cast<size_t>(j * k + c)];
    }
    ref.b[static_cast<size_t>(c)] = std::log(count[static_cast<size_t>(c)] / static_cast<double>(n)) - 0.5 * quad;
  }
  return ref;
}

// ----- MATH.md goldens --------------------------------------------------------------------------

TEST(LogisticGolden, BinaryPooledMatchesMath) {
  const Data data = GoldenBinary();
  absl::StatusOr<SufficientStatistics> stats = ComputeStatistics(data.features, data.labels, 0);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->num_classes, 2);
  EXPECT_EQ(stats->counts, (std::vector<int64_t>{3, 3}));
  absl::StatusOr<std::vector<double>> sigma = ComputeCovariance(*stats, Covariance::kPooledWithin);
  ASSERT_TRUE(sigma.ok()) << sigma.status();
  // MATH.md prints Sigma to 6 decimals (0.527778 = 19/36, -0.069444 = -5/72, 0.555556 = 5/9):
  // compare with the exact fractions. Tolerance 1e-7: the centred values x - a_c enter the
  // matmul rounded to float32 (2^-24 ~ 6e-8 relative each).
  EXPECT_NEAR((*sigma)[0], 19.0 / 36, 1e-7);
  EXPECT_NEAR((*sigma)[1], -5.0 / 72, 1e-7);
  EXPECT_NEAR((*sigma)[2], -5.0 / 72, 1e-7);
  EXPECT_NEAR((*sigma)[3], 5.0 / 9, 1e-7);

  absl::StatusOr<LogisticModel> model = FitAnalytic(*stats, AnalyticFitOptions{});
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ(model->num_classes, 2);  // K rows also for K = 2.
  ASSERT_EQ(model->weights.size(), 4u);
  EXPECT_DOUBLE_EQ(model->priors[0], 0.5);
  // The binary form is the difference of the two softmax rows. Tolerance: the model is stored
  // in float32 (|v| * 2^-24 ~ 5e-7 per entry at |v| ~ 8), a difference of two entries.
  const double tol = 2e-6;
  EXPECT_NEAR(model->weights[2] - model->weights[0], 2.8093645485, tol);
  EXPECT_NEAR(model->weights[3] - model->weights[1], 2.1511705686, tol);
  EXPECT_NEAR(double{model->bias[1]} - model->bias[0], -8.2675585284, tol);
  const double point[2] = {2, 2};
  const std::vector<double> logits = Logits(*model, point);
  EXPECT_NEAR(logits[1] - logits[0], 1.6535117057, 4 * tol);

  absl::StatusOr<Prediction> prediction = Predict(*model, MakeTensor(1, 2, {2, 2}));
  ASSERT_TRUE(prediction.ok()) << prediction.status();
  // float32 softmax of float32 logits: ~1e-7 relative.
  EXPECT_NEAR(prediction->probabilities.values[1], 0.8393651028, 1e-6);
  EXPECT_NEAR(prediction->probabilities.values[0], 1 - 0.8393651028, 1e-6);
  EXPECT_EQ(prediction->labels, (std::vector<int64_t>{1}));
}

TEST(LogisticGolden, TotalCovarianceWithIdentitySigma) {
  // Statistics realising MATH.md's TOTAL check: N = 4 with p_1 = 0.25, mu_0 = 0, mu_1 = [1, 2],
  // total covariance I. About shifts a_c = 0: T_0 = 0, T_1 = [1, 2], and
  // scatter = sum x^T x = N (Sigma_total + mu^T mu) with mu = [0.25, 0.5].
  SufficientStatistics stats;
  stats.num_classes = 2;
  stats.dim = 2;
  stats.counts = {3, 1};
  stats.class_shifts = {0, 0, 0, 0};
  stats.class_sums = {0, 0, 1, 2};
  stats.scatter = {4 * (1 + 0.0625), 4 * 0.125, 4 * 0.125, 4 * (1 + 0.25)};
  absl::StatusOr<std::vector<double>> sigma = ComputeCovariance(stats, Covariance::kTotal);
  ASSERT_TRUE(sigma.ok()) << sigma.status();
  EXPECT_NEAR((*sigma)[0], 1, 1e-12);
  EXPECT_NEAR((*sigma)[1], 0, 1e-12);
  EXPECT_NEAR((*sigma)[3], 1, 1e-12);
  AnalyticFitOptions options;
  options.covariance = Covariance::kTotal;
  absl::StatusOr<LogisticModel> model = FitAnalytic(stats, options);
  ASSERT_TRUE(model.ok()) << model.status();
  const double tol = 1e-6;  // float32 storage of entries of size <= 4
  EXPECT_NEAR(model->weights[2] - model->weights[0], 1.0, tol);
  EXPECT_NEAR(model->weights[3] - model->weights[1], 2.0, tol);
  EXPECT_NEAR(double{model->bias[1]} - model->bias[0], -3.5986122887, tol);
}

// ----- independent reference on random data ---------------------------------------------------

struct ShapeCase {
  int64_t k, d;
};

class LogisticReferenceTest : public ::testing::TestWithParam<ShapeCase> {};

TEST_P(LogisticReferenceTest, MatchesIndependentDoubleComputation) {
  const ShapeCase shape = GetParam();
  const int64_t n = 300 + 20 * shape.d;
  for (Covariance covariance : {Covariance::kPooledWithin, Covariance::kTotal}) {
    SCOPED_TRACE(testing::Message() << "K " << shape.k << " d " << shape.d << " covariance "
                                    << (covariance == Covariance::kTotal ? "TOTAL" : "POOLED"));
    // An offset of 4 makes raw second moments ~20x the covariance: a fit without centring
    // would lose about four more bits.
    const Data data = MakeGaussian(n, shape.d, shape.k, 7 + static_cast<unsigned>(shape.k * 100 + shape.d), 4.0);
    const Reference ref = ReferenceFit(data, covariance);
    absl::StatusOr<SufficientStatistics> stats = ComputeStatistics(data.features, data.labels, 0);
    ASSERT_TRUE(stats.ok()) << stats.status();
    absl::StatusOr<std::vector<double>> sigma = ComputeCovariance(*stats, covariance);
    ASSERT_TRUE(sigma.ok());
    // Sigma: float32 products of centred rows, summed in blocks of 256 (~sqrt(256) * 2^-24 ~ 1e-6
    // relative, bound 256 * 2^-24 = 1.5e-5). A 1/(N-1) normalisation would be off by 1/N > 2e-4.
    double max_sigma = 0;
    for (double v : ref.sigma) max_sigma = std::max(max_sigma, std::abs(v));
    for (size_t i = 0; i < ref.sigma.size(); ++i) ASSERT_NEAR((*sigma)[i], ref.sigma[i], 1e-5 * max_sigma) << i;

    AnalyticFitOptions options;
    options.covariance = covariance;
    absl::StatusOr<LogisticModel> model = FitAnalytic(*stats, options);
    ASSERT_TRUE(model.ok()) << model.status();
    ASSERT_EQ(model->num_classes, shape.k);
    // Logit differences (the invariant part) at held-out points, in double from the float32
    // model. Tolerance 2e-5 of the terms summed: float32 weights (2^-24 each) plus Sigma's
    // ~1e-6 relative error amplified by cond(Sigma) < ~30.
    const Data test = MakeGaussian(50, shape.d, shape.k, 99, 4.0);
    std::vector<double> x(static_cast<size_t>(shape.d));
    for (int64_t i = 0; i < test.n(); ++i) {
      for (int64_t j = 0; j < shape.d; ++j) x[static_cast<size_t>(j)] = test.x(i, j);
      const std::vector<double> got = Logits(*model, x.data());
      const double scale = LogitScale(*model, x.data());
      std::vector<double> want(static_cast<size_t>(shape.k));
      for (int64_t c = 0; c < shape.k; ++c) {
        double v = ref.b[static_cast<size_t>(c)];
        for (int64_t j = 0; j < shape.d; ++j) v += ref.w[static_cast<size_t>(c * shape.d + j)] * x[static_cast<size_t>(j)];
        want[static_cast<size_t>(c)] = v;
      }
      for (int64_t c = 1; c < shape.k; ++c) {
        ASSERT_NEAR(got[static_cast<size_t>(c)] - got[0], want[static_cast<size_t>(c)] - want[0], 2e-5 * scale)
            << "sample " << i << " class " << c;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, LogisticReferenceTest,
                         ::testing::Values(ShapeCase{2, 1}, ShapeCase{2, 7}, ShapeCase{2, 64}, ShapeCase{3, 1},
                                           ShapeCase{3, 7}, ShapeCase{3, 64}, ShapeCase{10, 1}, ShapeCase{10, 7},
                                           ShapeCase{10, 64}),
                         [](const ::testing::TestParamInfo<ShapeCase>& info) {
                           return "K" + std::to_string(info.param.k) + "_d" + std::to_string(info.param.d);
                         });

TEST(LogisticBinary, BinaryFormAgreesWithSoftmaxRows) {
  // MATH.md binary form: w = (mu_1 - mu_0) Sigma^-1, b = 1/2 (mu_0 S mu_0 - mu_1 S mu_1) + ln(p_1/p_0),
  // computed independently; the softmax model's logit difference must equal it.
  const Data data = MakeGaussian(400, 5, 2, 3, 1.0);
  const Reference ref = ReferenceFit(data, Covariance::kPooledWithin);
  absl::StatusOr<LogisticModel> model = Fit(data);
  ASSERT_TRUE(model.ok()) << model.status();
  for (int64_t j = 0; j < 5; ++j) {
    const double binary_w = ref.w[static_cast<size_t>(5 + j)] - ref.w[static_cast<size_t>(j)];
    // float32 weights (~1e-7) + Sigma's ~1e-6 relative error times cond < 30.
    EXPECT_NEAR(double{model->weights[static_cast<size_t>(5 + j)]} - model->weights[static_cast<size_t>(j)], binary_w,
                5e-5 * (1 + std::abs(binary_w)));
  }
  // And the binary probability is the sigmoid of that difference (softmax of two = sigmoid).
  absl::StatusOr<Prediction> prediction = Predict(*model, data.features);
  ASSERT_TRUE(prediction.ok());
  for (int64_t i = 0; i < 20; ++i) {
    const double x[5] = {data.x(i, 0), data.x(i, 1), data.x(i, 2), data.x(i, 3), data.x(i, 4)};
    const std::vector<double> l = Logits(*model, x);
    EXPECT_NEAR(prediction->probabilities.values[static_cast<size_t>(2 * i + 1)], 1 / (1 + std::exp(l[0] - l[1])), 1e-5);
  }
}

// ----- properties --------------------------------------------------------------------------------

std::vector<float> ProbabilitiesOf(const LogisticModel& model, const Tensor& features) {
  absl::StatusOr<Prediction> p = Predict(model, features);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? p->probabilities.values : std::vector<float>{};
}

void ExpectClose(const std::vector<float>& a, const std::vector<float>& b, double tol, const char* why) {
  ASSERT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double{a[i]} - b[i]));
  EXPECT_LE(worst, tol) << why;
}

TEST(LogisticProperties, AffineEquivariance) {
  const int64_t d = 7, k = 3;
  const Data data = MakeGaussian(800, d, k, 11);
  const Data test = MakeGaussian(200, d, k, 12);
  std::mt19937 rng(5);
  std::normal_distribution<double> normal;
  // x' = x A^T + c with A = 2 I + noise (well conditioned), and a second map that rescales
  // features by 1e3 and 1e-3 (unit changes must not matter, also not to the condition check).
  std::vector<double> a(static_cast<size_t>(d * d)), shift(static_cast<size_t>(d));
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j) a[static_cast<size_t>(i * d + j)] = (i == j ? 2.0 : 0.0) + 0.4 * normal(rng);
  for (double& v : shift) v = 5 * normal(rng);
  // The unit change scales the offset with its feature: an offset of 5 on a feature of spread
  // 1e-3 would leave only ~13 bits of it in float32 and test the data, not the fit.
  std::vector<double> units(static_cast<size_t>(d * d), 0.0), unit_shift(static_cast<size_t>(d));
  for (int64_t i = 0; i < d; ++i) {
    units[static_cast<size_t>(i * d + i)] = i % 2 == 0 ? 1e3 : 1e-3;
    unit_shift[static_cast<size_t>(i)] = units[static_cast<size_t>(i * d + i)] * shift[static_cast<size_t>(i)];
  }
  auto transform = [&](const Tensor& x, const std::vector<double>& m, const std::vector<double>& c) {
    Tensor out = Tensor::Zeros(x.shape);
    for (int64_t r = 0; r < x.dim(0); ++r)
      for (int64_t i = 0; i < d; ++i) {
        double v = c[static_cast<size_t>(i)];
        for (int64_t j = 0; j < d; ++j) v += m[static_cast<size_t>(i * d + j)] * x.values[static_cast<size_t>(r * d + j)];
        out.values[static_cast<size_t>(r * d + i)] = static_cast<float>(v);
      }
    return out;
  };
  for (Covariance covariance : {Covariance::kPooledWithin, Covariance::kTotal}) {
    absl::StatusOr<LogisticModel> base = Fit(data, covariance);
    ASSERT_TRUE(base.ok()) << base.status();
    const std::vector<float> want = ProbabilitiesOf(*base, test.features);
    for (const std::vector<double>* m : {&a, &units}) {
      SCOPED_TRACE(m == &a ? "general A" : "unit change");
      Data moved = data;
      const std::vector<double>& c = m == &a ? shift : unit_shift;
      moved.features = transform(data.features, *m, c);
      absl::StatusOr<LogisticModel> fitted = Fit(moved, covariance);
      ASSERT_TRUE(fitted.ok()) << fitted.status();
      ExpectClose(ProbabilitiesOf(*fitted, transform(test.features, *m, c)), want, 1e-4,
                  "float32 data rounding after the map plus float32 statistics, times cond(A) ~ 10");
    }
  }
}

TEST(LogisticStreaming, AnyChunkingEqualsOnePass) {
  // Sorted labels: the first chunks hold only class 0, so the inferred K grows while streaming.
  Data data = MakeGaussian(1000, 6, 4, 21, 3.0);
  std::vector<int64_t> order(static_cast<size_t>(data.n()));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return data.labels[static_cast<size_t>(a)] < data.labels[static_cast<size_t>(b)];
  });
  Data sorted = data;
  for (size_t r = 0; r < order.size(); ++r) {
    sorted.labels[r] = data.labels[static_cast<size_t>(order[r])];
    std::copy_n(data.features.values.begin() + order[r] * 6, 6, sorted.features.values.begin() + static_cast<int64_t>(r) * 6);
  }
  absl::StatusOr<SufficientStatistics> whole = ComputeStatistics(sorted.features, sorted.labels, 0);
  ASSERT_TRUE(whole.ok());
  absl::StatusOr<LogisticModel> whole_model = FitAnalytic(*whole, AnalyticFitOptions{});
  ASSERT_TRUE(whole_model.ok());
  const std::vector<float> want = ProbabilitiesOf(*whole_model, data.features);
  const std::vector<double> want_sigma = *ComputeCovariance(*whole, Covariance::kTotal);
  for (int64_t chunk : {1, 13, 255, 256, 257, 999, 1000}) {
    SCOPED_TRACE(testing::Message() << "chunk " << chunk);
    SufficientStatistics stats;
    for (int64_t begin = 0; begin < sorted.n(); begin += chunk) {
      const Data part = Slice(sorted, begin, std::min(sorted.n(), begin + chunk));
      ASSERT_TRUE(AccumulateStatistics(part.features, part.labels, 0, &stats).ok());
    }
    // An empty chunk is harmless.
    ASSERT_TRUE(AccumulateStatistics(MakeTensor(0, 6, {}), {}, 0, &stats).ok());
    EXPECT_EQ(stats.counts, whole->counts);  // counts are exact
    const std::vector<double> sigma = *ComputeCovariance(stats, Covariance::kTotal);
    for (size_t i = 0; i < sigma.size(); ++i) {
      // Different float32 block groupings: ~1e-6 relative to the entries of Sigma (~1..10).
      ASSERT_NEAR(sigma[i], want_sigma[i], 1e-5 * (1 + std::abs(want_sigma[i]))) << i;
    }
    absl::StatusOr<LogisticModel> model = FitAnalytic(stats, AnalyticFitOptions{});
    ASSERT_TRUE(model.ok()) << model.status();
    ExpectClose(ProbabilitiesOf(*model, data.features), want, 2e-5, "statistics equal to ~1e-6 relative");
  }
}

TEST(LogisticStreaming, MergedShardsEqualTheWhole) {
  const Data data = MakeGaussian(3000, 9, 5, 31, -2.0);
  absl::StatusOr<SufficientStatistics> whole = ComputeStatistics(data.features, data.labels, 0);
  ASSERT_TRUE(whole.ok());
  // Three uneven shards with their own inferred K (the last shard holds only classes 0..1, as a
  // shard without the top labels would) merged in a different order.
  Data last = Slice(data, 2500, 3000);
  std::vector<int64_t> keep;
  Data shard3;
  shard3.num_classes = 2;
  std::vector<float> values;
  for (int64_t i = 0; i < last.n(); ++i) {
    if (last.labels[static_cast<size_t>(i)] >= 2) continue;
    keep.push_back(last.labels[static_cast<size_t>(i)]);
    values.insert(values.end(), last.features.values.begin() + i * 9, last.features.values.begin() + (i + 1) * 9);
  }
  shard3.labels = keep;
  shard3.features = MakeTensor(static_cast<int64_t>(keep.size()), 9, values);
  const Data shard1 = Slice(data, 0, 700), shard2 = Slice(data, 700, 2500);
  // The whole here is shards 1-3 concatenated.
  Data all = shard1;
  all.labels.insert(all.labels.end(), shard2.labels.begin(), shard2.labels.end());
  all.labels.insert(all.labels.end(), shard3.labels.begin(), shard3.labels.end());
  all.features.values.insert(all.features.values.end(), shard2.features.values.begin(), shard2.features.values.end());
  all.features.values.insert(all.features.values.end(), shard3.features.values.begin(), shard3.features.values.end());
  all.features.shape = {static_cast<int64_t>(all.labels.size()), 9};
  whole = ComputeStatistics(all.features, all.labels, 0);
  ASSERT_TRUE(whole.ok());

  SufficientStatistics merged;
  for (const Data* shard : std::vector<const Data*>{&shard3, &shard1, &shard2}) {
    absl::StatusOr<SufficientStatistics> s = ComputeStatistics(shard->features, shard->labels, 0);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(merged.Merge(*s).ok());
  }
  EXPECT_EQ(merged.num_classes, 5);
  EXPECT_EQ(merged.counts, whole->counts);
  for (Covariance covariance : {Covariance::kPooledWithin, Covariance::kTotal}) {
    const std::vector<double> a = *ComputeCovariance(merged, covariance), b = *ComputeCovariance(*whole, covariance);
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5 * (1 + std::abs(b[i]))) << i;
    AnalyticFitOptions options;
    options.covariance = covariance;
    ExpectClose(ProbabilitiesOf(*FitAnalytic(merged, options), data.features),
                ProbabilitiesOf(*FitAnalytic(*whole, options), data.features), 2e-5,
                "statistics equal to ~1e-6 relative");
  }
  // Merging into the empty statistic copies; merging an empty one changes nothing.
  SufficientStatistics copy;
  ASSERT_TRUE(copy.Merge(*whole).ok());
  ASSERT_TRUE(copy.Merge(SufficientStatistics{}).ok());
  EXPECT_EQ(copy.scatter, whole->scatter);
}

// Regression: counts near INT64_MAX once overflowed (undefined behaviour) when shards were
// merged, and the server answered with a wrapped negative count.
TEST(LogisticStreaming, SampleCountsBeyondTwoToThe53AreRefusedBeforeTheyOverflow) {
  SufficientStatistics s;
  s.num_classes = 2;
  s.dim = 1;
  s.counts = {int64_t{1} << 52, int64_t{1} << 52};
  s.class_shifts = {0, 0};
  s.class_sums = {0, 0};
  s.scatter = {1};
  ASSERT_TRUE(ValidateStatistics(s).ok());
  SufficientStatistics merged = s;
  const absl::Status sum = merged.Merge(s);
  EXPECT_EQ(sum.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(sum.message()), ::testing::HasSubstr("exceeds 2^53 samples"));
  SufficientStatistics huge = s;
  huge.counts = {1, std::numeric_limits<int64_t>::max()};
  const absl::Status invalid = ValidateStatistics(huge);
  EXPECT_EQ(invalid.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(invalid.message()), ::testing::HasSubstr("counts[1]"));
}

// An inferred K (largest label + 1) that is too large names the label; INT64_MAX is not
// incremented (no signed overflow for UBSan to find). N = 0 says so, not "a single class".
TEST(LogisticBadInput, AHugeLabelIsNamedAndNoSamplesIsSaidPlainly) {
  const Tensor x = MakeTensor(3, 2, {1, 2, 3, 4, 5, 6});
  for (int64_t huge : {int64_t{1} << 40, std::numeric_limits<int64_t>::max()}) {
    SCOPED_TRACE(huge);
    const std::vector<int64_t> labels = {0, 1, huge};
    const absl::Status status = ComputeStatistics(x, labels, 0).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
    EXPECT_THAT(std::string(status.message()), AllOf(HasSubstr("labels[2]: class "), HasSubstr("inferred")));
  }
  absl::StatusOr<SufficientStatistics> none = ComputeStatistics(MakeTensor(0, 2, {}), {}, 0);
  ASSERT_TRUE(none.ok()) << none.status();
  const absl::Status empty = FitAnalytic(*none, AnalyticFitOptions{}).status();
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(empty.message()), AllOf(HasSubstr("N = 0"), Not(HasSubstr("single class"))));
}

// ----- singular covariance ----------------------------------------------------------------------

TEST(LogisticSingular, FailedPreconditionThenRidgeFixes) {
  struct Case {
    const char* name;
    std::function<Data()> make;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"constant feature",
       [] {
         Data d = MakeGaussian(200, 3, 2, 41);
         for (int64_t i = 0; i < d.n(); ++i) d.features.values[static_cast<size_t>(i * 3 + 1)] = 4.25f;
         return d;
       },
       "feature 1 has zero variance"},
      {"collinear features",
       [] {
         Data d = MakeGaussian(200, 4, 2, 42);
         for (int64_t i = 0; i < d.n(); ++i) {
           float* x = d.features.values.data() + i * 4;
           x[3] = x[0] + 2 * x[1];
         }
         return d;
       },
       "features are collinear"},
      {"dim > N", [] { return MakeGaussian(6, 10, 2, 43); }, "dim = 10"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Data data = c.make();
    for (Covariance covariance : {Covariance::kPooledWithin, Covariance::kTotal}) {
      absl::StatusOr<LogisticModel> model = Fit(data, covariance);
      ASSERT_FALSE(model.ok());
      EXPECT_EQ(model.status().code(), absl::StatusCode::kFailedPrecondition) << model.status();
      EXPECT_THAT(std::string(model.status().message()), AllOf(HasSubstr(c.message), HasSubstr("ridge")));
      absl::StatusOr<LogisticModel> fixed = Fit(data, covariance, 0.1);
      ASSERT_TRUE(fixed.ok()) << fixed.status();
      for (float w : fixed->weights) ASSERT_TRUE(std::isfinite(w));
      // With ridge the fit is the formula with Sigma + ridge I (independent reference).
      const Reference ref = ReferenceFit(data, covariance, 0.1);
      const int64_t d = data.d();
      for (int64_t j = 0; j < d; ++j) {
        const double want = ref.w[static_cast<size_t>(d + j)] - ref.w[static_cast<size_t>(j)];
        EXPECT_NEAR(double{fixed->weights[static_cast<size_t>(d + j)]} - fixed->weights[static_cast<size_t>(j)], want,
                    1e-4 * (1 + std::abs(want)));
      }
    }
  }
}

// A ridge that is set but too small to make dim > N determined asks for a larger one, not for
// "ridge > 0" (the probe's message).
TEST(LogisticSingular, ARidgeTooSmallAsksForALargerOne) {
  const Data data = MakeGaussian(6, 10, 2, 43);
  absl::StatusOr<LogisticModel> model = Fit(data, Covariance::kTotal, 1e-14);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kFailedPrecondition) << model.status();
  EXPECT_THAT(std::string(model.status().message()),
              AllOf(HasSubstr("ridge = 1e-14"), HasSubstr("set a larger ridge"), Not(HasSubstr("ridge > 0"))))
      << model.status();
}

// A feature constant within each class but not across them has zero pooled-within variance. A
// ridge too small to matter (1e-40) makes the covariance invertible, and the weight then lies far
// beyond float32 (about mean difference / 1e-40): the data's condition, FAILED_PRECONDITION naming
// the feature, not an INVALID_ARGUMENT blaming the output (the probe's "model.weights[2] ... -Inf").
TEST(LogisticSingular, AWeightBeyondFloatIsAFailedPreconditionNamingTheFeature) {
  Data data = MakeGaussian(300, 3, 2, 44);
  for (int64_t i = 0; i < data.n(); ++i) {
    data.features.values[static_cast<size_t>(i * 3 + 2)] = data.labels[static_cast<size_t>(i)] == 0 ? 1.0f : 2.0f;
  }
  for (double ridge : {1e-40, 1e-300}) {
    absl::StatusOr<LogisticModel> model = Fit(data, Covariance::kPooledWithin, ridge);
    ASSERT_FALSE(model.ok()) << "ridge " << ridge;
    EXPECT_EQ(model.status().code(), absl::StatusCode::kFailedPrecondition) << model.status();
    EXPECT_THAT(std::string(model.status().message()),
                AllOf(HasSubstr("feature 2"), HasSubstr("beyond float32"), HasSubstr("larger ridge")))
        << model.status();
  }
  // A ridge that matters gives finite weights; and TOTAL covariance sees the feature vary.
  absl::StatusOr<LogisticModel> ridged = Fit(data, Covariance::kPooledWithin, 1e-3);
  ASSERT_TRUE(ridged.ok()) << ridged.status();
  for (float w : ridged->weights) EXPECT_TRUE(std::isfinite(w));
  absl::StatusOr<LogisticModel> total = Fit(data, Covariance::kTotal, 1e-40);
  ASSERT_TRUE(total.ok()) << total.status();
  for (float w : total->weights) EXPECT_TRUE(std::isfinite(w));
}

}  // namespace
}  // namespace primserve
