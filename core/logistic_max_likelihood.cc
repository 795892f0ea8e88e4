// The maximum-likelihood reference solver beside the analytic fit (MATH.md section 5: "a
// maximum-likelihood reference solver (L2, Newton or L-BFGS) belongs beside it"): multinomial
// logistic regression with an L2 penalty, by L-BFGS (Nocedal & Wright, Numerical Optimization,
// algorithm 7.4/7.5) with a backtracking Armijo line search.
//
// L-BFGS rather than Newton: the Hessian has (K d)^2 entries and costs N K^2 d^2 per iteration
// to form, 1.6e12 multiply-adds at N = 1e6, d = 128, K = 10; L-BFGS needs two N x d x K
// products per evaluation.
//
// Parametrisation. Internally the solver works with standardized features z = (x - m) / s
// (m, s the feature means and standard deviations) and parameters V = W diag(s),
// b'' = b + W m, so logits = z V^T + b'' = x W^T + b. This is an exact change of variables of
// the SAME objective (the penalty becomes l2/2 sum V_kj^2 / s_j^2 = l2/2 ||W||^2); it only makes
// the problem well scaled, so the iteration count and the gradient tolerance do not depend on
// feature units or offsets.
#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <memory>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/logistic_internal.h"
#include "core/logistic_regression.h"
#include "core/number_format.h"
#include "core/status_macros.h"

namespace primserve {
namespace {

using logistic_internal::kBlockRows;
using logistic_internal::ThreadContext;

double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  return std::inner_product(a.begin(), a.end(), b.begin(), 0.0);
}

// Feature means and standard deviations (population), in double, about the first row (a shift
// that keeps the one-pass variance from cancelling). Constant features get s = 1.
void Standardize(const Tensor& features, std::vector<double>* mean, std::vector<double>* scale) {
  const int64_t n = features.dim(0), d = features.dim(1);
  const float* x0 = features.values.data();
  std::vector<double> sum(static_cast<size_t>(d), 0.0), sum_sq(static_cast<size_t>(d), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const float* x = features.values.data() + i * d;
    for (int64_t j = 0; j < d; ++j) {
      const double v = static_cast<double>(x[j]) - x0[j];
      sum[static_cast<size_t>(j)] += v;
      sum_sq[static_cast<size_t>(j)] += v * v;
    }
  }
  mean->resize(static_cast<size_t>(d));
  scale->resize(static_cast<size_t>(d));
  for (int64_t j = 0; j < d; ++j) {
    const double e = sum[static_cast<size_t>(j)] / static_cast<double>(n);
    const double var = std::max(0.0, sum_sq[static_cast<size_t>(j)] / static_cast<double>(n) - e * e);
    (*mean)[static_cast<size_t>(j)] = x0[j] + e;
    (*scale)[static_cast<size_t>(j)] = var > 0 ? std::sqrt(var) : 1.0;
  }
}

// A point of the iteration: parameters, objective value, gradient, and whether every sample is
// classified correctly there with a strict margin (logit of the true class above every other).
struct Iterate {
  std::vector<double> theta, grad;
  double f = 0;
  bool separated = false;
  double GradientNorm() const { return std::sqrt(Dot(grad, grad)); }
};

// The objective and its gradient in the standardized parametrisation theta = [V (K x d), b'' (K)].
class Objective {
 public:
  Objective(const Tensor& features, absl::Span<const int64_t> labels, int64_t num_classes, double l2)
      : x_(features), labels_(labels), n_(features.dim(0)), d_(features.dim(1)), k_(num_classes), l2_(l2) {
    Standardize(features, &mean_, &scale_);
  }

