// Toolkit calls (MATH.md sections 4, 7 and 9): the embedding-dimension bound, parameter
// initialisation with exactly the scheme's variance, and ChildTuning gradient masks.
//
// Shapes: InitializeParameters returns a tensor of `shape` (rank 1..5, PyTorch layout: dense
// [out, in], convolution [out, in, *kernel]). ChildTuningMask keeps the gradient's shape; a
// TASK_DRIVEN Fisher tensor has that shape too.
//
// Randomness: Philox4x32-10 streams (core/counter_random.h) keyed by `seed` and filled in fixed
// blocks of 16384 elements, so a seed gives the same bytes on every machine and for any number
// of threads; blocks are filled in parallel for large tensors.
//
// Example:
//   ASSIGN_OR_RETURN(EmbeddingBound bound, EmbeddingDimension(100000));   // 95.9027, 96
//   InitOptions init;
//   init.shape = {768, 3072};                      // [out, in]: fan_in 3072, fan_out 768
//   init.distribution = InitDistribution::kTruncatedNormal;
//   init.scheme = InitScheme::kXavier;
//   init.seed = 42;
//   ASSIGN_OR_RETURN(InitResult weights, InitializeParameters(init));
//   ChildTuningOptions mask;
//   mask.keep_probability = 0.3;
//   mask.rescale = true;
//   mask.seed = step;                              // TASK_FREE: a fresh mask per step
//   ASSIGN_OR_RETURN(ChildTuningResult masked, ChildTuningMask(std::move(gradient), mask));
#ifndef PRIMSERVE_CORE_TOOLKIT_H_
#define PRIMSERVE_CORE_TOOLKIT_H_

#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "core/tensor.h"

namespace primserve {

// ---- Embedding dimension (archive 8711) -------------------------------------------------------

inline constexpr double kDefaultEmbeddingCoefficient = 8.33;

struct EmbeddingBound {
  double bound = 0;       // coefficient * ln(vocab_size).
  int64_t dimension = 0;  // ceil(bound).
};

// n > coefficient * ln N. Errors: INVALID_ARGUMENT for vocab_size < 2, a coefficient that is not
// finite and > 0, or a bound too large for an int64 dimension.
absl::StatusOr<EmbeddingBound> EmbeddingDimension(int64_t vocab_size,
                                                  double coefficient = kDefaultEmbeddingCoefficient);

// ---- Initialisation (archive 8620) ------------------------------------------------------------

// Variance of N(0, 1) truncated to [-2, 2]: 1 - 4 phi(2) / (2 Phi(2) - 1).
inline constexpr double kTruncatedNormalVariance = 0.7737413035499232;
// 1 / sqrt(kTruncatedNormalVariance): the factor that restores variance s^2 after the cut.
inline constexpr double kTruncatedNormalRescale = 1.1368472343385565;
inline constexpr int64_t kMaxInitRank = 5;

enum class InitDistribution {
  kNormal,           // N(0, s^2).
  kUniform,          // U[-sqrt(3) s, sqrt(3) s].
  kTruncatedNormal,  // N(0, 1) cut at +-2, times s / sqrt(gamma): variance s^2, |x| <= 2.27 s.
};

enum class InitScheme {
  kLecun,   // s^2 = 1 / fan_in.
  kHe,      // s^2 = 2 / fan_in.
  kXavier,  // s^2 = 2 / (fan_in + fan_out).
  kStddev,  // s = stddev.
};

struct InitOptions {
  Shape shape;  // Rank 1..5, every extent >= 1.
  InitDistribution distribution = InitDistribution::kNormal;
  InitScheme scheme = InitScheme::kLecun;
  double stddev = 0;   // kStddev only: finite, in (0, kMaxInitStddev]; must stay 0 otherwise.
  int64_t fan_in = 0;  // 0: inferred from the shape (rank >= 2); must stay 0 with kStddev.
  int64_t fan_out = 0;
  uint64_t seed = 0;
  int64_t max_elements = kDefaultMaxElements;
  // Polled between blocks; true abandons the call with CANCELLED. Thread-safe; may be empty.
  std::function<bool()> cancelled;
};

// Largest stddev whose samples stay finite in float32 (|z| < 12.01 for every normal drawn).
inline constexpr double kMaxInitStddev = 2e37;

struct Fans {
  int64_t fan_in = 0;
  int64_t fan_out = 0;
};

// PyTorch's _calculate_fan_in_and_fan_out: receptive field r = prod(shape[2:]), fan_in =
// shape[1] r, fan_out = shape[0] r. INVALID_ARGUMENT for rank < 2 (naming `shape`).
// Precondition: every extent >= 1 and the product fits int64.
absl::StatusOr<Fans> InferFans(const Shape& shape);

struct InitResult {
  Tensor parameters;
  double stddev = 0;  // The target s.
  Fans fans;          // Used by the scheme (given or inferred); zeros for kStddev.
};

// Errors: INVALID_ARGUMENT naming the field (rank outside 1..5, an extent < 1, negative fans,
// fans needed but not inferable from a rank-1 shape, stddev not finite and in (0, 2e37] with
// kStddev, stddev or fans given to a scheme that does not read them); RESOURCE_EXHAUSTED above
// max_elements (checked before allocating); CANCELLED when `cancelled` says so.
absl::StatusOr<InitResult> InitializeParameters(const InitOptions& options);

// ---- ChildTuning (archive 8764) ---------------------------------------------------------------

enum class ChildTuningMode {
  kTaskFree,    // ChildTuning-F: M_i ~ Bernoulli(p), drawn from the seed.
  kTaskDriven,  // ChildTuning-D: M_i = 1 for the top fraction p of the Fisher values.
};

struct ChildTuningOptions {
  ChildTuningMode mode = ChildTuningMode::kTaskFree;
  double keep_probability = 0;    // p in (0, 1].
  bool rescale = false;           // Divide kept gradients by p (the article); false: the official code.
  uint64_t seed = 0;              // kTaskFree only.
  const Tensor* fisher = nullptr; // kTaskDriven only: the gradient's shape, finite, >= 0.
  std::function<bool()> cancelled;
};

struct ChildTuningResult {
  Tensor gradient;           // g M (or g M / p with rescale), the input's shape.
  double kept_fraction = 0;  // sum(M) / n.
};

// Masks `gradient` in place and returns it (pass an rvalue to avoid a copy).
// kTaskFree: M_i = [w_i < round(p 2^32)] with w_i word i of the kChildTuningMask stream: each
// element is kept with probability p (to 2^-32), independently, a new mask for each seed.
// kTaskDriven: with k the smallest count such that k / n >= p and t the k-th largest Fisher
// value, M_i = [F_i >= t]: the kept fraction is >= p and the kept elements are exactly those
// with the largest Fisher values (ties at t are all kept).
// Errors: INVALID_ARGUMENT naming the field (an empty or non-finite gradient, p outside (0, 1],
// a missing / misshapen / non-finite / negative Fisher tensor for kTaskDriven, a Fisher tensor
// for kTaskFree, "keep_probability" when rescale takes a kept g / p past float32's range);
// CANCELLED when `cancelled` says so.
absl::StatusOr<ChildTuningResult> ChildTuningMask(Tensor gradient, const ChildTuningOptions& options);

}  // namespace primserve

#endif  // PRIMSERVE_CORE_TOOLKIT_H_
