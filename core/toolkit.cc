#include "core/toolkit.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/counter_random.h"
#include "core/number_format.h"
#include "core/parallel.h"
#include "core/status_macros.h"

namespace primserve {
namespace {

// Below this many elements a call stays on the calling thread: forking a team costs more.
constexpr int64_t kParallelMinElements = int64_t{1} << 16;

absl::Status Cancelled() { return absl::CancelledError("toolkit: cancelled by the caller"); }

// Runs fill(block, first_element, count) for every kRandomBlockElements block of n elements, in
// parallel for large n. A block's output depends only on its index, so the thread count never
// changes the result. `cancelled` is polled before each block.
absl::Status ForEachBlock(int64_t n, const std::function<bool()>& cancelled,
                          const std::function<void(int64_t, int64_t, int64_t)>& fill) {
  const int64_t blocks = (n + kRandomBlockElements - 1) / kRandomBlockElements;
  std::atomic<bool> stop{false};
  ParallelForRange(blocks, n >= kParallelMinElements, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      if (stop.load(std::memory_order_relaxed)) return;
      if (cancelled && cancelled()) {
        stop.store(true, std::memory_order_relaxed);
        return;
      }
      const int64_t first = b * kRandomBlockElements;
      fill(b, first, std::min(kRandomBlockElements, n - first));
    }
  });
  return stop.load() ? Cancelled() : absl::OkStatus();
}

absl::string_view SchemeName(InitScheme scheme) {
  switch (scheme) {
    case InitScheme::kLecun: return "LECUN";
    case InitScheme::kHe: return "HE";
    case InitScheme::kXavier: return "XAVIER";
    case InitScheme::kStddev: return "STDDEV";
  }
  return "?";
}

// Rank 1..5, extents >= 1, and the element count under the cap (RESOURCE_EXHAUSTED), without
// ever overflowing: the product is only formed while it stays below max_elements.
absl::StatusOr<int64_t> CheckInitShape(const Shape& shape, int64_t max_elements) {
  if (shape.empty() || static_cast<int64_t>(shape.size()) > kMaxInitRank) {
    return absl::InvalidArgumentError(absl::StrCat("shape: expected rank 1 to ", kMaxInitRank, ", got rank ",
                                                   shape.size(), " (shape ", ShapeToString(shape), ")"));
  }
  for (size_t axis = 0; axis < shape.size(); ++axis) {
    if (shape[axis] < 1) {
      return absl::InvalidArgumentError(absl::StrCat("shape[", axis, "]: expected an extent >= 1, got ",
                                                     shape[axis], " (shape ", ShapeToString(shape), ")"));
    }
  }
  int64_t count = 1;
  double magnitude = 1;  // For the message only.
  bool over = false;
  for (int64_t extent : shape) {
    magnitude *= static_cast<double>(extent);
    if (over || count > max_elements / extent) {
      over = true;
    } else {
      count *= extent;
    }
  }
  if (over) {
    return absl::ResourceExhaustedError(absl::StrCat("shape: ", ShapeToString(shape), " has ", NumberToString(magnitude),
                                                     " elements, above the limit of ", max_elements));
  }
  return count;
}

absl::Status CheckFan(int64_t fan, absl::string_view field) {
  if (fan >= 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": expected an integer >= 1 (0: inferred from the shape), got ", fan));
}

// The fans the scheme reads, given or inferred; s from them (or `stddev`).
absl::StatusOr<std::pair<double, Fans>> SchemeStddev(const InitOptions& options) {
  const absl::string_view scheme = SchemeName(options.scheme);
  if (options.scheme == InitScheme::kStddev) {
    if (options.fan_in != 0 || options.fan_out != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(options.fan_in != 0 ? "fan_in" : "fan_out", ": not used by scheme STDDEV (expected 0), got ",
                       options.fan_in != 0 ? options.fan_in : options.fan_out));
    }
    // !(x > 0) also rejects NaN.
    if (!(options.stddev > 0) || !(options.stddev <= kMaxInitStddev)) {
      return absl::InvalidArgumentError(absl::StrCat("stddev: expected a finite number in (0, ", kMaxInitStddev,
                                                     "] with scheme STDDEV, got ", NumberToString(options.stddev)));
    }
    return std::make_pair(options.stddev, Fans());
  }
  if (options.stddev != 0) {
    return absl::InvalidArgumentError(absl::StrCat("stddev: only read by scheme STDDEV (expected 0 with ", scheme,
                                                   "), got ", NumberToString(options.stddev)));
  }
  RETURN_IF_ERROR(CheckFan(options.fan_in, "fan_in"));
  RETURN_IF_ERROR(CheckFan(options.fan_out, "fan_out"));
  Fans fans{options.fan_in, options.fan_out};
  const bool needs_out = options.scheme == InitScheme::kXavier;
  if (options.shape.size() >= 2) {
    ASSIGN_OR_RETURN(const Fans inferred, InferFans(options.shape));
    if (fans.fan_in == 0) fans.fan_in = inferred.fan_in;
    if (fans.fan_out == 0) fans.fan_out = inferred.fan_out;
  }
  // Only a rank-1 shape leaves a fan at 0 here: PyTorch refuses to infer fans from it.
  const auto missing = [&](absl::string_view field) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": scheme ", scheme, " needs it and the rank-1 shape ", ShapeToString(options.shape),
        " does not give it (fans come from [out, in, *kernel], rank >= 2): expected an integer >= 1, got 0"));
  };
  if (fans.fan_in == 0) return missing("fan_in");
  if (needs_out && fans.fan_out == 0) return missing("fan_out");
  const double fan_in = static_cast<double>(fans.fan_in);
  double variance = 0;
  switch (options.scheme) {
    case InitScheme::kLecun: variance = 1.0 / fan_in; break;
    case InitScheme::kHe: variance = 2.0 / fan_in; break;
    case InitScheme::kXavier: variance = 2.0 / (fan_in + static_cast<double>(fans.fan_out)); break;
    case InitScheme::kStddev: break;  // Handled above.
  }
  return std::make_pair(std::sqrt(variance), fans);
}