  absl::Status Init() {
    MatmulShape logits;  // [B, d] x V^T -> [B, K]
    logits.m = kBlockRows;
    logits.n = k_;
    logits.k = d_;
    logits.lda = d_;
    logits.ldb = d_;
    logits.ldc = k_;
    logits.b_transposed = true;
    ASSIGN_OR_RETURN(logits_mm_, TileMatmul::Get(logits));
    MatmulShape gradient;  // G^T z: A = G^T stored as G [B, K], B = z [B, d] -> [K, d]
    gradient.m = k_;
    gradient.n = d_;
    gradient.k = kBlockRows;
    gradient.lda = k_;
    gradient.ldb = d_;
    gradient.ldc = d_;
    gradient.a_transposed = true;
    ASSIGN_OR_RETURN(gradient_mm_, TileMatmul::Get(gradient));
    num_blocks_ = (n_ + kBlockRows - 1) / kBlockRows;
    partials_.resize(static_cast<size_t>(logistic_internal::BlockThreads(num_blocks_)));
    for (Partial& p : partials_) {
      p.z.assign(static_cast<size_t>(kBlockRows * d_), 0.0f);
      p.logits.assign(static_cast<size_t>(kBlockRows * k_), 0.0f);
      p.g.assign(static_cast<size_t>(kBlockRows * k_), 0.0f);
      p.gz.assign(static_cast<size_t>(k_ * d_), 0.0f);
    }
    return absl::OkStatus();
  }

  int64_t size() const { return k_ * d_ + k_; }

  // Fills point->f, point->grad and point->separated at point->theta.
  absl::Status Evaluate(Iterate* point) {
    const std::vector<double>& theta = point->theta;
    std::vector<double>* grad = &point->grad;
    std::vector<float> v(theta.begin(), theta.begin() + k_ * d_);
    const double* bias = theta.data() + k_ * d_;
    for (Partial& p : partials_) {
      p.loss = 0;
      p.correct = 0;
      p.grad.assign(static_cast<size_t>(size()), 0.0);
    }
    std::vector<ThreadContext> contexts;
    RETURN_IF_ERROR(logistic_internal::ForEachBlock(num_blocks_, &contexts, [&](int thread, int64_t block) {
      return Block(partials_[static_cast<size_t>(thread)], contexts[static_cast<size_t>(thread)], v.data(), bias,
                   block);
    }));
    double loss = 0;
    int64_t correct = 0;
    grad->assign(static_cast<size_t>(size()), 0.0);
    for (const Partial& p : partials_) {
      loss += p.loss;
      correct += p.correct;
      for (size_t i = 0; i < grad->size(); ++i) (*grad)[i] += p.grad[i];
    }
    const double inv_n = 1.0 / static_cast<double>(n_);
    double penalty = 0;
    for (int64_t c = 0; c < k_; ++c) {
      for (int64_t j = 0; j < d_; ++j) {
        const size_t i = static_cast<size_t>(c * d_ + j);
        const double s = scale_[static_cast<size_t>(j)];
        penalty += theta[i] * theta[i] / (s * s);
        (*grad)[i] = (*grad)[i] * inv_n + l2_ * theta[i] / (s * s);
      }
    }
    for (int64_t c = 0; c < k_; ++c) (*grad)[static_cast<size_t>(k_ * d_ + c)] *= inv_n;
    point->f = loss * inv_n + 0.5 * l2_ * penalty;
    point->separated = correct == n_;
    return absl::OkStatus();
  }

  // Back to the caller's units: W = V diag(1/s), b = b'' - W m.
  LogisticModel ToModel(const std::vector<double>& theta) const {
    LogisticModel model;
    model.num_classes = k_;
    model.dim = d_;
    model.weights.resize(static_cast<size_t>(k_ * d_));
    model.bias.resize(static_cast<size_t>(k_));
    for (int64_t c = 0; c < k_; ++c) {
      double b = theta[static_cast<size_t>(k_ * d_ + c)];
      for (int64_t j = 0; j < d_; ++j) {
        const double w = theta[static_cast<size_t>(c * d_ + j)] / scale_[static_cast<size_t>(j)];
        b -= w * mean_[static_cast<size_t>(j)];
        model.weights[static_cast<size_t>(c * d_ + j)] = static_cast<float>(w);
      }
      model.bias[static_cast<size_t>(c)] = static_cast<float>(b);
    }
    return model;
  }

 private:
  struct Partial {
    std::vector<float> z, logits, g, gz;
    std::vector<double> grad;
    double loss = 0;
    int64_t correct = 0;
  };

