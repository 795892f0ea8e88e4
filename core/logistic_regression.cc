// The analytic logistic-regression fit (MATH.md section 5; Su Jianlin, archive 8578) from
// sufficient statistics, and prediction / evaluation of a logistic model.
//
// Dense linear algebra: Eigen's LLT (Cholesky) and its rcond() estimate. Eigen is header-only,
// a Debian package (libeigen3-dev), well kept and exactly what a d x d SPD solve needs; writing
// our own Cholesky would add a kernel to maintain and test without gaining anything (the solve
// is O(d^3) once per fit, negligible next to the O(N d^2) scatter).
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/dnnl_context.h"
#include "core/logistic_internal.h"
#include "core/logistic_regression.h"
#include "core/number_format.h"
#include "core/status_macros.h"

namespace primserve {
namespace {

using logistic_internal::kBlockRows;
using logistic_internal::ThreadContext;
using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

absl::Status CheckFitInputs(const SufficientStatistics& s, const AnalyticFitOptions& options) {
  RETURN_IF_ERROR(ValidateStatistics(s));
  if (!std::isfinite(options.ridge) || options.ridge < 0) {
    return absl::InvalidArgumentError(absl::StrCat("ridge: expected a finite value >= 0, got ", NumberToString(options.ridge)));
  }
  if (s.dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat("features.shape: expected dim >= 1 features, got dim = ", s.dim));
  }
  const int64_t n = s.num_samples();
  if (n == 0) {
    return absl::InvalidArgumentError(
        "samples: N = 0, nothing to fit; a classifier needs samples of two or more classes");
  }
  if (s.num_classes < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_classes: expected at least 2 classes, got ", s.num_classes,
        " (labels hold a single class; a classifier needs samples of two or more)"));
  }
  if (n < s.num_classes) {
    return absl::InvalidArgumentError(
        absl::StrCat("labels: expected at least num_classes = ", s.num_classes, " samples, got N = ", n));
  }
  for (int64_t c = 0; c < s.num_classes; ++c) {
    if (s.counts[static_cast<size_t>(c)] == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "labels: class ", c, " has no samples (num_classes = ", s.num_classes,
          "); its prior ln p_c would be -Inf. Pass the right num_classes or relabel to 0..K-1"));
    }
  }
  return absl::OkStatus();
}

// Class means mu_c = a_c + T_c / N_c, priors p_c = N_c / N, the overall mean
// mu = sum_c p_c mu_c, and the centred means mu_c - mu (zero rows for empty classes).
struct Moments {
  RowMatrix means, centred;
  Eigen::RowVectorXd mu;
  std::vector<double> priors;
};

Moments ComputeMoments(const SufficientStatistics& s) {
  const int64_t d = s.dim, k = s.num_classes;
  const double n = static_cast<double>(s.num_samples());
  Moments m;
  m.means = RowMatrix::Zero(k, d);
  m.mu = Eigen::RowVectorXd::Zero(d);
  m.priors.assign(static_cast<size_t>(k), 0.0);
  for (int64_t c = 0; c < k; ++c) {
    const double nc = static_cast<double>(s.counts[static_cast<size_t>(c)]);
    if (nc == 0) continue;
    m.priors[static_cast<size_t>(c)] = nc / n;
    for (int64_t j = 0; j < d; ++j) {
      m.means(c, j) = s.class_shifts[static_cast<size_t>(c * d + j)] + s.class_sums[static_cast<size_t>(c * d + j)] / nc;
    }
    m.mu += m.priors[static_cast<size_t>(c)] * m.means.row(c);
  }
  m.centred = m.means.rowwise() - m.mu;
  for (int64_t c = 0; c < k; ++c) {
    if (s.counts[static_cast<size_t>(c)] == 0) m.centred.row(c).setZero();
  }
  return m;
}