// The smallest k in [1, n] with k / n >= p, compared in double exactly as the caller will see
// kept_fraction (p * n itself may round up past an integer: 0.3 * 10 = 3.0000000000000004).
int64_t KeepCount(double p, int64_t n) {
  const double dn = static_cast<double>(n);
  int64_t k = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(p * dn)), 1, n);
  while (k > 1 && static_cast<double>(k - 1) / dn >= p) --k;
  while (k < n && static_cast<double>(k) / dn < p) ++k;
  return k;
}

absl::Status CheckFisher(const Tensor& gradient, const ChildTuningOptions& options) {
  if (options.mode == ChildTuningMode::kTaskFree) {
    if (options.fisher == nullptr) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("fisher: only read by mode TASK_DRIVEN, got a tensor of shape ",
                                                   ShapeToString(options.fisher->shape), " with TASK_FREE"));
  }
  if (options.fisher == nullptr) {
    return absl::InvalidArgumentError("fisher: required with mode TASK_DRIVEN, got no tensor");
  }
  const Tensor& fisher = *options.fisher;
  if (fisher.shape != gradient.shape) {
    return absl::InvalidArgumentError(absl::StrCat("fisher.shape: expected ", ShapeToString(gradient.shape),
                                                   " (the gradient's shape), got ", ShapeToString(fisher.shape)));
  }
  RETURN_IF_ERROR(CheckFinite(fisher.values, "fisher"));
  for (size_t i = 0; i < fisher.values.size(); ++i) {
    if (fisher.values[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "fisher[", i, "]: expected a value >= 0 (a mean of squared gradients), got ", NumberToString(fisher.values[i])));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<EmbeddingBound> EmbeddingDimension(int64_t vocab_size, double coefficient) {
  if (vocab_size < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("vocab_size: expected an integer >= 2 (ln N must be > 0), got ", vocab_size));
  }
  if (!std::isfinite(coefficient) || !(coefficient > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "coefficient: expected a finite number > 0 (0 on the wire means ", kDefaultEmbeddingCoefficient, "), got ",
        coefficient));
  }
  EmbeddingBound result;
  result.bound = coefficient * std::log(static_cast<double>(vocab_size));
  // 2^63 as a double: ceil(bound) must convert to int64 without overflow.
  if (!(result.bound < 0x1p63)) {
    return absl::InvalidArgumentError(absl::StrCat("coefficient: coefficient * ln(vocab_size) = ", result.bound,
                                                   " does not fit an int64 dimension; expected a smaller coefficient, got ",
                                                   coefficient));
  }
  result.dimension = static_cast<int64_t>(std::ceil(result.bound));
  return result;
}

absl::StatusOr<Fans> InferFans(const Shape& shape) {
  if (shape.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat("shape: fans need rank >= 2 ([out, in, *kernel]), got ",
                                                   ShapeToString(shape)));
  }
  int64_t receptive_field = 1;
  for (size_t axis = 2; axis < shape.size(); ++axis) receptive_field *= shape[axis];
  return Fans{shape[1] * receptive_field, shape[0] * receptive_field};
}

