// Shared data generators and double-precision helpers of the logistic-regression tests.
#ifndef PRIMSERVE_TESTS_CORE_LOGISTIC_TEST_UTIL_H_
#define PRIMSERVE_TESTS_CORE_LOGISTIC_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "core/logistic_regression.h"

namespace primserve {
namespace logistic_test {

struct Data {
  Tensor features;
  std::vector<int64_t> labels;
  int64_t num_classes = 0;
  int64_t n() const { return features.dim(0); }
  int64_t d() const { return features.dim(1); }
  double x(int64_t i, int64_t j) const { return features.values[static_cast<size_t>(i * d() + j)]; }
};

inline Tensor MakeTensor(int64_t rows, int64_t cols, std::vector<float> values) {
  Tensor t;
  t.shape = {rows, cols};
  t.values = std::move(values);
  return t;
}

// Gaussian classes with one shared covariance L L^T (L lower triangular, near identity so
// cond(Sigma) stays below ~30), class means ~ N(offset, 1.5^2). Row i < K has label i so every
// class is present; the rest are uniform.
inline Data MakeGaussian(int64_t n, int64_t d, int64_t k, unsigned seed, double offset = 0.0, double spread = 1.5) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  std::uniform_int_distribution<int64_t> pick(0, k - 1);
  std::vector<double> means(static_cast<size_t>(k * d)), chol(static_cast<size_t>(d * d), 0.0);
  for (double& m : means) m = offset + spread * normal(rng);
  for (int64_t a = 0; a < d; ++a) {
    for (int64_t b = 0; b < a; ++b) chol[static_cast<size_t>(a * d + b)] = 0.3 * normal(rng) / std::sqrt(1.0 + d / 8.0);
    chol[static_cast<size_t>(a * d + a)] = 1.0;
  }
  Data data;
  data.num_classes = k;
  data.features = Tensor::Zeros({n, d});
  data.labels.resize(static_cast<size_t>(n));
  std::vector<double> z(static_cast<size_t>(d));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = i < k ? i : pick(rng);
    data.labels[static_cast<size_t>(i)] = c;
    for (double& v : z) v = normal(rng);
    for (int64_t a = 0; a < d; ++a) {
      double v = means[static_cast<size_t>(c * d + a)];
      for (int64_t b = 0; b <= a; ++b) v += chol[static_cast<size_t>(a * d + b)] * z[static_cast<size_t>(b)];
      data.features.values[static_cast<size_t>(i * d + a)] = static_cast<float>(v);
    }
  }
  return data;
}

inline Data Slice(const Data& data, int64_t begin, int64_t end) {
  Data out;
  out.num_classes = data.num_classes;
  out.features = MakeTensor(end - begin, data.d(),
                            std::vector<float>(data.features.values.begin() + begin * data.d(),
                                               data.features.values.begin() + end * data.d()));
  out.labels.assign(data.labels.begin() + begin, data.labels.begin() + end);
  return out;
}

inline absl::StatusOr<LogisticModel> Fit(const Data& data, Covariance covariance = Covariance::kPooledWithin,
                                  double ridge = 0.0, int64_t num_classes = 0) {
  absl::StatusOr<SufficientStatistics> stats = ComputeStatistics(data.features, data.labels, num_classes);
  if (!stats.ok()) return stats.status();
  AnalyticFitOptions options;
  options.covariance = covariance;
  options.ridge = ridge;
  return FitAnalytic(*stats, options);
}

// Logits of a float32 model, evaluated in double.
inline std::vector<double> Logits(const LogisticModel& model, const double* x) {
  std::vector<double> out(static_cast<size_t>(model.num_classes));
  for (int64_t c = 0; c < model.num_classes; ++c) {
    double v = model.bias[static_cast<size_t>(c)];
    for (int64_t j = 0; j < model.dim; ++j) v += model.weights[static_cast<size_t>(c * model.dim + j)] * x[j];
    out[static_cast<size_t>(c)] = v;
  }
  return out;
}

// The size of the terms summed into a logit: the scale float32 rounding errors are relative to.
inline double LogitScale(const LogisticModel& model, const double* x) {
  double scale = 1.0;
  for (int64_t c = 0; c < model.num_classes; ++c) {
    double s = std::abs(model.bias[static_cast<size_t>(c)]);
    for (int64_t j = 0; j < model.dim; ++j) s += std::abs(model.weights[static_cast<size_t>(c * model.dim + j)] * x[j]);
    scale = std::max(scale, s);
  }
  return scale;
}

inline std::vector<double> Softmax(std::vector<double> logits) {
  const double max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (double& v : logits) sum += (v = std::exp(v - max));
  for (double& v : logits) v /= sum;
  return logits;
}

// MATH.md section 5 binary check data.
inline Data GoldenBinary() {
  Data data;
  data.num_classes = 2;
  data.features = MakeTensor(6, 2, {1, 2, 2, 0.5f, 0, 1, 3, 3, 2.5f, 1, 1.5f, 2.5f});
  data.labels = {0, 0, 0, 1, 1, 1};
  return data;
}


}  // namespace logistic_test
}  // namespace primserve

#endif  // PRIMSERVE_TESTS_CORE_LOGISTIC_TEST_UTIL_H_