// Sigma (1/N normalisation) for the chosen covariance. Within-class scatter about the class
// means from the class-centred scatter: sum_c sum_{i in c} (x-mu_c)^T (x-mu_c) =
// scatter - sum_c T_c^T T_c / N_c (T_c the class sums about a_c, small because a_c ~ mu_c).
// TOTAL adds the between-class part sum_c p_c (mu_c - mu)^T (mu_c - mu), formed in double from
// the class means (MATH.md: Sigma_total = Sigma_pooled + that).
Eigen::MatrixXd CovarianceMatrix(const SufficientStatistics& s, Covariance covariance, const Moments& moments) {
  const int64_t d = s.dim;
  const double n = static_cast<double>(s.num_samples());
  Eigen::Map<const RowMatrix> scatter(s.scatter.data(), d, d);
  Eigen::Map<const RowMatrix> sums(s.class_sums.data(), s.num_classes, d);
  Eigen::MatrixXd sigma = scatter;
  for (int64_t c = 0; c < s.num_classes; ++c) {
    const double nc = static_cast<double>(s.counts[static_cast<size_t>(c)]);
    if (nc == 0) continue;
    sigma.noalias() -= sums.row(c).transpose() * sums.row(c) / nc;
  }
  if (covariance == Covariance::kTotal) {
    for (int64_t c = 0; c < s.num_classes; ++c) {
      const double nc = static_cast<double>(s.counts[static_cast<size_t>(c)]);
      sigma.noalias() += nc * moments.centred.row(c).transpose() * moments.centred.row(c);
    }
  }
  sigma /= n;
  // Symmetric by construction up to rounding; make it exactly so for the factorisation.
  return 0.5 * (sigma + sigma.transpose());
}

}  // namespace