  absl::Status Block(Partial& p, ThreadContext& context, const float* v, const double* bias, int64_t block) {
    const int64_t row0 = block * kBlockRows;
    const int64_t rows = std::min(kBlockRows, n_ - row0);
    for (int64_t r = 0; r < rows; ++r) {
      const float* x = x_.values.data() + (row0 + r) * d_;
      float* z = p.z.data() + r * d_;
      for (int64_t j = 0; j < d_; ++j) {
        z[j] = static_cast<float>((x[j] - mean_[static_cast<size_t>(j)]) / scale_[static_cast<size_t>(j)]);
      }
    }
    // Zero rows past the end: with zero G rows below they add nothing to G^T z.
    if (rows < kBlockRows) std::fill(p.z.begin() + rows * d_, p.z.end(), 0.0f);
    logits_mm_->Execute(context.stream, p.z.data(), v, p.logits.data(), context.Scratch(*logits_mm_));
    context.stream.wait();
    std::fill(p.g.begin(), p.g.end(), 0.0f);
    double* grad_bias = p.grad.data() + k_ * d_;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t y = labels_[static_cast<size_t>(row0 + r)];
      float* logits = p.logits.data() + r * k_;
      for (int64_t c = 0; c < k_; ++c) logits[c] += static_cast<float>(bias[c]);
      // Stable log-sum-exp: subtract the max (MATH.md / STYLE.md habit 7).
      float max = logits[0];
      bool strict = true;
      for (int64_t c = 0; c < k_; ++c) {
        max = std::max(max, logits[c]);
        if (c != y && logits[c] >= logits[y]) strict = false;
      }
      float* g = p.g.data() + r * k_;
      double sum = 0;
      for (int64_t c = 0; c < k_; ++c) {
        g[c] = std::exp(logits[c] - max);
        sum += g[c];
      }
      p.loss += max + std::log(sum) - logits[y];
      p.correct += strict ? 1 : 0;
      // dLoss/dlogits = softmax - onehot(y).
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t c = 0; c < k_; ++c) {
        g[c] = g[c] * inv - (c == y ? 1.0f : 0.0f);
        grad_bias[c] += g[c];
      }
    }
    gradient_mm_->Execute(context.stream, p.g.data(), p.z.data(), p.gz.data(), context.Scratch(*gradient_mm_));
    context.stream.wait();
    for (size_t i = 0; i < p.gz.size(); ++i) p.grad[i] += p.gz[i];
    return absl::OkStatus();
  }

  const Tensor& x_;
  absl::Span<const int64_t> labels_;
  const int64_t n_, d_, k_;
  const double l2_;
  std::vector<double> mean_, scale_;
  std::shared_ptr<const TileMatmul> logits_mm_, gradient_mm_;
  int64_t num_blocks_ = 0;
  std::vector<Partial> partials_;
};

absl::Status CheckOptions(const MaxLikelihoodOptions& options) {
  if (!std::isfinite(options.l2) || options.l2 < 0) {
    return absl::InvalidArgumentError(absl::StrCat("l2: expected a finite value >= 0, got ", NumberToString(options.l2)));
  }
  if (options.max_iterations < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_iterations: expected >= 0 (0 = default ", kDefaultMaxIterations, "), got ",
                     options.max_iterations));
  }
  if (!std::isfinite(options.gradient_tolerance) || options.gradient_tolerance < 0) {
    return absl::InvalidArgumentError(absl::StrCat("gradient_tolerance: expected a finite value >= 0 (0 = default ",
                                                   kDefaultGradientTolerance, "), got ", NumberToString(options.gradient_tolerance)));
  }
  return absl::OkStatus();
}

// The curvature pairs (s, y) of the last kMemory steps and the two-loop recursion.
class LbfgsMemory {
 public:
  static constexpr size_t kMemory = 10;

  bool empty() const { return s_.empty(); }
  void Clear() {
    s_.clear();
    y_.clear();
  }

