// Analytic logistic regression (MATH.md section 5; Su Jianlin, kexue.fm archive 8578): the
// closed-form fit from class-conditional Gaussians with one shared covariance, computed from
// additive sufficient statistics (one pass, streamable, mergeable across shards), a
// maximum-likelihood reference solver (multinomial logistic regression with L2, L-BFGS), and
// prediction with a stable softmax.
//
// Shapes (row-major float32 unless said otherwise):
//   features [num_samples, dim]    labels: num_samples int64 values in [0, num_classes)
//   SufficientStatistics: counts [K], class_sums [K, dim], scatter [dim, dim] (double)
//   LogisticModel: weights [K, dim], bias [K]; logits = x weights^T + bias, p = softmax(logits)
//   Prediction: probabilities [M, K], labels [M]
//
// The model always has K rows (also for K = 2). Softmax weights are defined up to adding one
// vector to every row (and one constant to every bias); compare predictions or logit
// differences, never raw rows.
//
// Field names in error messages ("features", "labels", "num_classes", "ridge", "l2",
// "max_iterations", "gradient_tolerance", "model.weights", "statistics.counts", ...) are the
// names the LogisticRegression RPCs use, so a server can pass messages through unchanged.
//
// Example:
//   ASSIGN_OR_RETURN(SufficientStatistics stats, ComputeStatistics(features, labels, 0));
//   ASSIGN_OR_RETURN(LogisticModel model, FitAnalytic(stats, AnalyticFitOptions{}));
//   ASSIGN_OR_RETURN(Prediction prediction, Predict(model, test_features));
//   ASSIGN_OR_RETURN(FitQuality quality, Evaluate(model, features, labels));
#ifndef PRIMSERVE_CORE_LOGISTIC_REGRESSION_H_
#define PRIMSERVE_CORE_LOGISTIC_REGRESSION_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/tensor.h"

namespace primserve {

// ---------------------------------------------------------------------------------------------
// Sufficient statistics.
// ---------------------------------------------------------------------------------------------

// The additive statistics of a labelled data set, kept about one reference point per class
// (`class_shifts`, a_c) for numerical stability (MATH.md: "work with centred data"):
//   counts[c]            N_c, the number of samples with label c
//   class_shifts[c, j]   a_cj, the reference point of class c
//   class_sums[c, j]     sum over samples i of class c of (x_ij - a_cj)
//   scatter[j, k]        sum over all samples i of (x_ij - a_{y_i} j) (x_ik - a_{y_i} k)
//                        (symmetric; each row centred on its own class's reference point)
// Centring each row on its class's reference point keeps the float32 products small even when
// the class means sit far from the origin or far from each other, so neither the pooled
// within-class covariance (scatter - sum_c T_c^T T_c / N_c) nor the total covariance (that plus
// the between-class part, formed from the class means in double) cancels catastrophically.
// a_c is fixed by the first data of class c that reach the statistics (the mean of its first
// rows there, see ComputeStatistics); a class without samples has a_c = 0 and is replaced on
// its first merge.
//
// A default-constructed value (num_classes = dim = 0, no vectors) is the empty statistic:
// merging anything into it yields that thing.
//
// Memory: O(dim^2 + num_classes * dim), independent of the number of samples.
struct SufficientStatistics {
  int64_t num_classes = 0;
  int64_t dim = 0;
  std::vector<int64_t> counts;       // [num_classes]
  std::vector<double> class_shifts;  // [num_classes, dim] row-major
  std::vector<double> class_sums;    // [num_classes, dim] row-major
  std::vector<double> scatter;       // [dim, dim] row-major, symmetric

  // N = sum of counts.
  int64_t num_samples() const;
  bool empty() const { return num_samples() == 0; }