absl::StatusOr<LogisticModel> FitAnalytic(const SufficientStatistics& s, const AnalyticFitOptions& options) {
  RETURN_IF_ERROR(CheckFitInputs(s, options));
  const int64_t d = s.dim, k = s.num_classes;
  const double n = static_cast<double>(s.num_samples());

  const Moments moments = ComputeMoments(s);
  const RowMatrix& centred = moments.centred;
  const Eigen::RowVectorXd& mu = moments.mu;
  Eigen::MatrixXd sigma = CovarianceMatrix(s, options.covariance, moments);
  const char* covariance_name = options.covariance == Covariance::kTotal ? "TOTAL" : "POOLED_WITHIN";

  // A feature whose variance is zero, or at the float32 rounding level of its raw second moment
  // about the shifts (a constant feature, or constant within every class), makes Sigma singular;
  // say which one instead of a bare condition number.
  if (options.ridge == 0) {
    for (int64_t j = 0; j < d; ++j) {
      const double raw = s.scatter[static_cast<size_t>(j * d + j)] / n;
      if (!(sigma(j, j) > 4 * std::numeric_limits<float>::epsilon() * raw)) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "covariance: the %s covariance is singular: feature %d has zero variance (%g) %s; "
            "drop the feature or set ridge > 0 (adds ridge * I to the covariance)",
            covariance_name, j, sigma(j, j),
            options.covariance == Covariance::kTotal ? "(a constant feature)"
                                                     : "(constant within every class)"));
      }
    }
  }
  sigma.diagonal().array() += options.ridge;

  // Factor the unit-diagonal (correlation) form D^-1/2 Sigma D^-1/2: this makes the condition
  // check and the factorisation independent of feature units (affine equivariance), and the
  // solve becomes w^T = D^-1/2 C^-1 D^-1/2 (mu_c - mu)^T.
  const Eigen::VectorXd inv_sqrt_diag = sigma.diagonal().array().rsqrt();
  const Eigen::MatrixXd correlation = inv_sqrt_diag.asDiagonal() * sigma * inv_sqrt_diag.asDiagonal();
  Eigen::LLT<Eigen::MatrixXd> llt(correlation);
  const double rcond = llt.info() == Eigen::Success ? llt.rcond() : 0.0;
  if (llt.info() != Eigen::Success || !(rcond >= kMinCovarianceRcond)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "covariance: the %s covariance%s is %s (reciprocal condition estimate %.3g of its unit-diagonal "
        "form, need >= %g): features are collinear, or dim = %d exceeds what N = %d samples determine; "
        "%s or drop redundant features",
        covariance_name, options.ridge > 0 ? absl::StrCat(" + ridge * I (ridge = ", NumberToString(options.ridge), ")") : "",
        llt.info() != Eigen::Success ? "not positive definite" : "numerically singular", rcond,
        kMinCovarianceRcond, d, static_cast<int64_t>(n),
        options.ridge > 0 ? "set a larger ridge (it counts relative to the features' variances)"
                          : "set ridge > 0 (adds ridge * I)"));
  }
  // Solve Sigma w_c^T = (mu_c - mu)^T for all classes at once (d x K right-hand sides).
  Eigen::MatrixXd rhs = inv_sqrt_diag.asDiagonal() * centred.transpose();
  llt.solveInPlace(rhs);
  const Eigen::MatrixXd w = inv_sqrt_diag.asDiagonal() * rhs;  // d x K, column c = w_c^T

  LogisticModel model;
  model.num_classes = k;
  model.dim = d;
  model.priors = moments.priors;
  model.weights.resize(static_cast<size_t>(k * d));
  model.bias.resize(static_cast<size_t>(k));
  // The correlation form is well conditioned, but a feature whose variance (plus ridge) is tiny
  // next to its class-mean differences still gets a weight past float32's range (e.g. a constant
  // feature with ridge 1e-40): that is the data's condition, not a bad request field.
  constexpr double kFloatMax = std::numeric_limits<float>::max();
  auto too_large = [&](double value, const std::string& what, int64_t feature) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "covariance: the fitted %s is %.6g, beyond float32's range: the %s covariance%s has variance %.6g in "
        "feature %d's direction, too small for its class means; set a larger ridge, rescale the feature or drop it",
        what, value, covariance_name, options.ridge > 0 ? " + ridge * I" : "", sigma(feature, feature), feature));
  };
  for (int64_t c = 0; c < k; ++c) {
    for (int64_t j = 0; j < d; ++j) {
      if (!(std::abs(w(j, c)) <= kFloatMax)) {
        return too_large(w(j, c), absl::StrFormat("weight of class %d, feature %d", c, j), j);
      }
    }
  }
  for (int64_t c = 0; c < k; ++c) {
    // b_c = ln p_c - 1/2 (mu_c - mu) w_c^T - mu w_c^T.
    const double quadratic = centred.row(c).dot(w.col(c));
    const double bias = std::log(model.priors[static_cast<size_t>(c)]) - 0.5 * quadratic - mu.dot(w.col(c));
    if (!(std::abs(bias) <= kFloatMax)) {
      Eigen::Index largest = 0;
      w.col(c).cwiseAbs().maxCoeff(&largest);
      return too_large(bias, absl::StrFormat("bias of class %d", c), static_cast<int64_t>(largest));
    }
    for (int64_t j = 0; j < d; ++j) model.weights[static_cast<size_t>(c * d + j)] = static_cast<float>(w(j, c));
    model.bias[static_cast<size_t>(c)] = static_cast<float>(bias);
  }
  // Belt and braces: the checks above guarantee this; never hand out NaN weights.
  RETURN_IF_ERROR(ValidateModel(model));
  return model;
}

absl::StatusOr<std::vector<double>> ComputeCovariance(const SufficientStatistics& s, Covariance covariance) {
  RETURN_IF_ERROR(ValidateStatistics(s));
  if (s.num_samples() == 0) {
    return absl::InvalidArgumentError("statistics.counts: no samples, the covariance is undefined");
  }
  const Eigen::MatrixXd sigma = CovarianceMatrix(s, covariance, ComputeMoments(s));
  std::vector<double> out(static_cast<size_t>(s.dim * s.dim));
  Eigen::Map<RowMatrix>(out.data(), s.dim, s.dim) = sigma;
  return out;
}