  // direction = -H grad (Nocedal & Wright algorithm 7.4).
  std::vector<double> Direction(const std::vector<double>& grad) const {
    std::vector<double> q(grad);
    const size_t m = s_.size();
    std::vector<double> alpha(m), rho(m);
    for (size_t i = m; i-- > 0;) {
      rho[i] = 1.0 / Dot(y_[i], s_[i]);
      alpha[i] = rho[i] * Dot(s_[i], q);
      for (size_t j = 0; j < q.size(); ++j) q[j] -= alpha[i] * y_[i][j];
    }
    // Initial Hessian scaling gamma = s^T y / y^T y (Nocedal & Wright eq. 7.20).
    if (m > 0) {
      const double gamma = Dot(s_[m - 1], y_[m - 1]) / Dot(y_[m - 1], y_[m - 1]);
      for (double& v : q) v *= gamma;
    }
    for (size_t i = 0; i < m; ++i) {
      const double beta = rho[i] * Dot(y_[i], q);
      for (size_t j = 0; j < q.size(); ++j) q[j] += s_[i][j] * (alpha[i] - beta);
    }
    for (double& v : q) v = -v;
    return q;
  }

  void Update(const Iterate& from, const Iterate& to) {
    std::vector<double> s(from.theta.size()), y(from.theta.size());
    for (size_t i = 0; i < s.size(); ++i) {
      s[i] = to.theta[i] - from.theta[i];
      y[i] = to.grad[i] - from.grad[i];
    }
    // Keep the pair only with positive curvature (keeps the implicit Hessian positive definite).
    if (!(Dot(s, y) > 1e-10 * std::sqrt(Dot(s, s) * Dot(y, y)))) return;
    s_.push_back(std::move(s));
    y_.push_back(std::move(y));
    if (s_.size() > kMemory) {
      s_.pop_front();
      y_.pop_front();
    }
  }

 private:
  std::deque<std::vector<double>> s_, y_;
};

// Backtracking Armijo line search from `current` along `direction` (slope = grad . direction
// < 0), starting at `step`. False when no step within 40 halvings is accepted.
absl::StatusOr<bool> LineSearch(Objective& objective, const Iterate& current, const std::vector<double>& direction,
                                double slope, double step, Iterate* next) {
  // Armijo with a slack of float32 rounding in f: the logits come from float32 matmuls, so f is
  // only known to ~2^-24 relative; demanding more would reject good steps near the optimum.
  const double slack = std::numeric_limits<float>::epsilon() * std::abs(current.f);
  for (int trial = 0; trial < 40; ++trial, step *= 0.5) {
    next->theta = current.theta;
    for (size_t i = 0; i < next->theta.size(); ++i) next->theta[i] += step * direction[i];
    RETURN_IF_ERROR(objective.Evaluate(next));
    if (std::isfinite(next->f) && next->f <= current.f + 1e-4 * step * slope + slack) return true;
  }
  return false;
}

absl::Status SeparableError(int iteration, double objective) {
  return absl::FailedPreconditionError(absl::StrFormat(
      "l2: the training data are linearly separable (at iteration %d every sample is classified correctly, "
      "loss %.3g and falling): with l2 = 0 the maximum-likelihood weights do not exist (they grow without "
      "bound); set l2 > 0 or use the ANALYTIC solver",
      iteration, objective));
}

struct Outcome {
  Iterate last;
  int iterations = 0;
  std::string stop_reason;  // empty when converged
};