absl::StatusOr<InitResult> InitializeParameters(const InitOptions& options) {
  ASSIGN_OR_RETURN(const int64_t n, CheckInitShape(options.shape, options.max_elements));
  ASSIGN_OR_RETURN(const auto stddev_fans, SchemeStddev(options));
  InitResult result;
  result.stddev = stddev_fans.first;
  result.fans = stddev_fans.second;
  result.parameters = Tensor::Zeros(options.shape);
  float* out = result.parameters.values.data();
  const double s = result.stddev;
  const uint64_t seed = options.seed;
  constexpr RandomStream kStream = RandomStream::kInitialize;
  std::function<void(int64_t, int64_t, int64_t)> fill;
  switch (options.distribution) {
    case InitDistribution::kNormal:
      fill = [&](int64_t b, int64_t first, int64_t count) {
        NormalBlock(seed, kStream, b, s, /*truncate=*/false, out + first, count);
      };
      break;
    case InitDistribution::kUniform:
      // U[-a, a] has variance a^2 / 3: a = sqrt(3) s.
      fill = [&](int64_t b, int64_t first, int64_t count) {
        UniformBlock(seed, kStream, b, std::sqrt(3.0) * s, out + first, count);
      };
      break;
    case InitDistribution::kTruncatedNormal:
      // The cut at +-2 leaves variance gamma; scaling by 1/sqrt(gamma) restores s^2 exactly.
      fill = [&](int64_t b, int64_t first, int64_t count) {
        NormalBlock(seed, kStream, b, s * kTruncatedNormalRescale, /*truncate=*/true, out + first, count);
      };
      break;
  }
  RETURN_IF_ERROR(ForEachBlock(n, options.cancelled, fill));
  return result;
}

absl::StatusOr<ChildTuningResult> ChildTuningMask(Tensor gradient, const ChildTuningOptions& options) {
  const int64_t n = static_cast<int64_t>(gradient.values.size());
  if (n == 0) {
    return absl::InvalidArgumentError(absl::StrCat("gradient: expected at least one element, got shape ",
                                                   ShapeToString(gradient.shape)));
  }
  RETURN_IF_ERROR(CheckFinite(gradient.values, "gradient"));
  const double p = options.keep_probability;
  if (!(p > 0 && p <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("keep_probability: expected a number in (0, 1], got ", NumberToString(p)));
  }
  RETURN_IF_ERROR(CheckFisher(gradient, options));
  if (options.cancelled && options.cancelled()) return Cancelled();

  float* g = gradient.values.data();
  // g M / p: the article's unbiased form (E[M] = p); g M: the official code's.
  const auto keep = [&](float value) {
    return options.rescale ? static_cast<float>(static_cast<double>(value) / p) : value;
  };
  std::atomic<int64_t> kept{0};
  if (options.mode == ChildTuningMode::kTaskFree) {
    // P(w < t) = t / 2^32 for a uniform 32-bit word w: p to within 2^-33. p = 1 gives t = 2^32.
    const uint64_t threshold = static_cast<uint64_t>(std::nearbyint(p * 0x1p32));
    RETURN_IF_ERROR(ForEachBlock(n, options.cancelled, [&](int64_t b, int64_t first, int64_t count) {
      std::vector<uint32_t> words(static_cast<size_t>(count));
      WordBlock(options.seed, RandomStream::kChildTuningMask, b, words.data(), count);
      int64_t block_kept = 0;
      for (int64_t i = 0; i < count; ++i) {
        const bool m = words[static_cast<size_t>(i)] < threshold;
        block_kept += m;
        g[first + i] = m ? keep(g[first + i]) : 0.0f;
      }
      kept.fetch_add(block_kept, std::memory_order_relaxed);
    }));
  } else {
    // Threshold t = the k-th largest Fisher value (the (1 - p) quantile); keep F_i >= t.
    const std::vector<float>& fisher = options.fisher->values;
    std::vector<float> order = fisher;
    const int64_t k = KeepCount(p, n);
    std::nth_element(order.begin(), order.begin() + (k - 1), order.end(), std::greater<float>());
    const float threshold = order[static_cast<size_t>(k - 1)];
    if (options.cancelled && options.cancelled()) return Cancelled();
    ParallelForRange(n, n >= kParallelMinElements, [&](int64_t begin, int64_t end) {
      int64_t chunk_kept = 0;
      for (int64_t i = begin; i < end; ++i) {
        const bool m = fisher[static_cast<size_t>(i)] >= threshold;
        chunk_kept += m;
        g[i] = m ? keep(g[i]) : 0.0f;
      }
      kept.fetch_add(chunk_kept, std::memory_order_relaxed);
    });
  }
  if (options.rescale) {
    // g / p passes float's range for a tiny p or a huge g (1e30 / 1e-9): refused, not +-Inf.
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(g[i])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "keep_probability: rescale divides kept gradients by ", p, ", which takes gradient[", i,
            "] past float32's range; use a larger keep_probability or rescale = false"));
      }
    }
  }
  ChildTuningResult result;
  result.kept_fraction = static_cast<double>(kept.load()) / static_cast<double>(n);
  result.gradient = std::move(gradient);
  return result;
}

}  // namespace primserve