absl::Status ValidateModel(const LogisticModel& model) {
  if (model.num_classes < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("model.num_classes: expected at least 2 classes, got ", model.num_classes));
  }
  if (model.dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat("model.dim: expected >= 1, got ", model.dim));
  }
  if (model.num_classes > kDefaultMaxElements / model.dim ||
      static_cast<int64_t>(model.weights.size()) != model.num_classes * model.dim) {
    return absl::InvalidArgumentError(absl::StrCat("model.weights: expected [", model.num_classes, ", ", model.dim,
                                                   "] = ", model.num_classes * model.dim, " values, got ",
                                                   model.weights.size()));
  }
  if (static_cast<int64_t>(model.bias.size()) != model.num_classes) {
    return absl::InvalidArgumentError(absl::StrCat("model.bias: expected ", model.num_classes, " values, got ",
                                                   model.bias.size()));
  }
  if (!model.priors.empty() && static_cast<int64_t>(model.priors.size()) != model.num_classes) {
    return absl::InvalidArgumentError(absl::StrCat("model.priors: expected ", model.num_classes,
                                                   " values or none, got ", model.priors.size()));
  }
  RETURN_IF_ERROR(CheckFinite(model.weights, "model.weights"));
  RETURN_IF_ERROR(CheckFinite(model.bias, "model.bias"));
  RETURN_IF_ERROR(CheckFinite(model.priors, "model.priors"));
  return absl::OkStatus();
}

namespace {

absl::Status CheckPredictInputs(const LogisticModel& model, const Tensor& features) {
  RETURN_IF_ERROR(ValidateModel(model));
  if (features.rank() != 2 || features.dim(1) != model.dim) {
    return absl::InvalidArgumentError(absl::StrCat("features.shape: expected [num_samples, ", model.dim,
                                                   "] (the model's dim), got ", ShapeToString(features.shape)));
  }
  ASSIGN_OR_RETURN(const int64_t elements, ElementCount(features.shape, "features.shape"));
  if (static_cast<int64_t>(features.values.size()) != elements) {
    return absl::InvalidArgumentError(absl::StrCat("features: shape ", ShapeToString(features.shape), " needs ",
                                                   elements, " values, got ", features.values.size()));
  }
  if (model.num_classes > kDefaultMaxElements / std::max<int64_t>(1, features.dim(0))) {
    return absl::ResourceExhaustedError(absl::StrCat("features.shape: ", features.dim(0), " samples x ",
                                                     model.num_classes, " classes exceed the limit of ",
                                                     kDefaultMaxElements, " probabilities"));
  }
  return CheckFinite(features.values, "features");
}

// Calls row_fn(row, logits) for every sample, logits = x W^T + b (K floats), with the
// product on a oneDNN matmul per block of rows. row_fn(thread, row, logits) may run
// concurrently for rows of different blocks.
absl::Status ForEachLogitRow(const LogisticModel& model, const Tensor& features,
                             const std::function<void(int thread, int64_t row, const float* logits)>& row_fn) {
  const int64_t m = features.dim(0), d = model.dim, k = model.num_classes;
  if (m == 0) return absl::OkStatus();
  MatmulShape mm;
  mm.m = kBlockRows;
  mm.n = k;
  mm.k = d;
  mm.lda = d;
  mm.ldb = d;
  mm.ldc = k;
  mm.b_transposed = true;  // B = weights^T, weights stored [K, d]
  ASSIGN_OR_RETURN(std::shared_ptr<const TileMatmul> matmul, TileMatmul::Get(mm));
  const int64_t num_blocks = (m + kBlockRows - 1) / kBlockRows;
  struct Buffers {
    std::vector<float> tail;    // [kBlockRows, d] zero-padded copy of a short last block
    std::vector<float> logits;  // [kBlockRows, K]
  };
  std::vector<Buffers> buffers(static_cast<size_t>(logistic_internal::BlockThreads(num_blocks)));
  std::vector<ThreadContext> contexts;
  return logistic_internal::ForEachBlock(num_blocks, &contexts, [&](int thread, int64_t block) {
    Buffers& buf = buffers[static_cast<size_t>(thread)];
    buf.logits.resize(static_cast<size_t>(kBlockRows * k));
    const int64_t row0 = block * kBlockRows;
    const int64_t rows = std::min(kBlockRows, m - row0);
    const float* a = features.values.data() + row0 * d;
    if (rows < kBlockRows) {
      // One primitive shape for every block: pad the short last block instead of creating (and
      // caching) a primitive per request size.
      buf.tail.assign(static_cast<size_t>(kBlockRows * d), 0.0f);
      std::copy(a, a + rows * d, buf.tail.begin());
      a = buf.tail.data();
    }
    ThreadContext& context = contexts[static_cast<size_t>(thread)];
    matmul->Execute(context.stream, a, model.weights.data(), buf.logits.data(), context.Scratch(*matmul));
    context.stream.wait();
    for (int64_t r = 0; r < rows; ++r) {
      float* logits = buf.logits.data() + r * k;
      bool finite = true;
      for (int64_t c = 0; c < k; ++c) {
        logits[c] += model.bias[static_cast<size_t>(c)];
        finite &= std::isfinite(logits[c]);
      }
      // Finite inputs can still overflow float32 logits (huge features times large weights):
      // a precise error instead of NaN probabilities.
      if (!finite) {
        return absl::InvalidArgumentError(absl::StrCat(
            "features: row ", row0 + r, " gives a non-finite logit x w^T + b in float32 (features too large for "
            "this model's weights); rescale the features"));
      }
      row_fn(thread, row0 + r, logits);
    }
    return absl::OkStatus();
  });
}

int64_t ArgMax(const float* v, int64_t k) {
  return static_cast<int64_t>(std::max_element(v, v + k) - v);
}

}  // namespace