// L-BFGS from theta = 0 until the gradient norm is <= tolerance, max_iterations are taken, or
// the line search stalls. With `reject_separable` (l2 = 0), an iterate that separates the data
// ends the fit with FAILED_PRECONDITION: a linear classifier with a strict margin on every
// sample proves the loss has no minimiser (scaling it up keeps lowering the loss).
absl::StatusOr<Outcome> Minimize(Objective& objective, int max_iterations, double tolerance, bool reject_separable,
                                 const std::function<bool()>& cancelled) {
  Outcome out;
  Iterate& current = out.last;
  current.theta.assign(static_cast<size_t>(objective.size()), 0.0);
  RETURN_IF_ERROR(objective.Evaluate(&current));
  LbfgsMemory memory;
  Iterate next;
  while (current.GradientNorm() > tolerance) {
    if (cancelled && cancelled()) {
      return absl::CancelledError(
          absl::StrCat("maximum-likelihood fit: cancelled after ", out.iterations, " L-BFGS iteration(s)"));
    }
    const double grad_norm = current.GradientNorm();
    if (out.iterations == max_iterations) {
      out.stop_reason = absl::StrFormat(
          "max_iterations (%d) reached with gradient norm %.3g > gradient_tolerance %.3g; raise max_iterations or l2",
          max_iterations, grad_norm, tolerance);
      break;
    }
    std::vector<double> direction = memory.Direction(current.grad);
    double slope = Dot(current.grad, direction);
    if (!(slope < 0)) {  // Not a descent direction (curvature pairs gone stale): restart.
      memory.Clear();
      direction = memory.Direction(current.grad);
      slope = Dot(current.grad, direction);
    }
    // The first step has no curvature information: scale it to unit length.
    const double step = memory.empty() ? std::min(1.0, 1.0 / grad_norm) : 1.0;
    ASSIGN_OR_RETURN(const bool accepted, LineSearch(objective, current, direction, slope, step, &next));
    // Any evaluated point that separates the data proves separability, accepted or not.
    if (reject_separable && next.separated) return SeparableError(out.iterations + 1, next.f);
    if (!accepted) {
      out.stop_reason = absl::StrFormat(
          "the line search made no progress at iteration %d with gradient norm %.3g > gradient_tolerance %.3g: "
          "the objective is flat to float32 precision there",
          out.iterations, grad_norm, tolerance);
      break;
    }
    ++out.iterations;
    memory.Update(current, next);
    std::swap(current, next);
  }
  return out;
}

}  // namespace

absl::StatusOr<MaxLikelihoodResult> FitMaxLikelihood(const Tensor& features, absl::Span<const int64_t> labels,
                                                     int64_t num_classes, const MaxLikelihoodOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  ASSIGN_OR_RETURN(const logistic_internal::LabelledShape shape,
                   logistic_internal::ValidateLabelledFeatures(features, labels, num_classes));
  const int64_t k = shape.num_classes, n = shape.num_samples;
  if (k < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_classes: expected at least 2 classes, got ", k, " (labels hold a single class or none)"));
  }
  if (n < k) {
    return absl::InvalidArgumentError(
        absl::StrCat("labels: expected at least num_classes = ", k, " samples, got N = ", n));
  }
  std::vector<int64_t> counts(static_cast<size_t>(k), 0);
  for (int64_t label : labels) ++counts[static_cast<size_t>(label)];
  for (int64_t c = 0; c < k; ++c) {
    if (counts[static_cast<size_t>(c)] == 0) {
      return absl::InvalidArgumentError(absl::StrCat("labels: class ", c, " has no samples (num_classes = ", k, ")"));
    }
  }
  const int max_iterations = options.max_iterations > 0 ? options.max_iterations : kDefaultMaxIterations;
  const double tolerance = options.gradient_tolerance > 0 ? options.gradient_tolerance : kDefaultGradientTolerance;

  Objective objective(features, labels, k, options.l2);
  RETURN_IF_ERROR(objective.Init());
  ASSIGN_OR_RETURN(const Outcome outcome, Minimize(objective, max_iterations, tolerance, options.l2 == 0, options.cancelled));
  const std::vector<double>& theta = outcome.last.theta;
  const double grad_norm = outcome.last.GradientNorm();
  MaxLikelihoodResult result;
  result.model = objective.ToModel(theta);
  result.model.priors.resize(static_cast<size_t>(k));
  for (int64_t c = 0; c < k; ++c) {
    result.model.priors[static_cast<size_t>(c)] =
        static_cast<double>(counts[static_cast<size_t>(c)]) / static_cast<double>(n);
  }
  result.iterations = outcome.iterations;
  result.gradient_norm = grad_norm;
  result.objective = outcome.last.f;
  result.converged = grad_norm <= tolerance;
  result.message = result.converged ? absl::StrFormat("converged: gradient norm %.3g <= gradient_tolerance %.3g "
                                                      "after %d iterations",
                                                      grad_norm, tolerance, outcome.iterations)
                                    : outcome.stop_reason;
  return result;
}

}  // namespace primserve