  // Adds `other` into *this (counts, sums and scatter add). Each class c of `other` is first
  // re-expressed about this->class_shifts[c] (exact in real arithmetic: with
  // delta_c = other.a_c - a_c and T_c = other.class_sums[c], scatter' = scatter +
  // sum_c (delta_c^T T_c + T_c^T delta_c + N_c delta_c^T delta_c), class_sums'[c] =
  // class_sums[c] + N_c delta_c). In double this costs a few roundings per entry: each merged
  // entry has relative error <= ~4 * 2^-53 of the magnitudes added, far below the float32
  // precision of the data. When num_classes differ (shards that inferred K from their own
  // labels), the result has the larger K; missing classes count zero. Merging into an empty
  // statistic copies `other`.
  // Errors: INVALID_ARGUMENT (dims differ: "statistics.dim"; or `other` fails
  // ValidateStatistics).
  absl::Status Merge(const SufficientStatistics& other);
};

// Structural checks for statistics that arrive from outside (e.g. a FitFromStatistics RPC):
// vector sizes match num_classes and dim, num_classes >= 0, dim >= 0, counts >= 0, every value
// finite, scatter diagonal >= 0. INVALID_ARGUMENT naming "statistics.<field>", expected and
// actual values.
absl::Status ValidateStatistics(const SufficientStatistics& statistics);

// The statistics of `features` [N, dim] with `labels` (N values).
// num_classes > 0 fixes K (labels must lie in [0, K)); 0 infers K = max label + 1.
// a_c = the mean of the first min(N_c, 256) rows of class c, rounded to float32. Each row is
// centred in float32 (x - a_c, one rounding), and over blocks of 256 centred rows the d x d
// product block^T block runs on a oneDNN matmul (float32) and the per-class sums in float32;
// both are added to double accumulators once per block. Error bound: every scatter entry has
// absolute error <= ~256 * 2^-24 * sum_i |xc_ij| |xc_ik| (xc the centred rows), typically
// sqrt(256) * 2^-24 ~ 1e-6 of that sum, and likewise for the class sums; the data themselves
// are float32. (Measured: exactly collinear features give a reciprocal condition ~1e-8.)
// Results differ from a single-thread evaluation only by rounding (block/thread order).
// Errors: INVALID_ARGUMENT for features not rank 2 ("features.shape"), dim = 0, labels size
// != N ("labels"), a label < 0 or >= num_classes ("labels[i]"), num_classes < 0, NaN/Inf
// features ("features"); RESOURCE_EXHAUSTED when K x dim or dim x dim exceeds
// kDefaultMaxElements (checked before allocating), or from oneDNN; INTERNAL from oneDNN. N = 0 is allowed (an
// empty statistic with the given K and dim), so empty stream chunks are harmless.
absl::StatusOr<SufficientStatistics> ComputeStatistics(const Tensor& features,
                                                       absl::Span<const int64_t> labels,
                                                       int64_t num_classes);

// Streaming: ComputeStatistics(features, labels, num_classes) merged into *statistics.
// Peak extra memory is one more statistic (O(dim^2 + K dim)) plus a block buffer per thread.
// Errors: those of ComputeStatistics and Merge (a chunk whose width differs from the
// accumulated dim: INVALID_ARGUMENT on "features.shape").
absl::Status AccumulateStatistics(const Tensor& features, absl::Span<const int64_t> labels,
                                  int64_t num_classes, SufficientStatistics* statistics);

// ---------------------------------------------------------------------------------------------
// The analytic (closed-form) fit.
// ---------------------------------------------------------------------------------------------

enum class Covariance {
  // Sigma = Sigma_total + mu^T mu - sum_c p_c mu_c^T mu_c (1/N normalisation): the pooled
  // within-class covariance (LDA's MLE); the article's derivation. The default.
  kPooledWithin,
  // Sigma = the covariance of all data (1/N); the article's binary experiment script.
  kTotal,
};

struct AnalyticFitOptions {
  Covariance covariance = Covariance::kPooledWithin;
  // Sigma + ridge * I (ridge >= 0, in squared feature units). A documented extension, not in
  // the article: makes a singular Sigma (constant or collinear features, dim > N) solvable.
  double ridge = 0.0;
};

struct LogisticModel {
  int64_t num_classes = 0;
  int64_t dim = 0;
  std::vector<float> weights;  // [num_classes, dim] row-major
  std::vector<float> bias;     // [num_classes]
  std::vector<double> priors;  // [num_classes] p_c = N_c / N (empty for models given inline)
};

// Structural checks for a model that arrives from outside: num_classes >= 2, dim >= 1, sizes,
// finite values. INVALID_ARGUMENT naming "model.<field>". `priors` may be empty.
absl::Status ValidateModel(const LogisticModel& model);

// The closed form of MATH.md section 5, in its centred equivalent form:
//   w_c = (mu_c - mu) Sigma^-1,   b_c = ln p_c - 1/2 (mu_c - mu) Sigma^-1 (mu_c - mu)^T - mu w_c^T
// (mu the overall mean). This differs from w_c = mu_c Sigma^-1, b_c = ln p_c - 1/2 mu_c Sigma^-1
// mu_c^T only by the shared shift mu Sigma^-1 in every row and the shared constant
// 1/2 mu Sigma^-1 mu^T in every bias, so logits differ by a per-sample constant and predictions
// and logit differences are identical; the centred form keeps the solve away from the
// cancellation of large means. The rows satisfy sum_c p_c w_c = 0.
// Sigma (+ ridge I) is scaled to unit diagonal and factored by Cholesky (Eigen LLT); the K
// right-hand sides are solved with the factor, never with an explicit inverse.
// Errors:
//   INVALID_ARGUMENT: statistics fail ValidateStatistics; dim = 0 ("features.shape"); fewer
//     than two classes ("num_classes"); N < K or a class without samples ("labels"); ridge < 0
//     or not finite ("ridge").
//   FAILED_PRECONDITION: Sigma + ridge I is singular, not positive definite or too
//     ill-conditioned for the float32 statistics (reciprocal condition estimate of the
//     unit-diagonal matrix below kMinCovarianceRcond), e.g. a constant feature, collinear
//     features or dim > N; the message names the feature or the condition estimate and
//     suggests `ridge`. Never NaN weights.
absl::StatusOr<LogisticModel> FitAnalytic(const SufficientStatistics& statistics,
                                          const AnalyticFitOptions& options);

// Sigma (1/N normalisation), [dim, dim] row-major, as FitAnalytic uses it (before any ridge):
// POOLED_WITHIN = (scatter - sum_c T_c^T T_c / N_c) / N, TOTAL = that + sum_c p_c (mu_c - mu)^T
// (mu_c - mu). Classes without samples are ignored.
// Errors: INVALID_ARGUMENT for statistics failing ValidateStatistics or holding no samples.
absl::StatusOr<std::vector<double>> ComputeCovariance(const SufficientStatistics& statistics,
                                                      Covariance covariance);

// Reciprocal 1-norm condition estimate of the unit-diagonal covariance below which FitAnalytic
// refuses to solve. The scatter carries float32 rounding: exactly collinear features measure
// rcond ~1e-8..1e-9 instead of 0, so directions below this bound are dominated by rounding
// (at the bound, weights are still good to ~1%), and solving along them would return huge,
// meaningless weights. A ridge lifts the bound.
inline constexpr double kMinCovarianceRcond = 1e-6;

// ---------------------------------------------------------------------------------------------
// Maximum-likelihood reference solver.
// ---------------------------------------------------------------------------------------------

struct MaxLikelihoodOptions {
  // Objective: mean over samples of -ln softmax(x W^T + b)_y  +  l2 / 2 * ||W||_F^2
  // (bias not penalised). l2 >= 0; l2 = 0 is plain maximum likelihood.
  double l2 = 0.0;
  // L-BFGS iterations; 0 means kDefaultMaxIterations.
  int max_iterations = 0;
  // Stop when the Euclidean norm of the gradient with respect to the standardized parameters
  // (features centred and scaled to unit variance internally, so the tolerance does not depend
  // on feature units) is <= this; 0 means kDefaultGradientTolerance. The float32 matmuls put a
  // floor of roughly 1e-7 under reachable values.
  double gradient_tolerance = 0.0;
  // Polled before every L-BFGS iteration; true ends the fit with CANCELLED (e.g. the call's
  // deadline passed or its client went away). Null: never cancelled.
  std::function<bool()> cancelled;
};

inline constexpr int kDefaultMaxIterations = 500;
inline constexpr double kDefaultGradientTolerance = 1e-5;

struct MaxLikelihoodResult {
  LogisticModel model;       // priors = class frequencies of the training data
  int iterations = 0;        // L-BFGS iterations taken
  double gradient_norm = 0;  // final gradient norm (standardized parameters, see above)
  double objective = 0;      // final objective value (mean loss + penalty)
  bool converged = false;    // gradient_norm <= gradient_tolerance
  std::string message;       // why it stopped, e.g. "max_iterations (500) reached ..."
};

// Multinomial logistic regression by L-BFGS (memory 10) with a backtracking line search; each
// objective evaluation is one pass over blocks of centred, scaled rows: logits on oneDNN
// matmul, a max-subtracted log-sum-exp, and the gradient G^T X on oneDNN matmul accumulated in
// double per block.
// Non-convergence policy:
//   * max_iterations reached (or the line search stalls at float32 noise) above the tolerance:
//     OK with converged = false and `message` saying so; the model is the last iterate.
//   * l2 = 0 and the training data are linearly separable (some iterate classifies every
//     sample correctly with a strict margin, which proves the maximum-likelihood weights do
//     not exist: the loss keeps falling as ||W|| grows): FAILED_PRECONDITION suggesting
//     l2 > 0 or the analytic solver. No model is returned.
// Errors: the input errors of ComputeStatistics; fewer than two classes ("num_classes"), a
// class without samples or N < K ("labels"); l2 < 0 or not finite ("l2"); max_iterations < 0
// ("max_iterations"); gradient_tolerance < 0 or not finite ("gradient_tolerance").
absl::StatusOr<MaxLikelihoodResult> FitMaxLikelihood(const Tensor& features,
                                                     absl::Span<const int64_t> labels,
                                                     int64_t num_classes,
                                                     const MaxLikelihoodOptions& options);

// ---------------------------------------------------------------------------------------------
// Prediction and fit quality.
// ---------------------------------------------------------------------------------------------

struct Prediction {
  Tensor probabilities;         // [M, K], rows sum to 1 (max-subtracted softmax)
  std::vector<int64_t> labels;  // [M] argmax (lowest index on ties)
};

// Probabilities and argmax labels for `features` [M, dim]; M = 0 gives empty results.
// Logits on oneDNN matmul (blocks of rows).
// Errors: INVALID_ARGUMENT for a model failing ValidateModel, features not rank 2 or with
// dim != model.dim ("features.shape"), NaN/Inf features ("features").
absl::StatusOr<Prediction> Predict(const LogisticModel& model, const Tensor& features);

struct FitQuality {
  int64_t samples = 0;
  double accuracy = 0;  // fraction of argmax labels equal to `labels`
  double log_loss = 0;  // mean of -ln p(label | x), from log-softmax (no log(0))
};

// Accuracy and log-loss of `model` on labelled data (the fit report's training figures).
// Errors: those of Predict; labels size != M or a label outside [0, K) ("labels").
// M = 0: INVALID_ARGUMENT ("features": no samples).
absl::StatusOr<FitQuality> Evaluate(const LogisticModel& model, const Tensor& features,
                                    absl::Span<const int64_t> labels);

}  // namespace primserve

#endif  // PRIMSERVE_CORE_LOGISTIC_REGRESSION_H_