absl::StatusOr<Prediction> Predict(const LogisticModel& model, const Tensor& features) {
  RETURN_IF_ERROR(CheckPredictInputs(model, features));
  const int64_t m = features.dim(0), k = model.num_classes;
  Prediction prediction;
  prediction.probabilities = Tensor::Zeros({m, k});
  prediction.labels.assign(static_cast<size_t>(m), 0);
  RETURN_IF_ERROR(ForEachLogitRow(model, features, [&](int, int64_t row, const float* logits) {
    // Stable softmax: subtract the row max before exp, so the largest term is exp(0) = 1 and the
    // sum is in [1, K]: no overflow, no 0/0.
    const int64_t best = ArgMax(logits, k);
    const float max = logits[best];
    float* p = prediction.probabilities.values.data() + row * k;
    double sum = 0;
    for (int64_t c = 0; c < k; ++c) {
      p[c] = std::exp(logits[c] - max);
      sum += p[c];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t c = 0; c < k; ++c) p[c] *= inv;
    prediction.labels[static_cast<size_t>(row)] = best;
  }));
  return prediction;
}

absl::StatusOr<FitQuality> Evaluate(const LogisticModel& model, const Tensor& features,
                                    absl::Span<const int64_t> labels) {
  RETURN_IF_ERROR(CheckPredictInputs(model, features));
  const int64_t m = features.dim(0), k = model.num_classes;
  if (m == 0) return absl::InvalidArgumentError("features: expected at least one sample to evaluate, got 0");
  if (static_cast<int64_t>(labels.size()) != m) {
    return absl::InvalidArgumentError(absl::StrCat("labels: expected one label per sample (", m, "), got ",
                                                   labels.size()));
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= k) {
      return absl::InvalidArgumentError(
          absl::StrCat("labels[", i, "]: expected a class in [0, ", k, "), got ", labels[i]));
    }
  }
  // Per-thread partial sums, reduced in thread order (ForEachBlock splits statically).
  struct Partial {
    double loss = 0;
    int64_t correct = 0;
  };
  std::vector<Partial> partials(static_cast<size_t>(
      logistic_internal::BlockThreads((m + kBlockRows - 1) / kBlockRows)));
  RETURN_IF_ERROR(ForEachLogitRow(model, features, [&](int thread, int64_t row, const float* logits) {
    // -ln p_y = logsumexp(logits) - logit_y, with the max subtracted: log(0) never happens.
    const int64_t y = labels[static_cast<size_t>(row)];
    const int64_t best = ArgMax(logits, k);
    const double max = logits[best];
    double sum = 0;
    for (int64_t c = 0; c < k; ++c) sum += std::exp(static_cast<double>(logits[c]) - max);
    Partial& p = partials[static_cast<size_t>(thread)];
    p.loss += max + std::log(sum) - logits[y];
    p.correct += best == y ? 1 : 0;
  }));
  FitQuality quality;
  quality.samples = m;
  int64_t correct = 0;
  double loss = 0;
  for (const Partial& p : partials) {
    correct += p.correct;
    loss += p.loss;
  }
  quality.accuracy = static_cast<double>(correct) / static_cast<double>(m);
  quality.log_loss = loss / static_cast<double>(m);
  return quality;
}

}  // namespace primserve
