// Sufficient statistics of analytic logistic regression (MATH.md section 5): per-class counts,
// per-class sums and the d x d scatter, each row centred on its class's reference point; the
// scatter on oneDNN matmul over blocks of rows, accumulated in double.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/dnnl_context.h"
#include "core/logistic_internal.h"
#include "core/logistic_regression.h"
#include "core/number_format.h"
#include "core/parallel.h"
#include "core/status_macros.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace primserve {
namespace logistic_internal {

absl::StatusOr<LabelledShape> ValidateLabelledFeatures(const Tensor& features,
                                                       absl::Span<const int64_t> labels,
                                                       int64_t num_classes) {
  if (features.rank() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("features.shape: expected rank 2 [num_samples, dim], got ",
                                                   ShapeToString(features.shape)));
  }
  ASSIGN_OR_RETURN(const int64_t elements, ElementCount(features.shape, "features.shape"));
  if (static_cast<int64_t>(features.values.size()) != elements) {
    return absl::InvalidArgumentError(absl::StrCat("features: shape ", ShapeToString(features.shape), " needs ",
                                                   elements, " values, got ", features.values.size()));
  }
  LabelledShape shape;
  shape.num_samples = features.dim(0);
  shape.dim = features.dim(1);
  if (shape.dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat("features.shape: expected dim >= 1 features per sample, got ",
                                                   ShapeToString(features.shape)));
  }
  if (static_cast<int64_t>(labels.size()) != shape.num_samples) {
    return absl::InvalidArgumentError(absl::StrCat("labels: expected one label per sample (", shape.num_samples,
                                                   " for features.shape ", ShapeToString(features.shape),
                                                   "), got ", labels.size()));
  }
  if (num_classes < 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_classes: expected >= 0 (0 = infer), got ", num_classes));
  }
  int64_t max_label = -1;
  size_t max_at = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    const int64_t label = labels[i];
    if (label < 0 || (num_classes > 0 && label >= num_classes)) {
      return absl::InvalidArgumentError(
          num_classes > 0 ? absl::StrCat("labels[", i, "]: expected a class in [0, ", num_classes, "), got ", label)
                          : absl::StrCat("labels[", i, "]: expected a class >= 0, got ", label));
    }
    if (label > max_label) {
      max_label = label;
      max_at = i;
    }
  }
  // Sizes are checked before anything of size K x dim or dim x dim is allocated. An inferred K
  // is the largest label + 1: a huge label is named (and never incremented past int64).
  if (num_classes == 0 && max_label >= kDefaultMaxElements / shape.dim) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "labels[", max_at, "]: class ", max_label, " makes num_classes (inferred: largest label + 1) x ", shape.dim,
        " features exceed the limit of ", kDefaultMaxElements, " statistics elements; labels must be 0..K-1"));
  }
  shape.num_classes = num_classes > 0 ? num_classes : max_label + 1;
  if (shape.num_classes > kDefaultMaxElements / shape.dim) {
    return absl::ResourceExhaustedError(absl::StrCat("num_classes: ", shape.num_classes, " classes x ", shape.dim,
                                                     " features exceed the limit of ", kDefaultMaxElements,
                                                     " statistics elements"));
  }
  if (shape.dim > kDefaultMaxElements / shape.dim) {
    return absl::ResourceExhaustedError(absl::StrCat("features.shape: dim = ", shape.dim, " needs a ", shape.dim,
                                                     " x ", shape.dim, " scatter matrix, above the limit of ",
                                                     kDefaultMaxElements, " elements"));
  }
  RETURN_IF_ERROR(CheckFinite(features.values, "features"));
  return shape;
}

void* ThreadContext::Scratch(const TileMatmul& matmul) {
  if (scratchpad.size() < matmul.scratchpad_bytes()) scratchpad.resize(matmul.scratchpad_bytes());
  return scratchpad.data();
}

int BlockThreads(int64_t num_blocks) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(ComputeThreads(), num_blocks)));
}

absl::Status ForEachBlock(int64_t num_blocks, std::vector<ThreadContext>* contexts,
                          const std::function<absl::Status(int thread, int64_t block)>& body) {
  const int threads = BlockThreads(num_blocks);
  contexts->resize(static_cast<size_t>(threads));
  RETURN_IF_ERROR(RunDnnl("logistic regression: stream", [&] {
    for (ThreadContext& context : *contexts) context.stream = dnnl::stream(DnnlEngine());
  }));
  std::vector<absl::Status> statuses(static_cast<size_t>(threads));
  std::atomic<bool> stop{false};
  auto run_range = [&](int thread, int team) {
    const int64_t begin = num_blocks * thread / team;
    const int64_t end = num_blocks * (thread + 1) / team;
    absl::Status& status = statuses[static_cast<size_t>(thread)];
    for (int64_t block = begin; block < end && status.ok(); ++block) {
      if (stop.load(std::memory_order_relaxed)) break;
      absl::Status body_status;
      status = RunDnnl("logistic regression", [&] { body_status = body(thread, block); });
      if (status.ok()) status = body_status;
      if (!status.ok()) stop.store(true);
    }
  };
#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    {
      // Each primitive runs on its calling thread here (see attention_softmax.cc): oneDNN sizes
      // its split by omp_get_max_threads(), a per-thread ICV.
      omp_set_num_threads(1);
      run_range(omp_get_thread_num(), omp_get_num_threads());
    }
  } else {
    run_range(0, 1);
  }
#else
  run_range(0, 1);
#endif
  for (const absl::Status& status : statuses) RETURN_IF_ERROR(status);
  return absl::OkStatus();
}

}  // namespace logistic_internal

namespace {

using logistic_internal::kBlockRows;
using logistic_internal::ThreadContext;

SufficientStatistics EmptyStatistics(int64_t num_classes, int64_t dim) {
  SufficientStatistics s;
  s.num_classes = num_classes;
  s.dim = dim;
  s.counts.assign(static_cast<size_t>(num_classes), 0);
  s.class_shifts.assign(static_cast<size_t>(num_classes * dim), 0.0);
  s.class_sums.assign(static_cast<size_t>(num_classes * dim), 0.0);
  s.scatter.assign(static_cast<size_t>(dim * dim), 0.0);
  return s;
}

// Reference point of each class: the mean of its first (up to) kShiftRows rows. Any point near
// the class's data works (the statistics are exact for any shift); this one costs a few hundred
// rows per class and leaves the centred values of the order of the within-class spread.
constexpr int64_t kShiftRows = 256;

void ComputeClassShifts(const Tensor& features, absl::Span<const int64_t> labels, SufficientStatistics* s) {
  const int64_t n = features.dim(0), d = s->dim, k = s->num_classes;
  std::vector<int64_t> taken(static_cast<size_t>(k), 0);
  int64_t classes_full = 0;
  for (int64_t i = 0; i < n && classes_full < k; ++i) {
    const int64_t c = labels[static_cast<size_t>(i)];
    int64_t& t = taken[static_cast<size_t>(c)];
    if (t == kShiftRows) continue;
    const float* x = features.values.data() + i * d;
    double* a = s->class_shifts.data() + c * d;
    for (int64_t j = 0; j < d; ++j) a[j] += x[j];
    if (++t == kShiftRows) ++classes_full;
  }
  for (int64_t c = 0; c < k; ++c) {
    const int64_t t = taken[static_cast<size_t>(c)];
    if (t == 0) continue;
    double* a = s->class_shifts.data() + c * d;
    // Rounded to float32 so the kernel centres in float32 (x - a_c, one rounding) and the class
    // sums and the scatter see the same centred values.
    for (int64_t j = 0; j < d; ++j) a[j] = static_cast<float>(a[j] / static_cast<double>(t));
  }
}

// One thread's partial sums and its block buffers.
struct StatisticsPartial {
  std::vector<double> class_sums;        // [K, d]
  std::vector<double> scatter;           // [d, d]
  std::vector<float> block;              // [kBlockRows, d] centred rows (zero padded)
  std::vector<float> product;            // [d, d] block^T block
  std::vector<float> block_class_sums;   // [K, d] this block's class sums
  std::vector<uint8_t> block_has_class;  // [K]
};

// Sample counts enter the fit as doubles: beyond 2^53 they would no longer be exact.
constexpr int64_t kMaxStatisticsSamples = int64_t{1} << 53;

}  // namespace

int64_t SufficientStatistics::num_samples() const {
  int64_t n = 0;
  for (int64_t c : counts) n += c;
  return n;
}

absl::Status ValidateStatistics(const SufficientStatistics& s) {
  if (s.num_classes < 0 || s.dim < 0) {
    return absl::InvalidArgumentError(absl::StrCat("statistics: expected num_classes >= 0 and dim >= 0, got ",
                                                   s.num_classes, " and ", s.dim));
  }
  // Sizes first: the expected vector sizes below must not overflow int64.
  if (s.dim > kDefaultMaxElements / std::max<int64_t>({1, s.num_classes, s.dim})) {
    return absl::ResourceExhaustedError(absl::StrCat("statistics: num_classes = ", s.num_classes, ", dim = ", s.dim,
                                                     " exceed the limit of ", kDefaultMaxElements, " elements"));
  }
  auto check_size = [](size_t actual, int64_t expected, absl::string_view field) -> absl::Status {
    if (static_cast<int64_t>(actual) != expected) {
      return absl::InvalidArgumentError(absl::StrCat("statistics.", field, ": expected ", expected,
                                                     " values, got ", actual));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(check_size(s.counts.size(), s.num_classes, "counts"));
  RETURN_IF_ERROR(check_size(s.class_shifts.size(), s.num_classes * s.dim, "class_shifts"));
  RETURN_IF_ERROR(check_size(s.class_sums.size(), s.num_classes * s.dim, "class_sums"));
  RETURN_IF_ERROR(check_size(s.scatter.size(), s.dim * s.dim, "scatter"));
  int64_t total = 0;
  for (size_t c = 0; c < s.counts.size(); ++c) {
    if (s.counts[c] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("statistics.counts[", c, "]: expected >= 0, got ", s.counts[c]));
    }
    if (s.counts[c] > kMaxStatisticsSamples - total) {
      return absl::InvalidArgumentError(absl::StrCat("statistics.counts: expected at most 2^53 samples in all (",
                                                     "counts are used as exact doubles), got more at counts[", c,
                                                     "] = ", s.counts[c]));
    }
    total += s.counts[c];
  }
  RETURN_IF_ERROR(CheckFinite(s.class_shifts, "statistics.class_shifts"));
  RETURN_IF_ERROR(CheckFinite(s.class_sums, "statistics.class_sums"));
  RETURN_IF_ERROR(CheckFinite(s.scatter, "statistics.scatter"));
  for (int64_t j = 0; j < s.dim; ++j) {
    const double v = s.scatter[static_cast<size_t>(j * s.dim + j)];
    if (v < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("statistics.scatter[", j * s.dim + j, "]: expected a diagonal entry >= 0, got ", NumberToString(v)));
    }
  }
  return absl::OkStatus();
}

absl::Status SufficientStatistics::Merge(const SufficientStatistics& other) {
  RETURN_IF_ERROR(ValidateStatistics(other));
  if (num_classes == 0 && dim == 0) {
    *this = other;
    return absl::OkStatus();
  }
  if (other.num_classes == 0 && other.dim == 0) return absl::OkStatus();
  // Both totals are <= 2^53 (validated), so this sum cannot overflow; the per-class sums below
  // are bounded by it.
  if (num_samples() + other.num_samples() > kMaxStatisticsSamples) {
    return absl::InvalidArgumentError(absl::StrCat("statistics.counts: merging ", other.num_samples(), " samples into ",
                                                   num_samples(), " exceeds 2^53 samples in all"));
  }
  if (other.dim != dim) {
    return absl::InvalidArgumentError(absl::StrCat("statistics.dim: cannot merge statistics of dim ", other.dim,
                                                   " into statistics of dim ", dim,
                                                   " (features.shape[1] differs between chunks or shards)"));
  }
  const int64_t d = dim;
  if (other.num_classes > num_classes) {
    // Widen: the new classes start empty (shift 0, replaced below by other's).
    counts.resize(static_cast<size_t>(other.num_classes), 0);
    class_shifts.resize(static_cast<size_t>(other.num_classes * d), 0.0);
    class_sums.resize(static_cast<size_t>(other.num_classes * d), 0.0);
    num_classes = other.num_classes;
  }
  std::vector<double> delta(static_cast<size_t>(d));
  for (int64_t c = 0; c < other.num_classes; ++c) {
    const int64_t n_other = other.counts[static_cast<size_t>(c)];
    if (n_other == 0) continue;
    double* a = class_shifts.data() + c * d;
    double* t = class_sums.data() + c * d;
    const double* b = other.class_shifts.data() + c * d;
    const double* u = other.class_sums.data() + c * d;
    if (counts[static_cast<size_t>(c)] == 0) {
      // Nothing of class c here yet (its sums and scatter share are zero): adopt other's
      // reference point, so nothing needs re-expressing.
      std::copy(b, b + d, a);
    }
    // Class c of `other` about our a_c: x - a = (x - b) + delta, delta = b - a. Then
    // T' = T + N delta, and sum (x-a)^T (x-a) = sum (x-b)^T (x-b) + delta^T T + T^T delta + N delta^T delta.
    const double nd = static_cast<double>(n_other);
    for (int64_t j = 0; j < d; ++j) delta[static_cast<size_t>(j)] = b[j] - a[j];
    for (int64_t j = 0; j < d; ++j) {
      const double dj = delta[static_cast<size_t>(j)];
      if (dj == 0 && u[j] == 0) continue;
      double* row = scatter.data() + j * d;
      for (int64_t k = 0; k < d; ++k) {
        const double dk = delta[static_cast<size_t>(k)];
        row[k] += dj * u[k] + u[j] * dk + nd * dj * dk;
      }
    }
    for (int64_t j = 0; j < d; ++j) t[j] += u[j] + nd * delta[static_cast<size_t>(j)];
    counts[static_cast<size_t>(c)] += n_other;
  }
  for (size_t i = 0; i < scatter.size(); ++i) scatter[i] += other.scatter[i];
  return absl::OkStatus();
}

absl::StatusOr<SufficientStatistics> ComputeStatistics(const Tensor& features, absl::Span<const int64_t> labels,
                                                       int64_t num_classes) {
  ASSIGN_OR_RETURN(const logistic_internal::LabelledShape shape,
                   logistic_internal::ValidateLabelledFeatures(features, labels, num_classes));
  const int64_t n = shape.num_samples, d = shape.dim, k = shape.num_classes;
  SufficientStatistics s = EmptyStatistics(k, d);
  if (n == 0) return s;
  for (int64_t label : labels) ++s.counts[static_cast<size_t>(label)];
  ComputeClassShifts(features, labels, &s);

  // block^T block for one block of rows: A = block^T (stored as the rows of block), B = block.
  MatmulShape mm;
  mm.m = d;
  mm.n = d;
  mm.k = kBlockRows;
  mm.lda = d;
  mm.ldb = d;
  mm.ldc = d;
  mm.a_transposed = true;
  ASSIGN_OR_RETURN(std::shared_ptr<const TileMatmul> matmul, TileMatmul::Get(mm));

  const int64_t num_blocks = (n + kBlockRows - 1) / kBlockRows;
  std::vector<StatisticsPartial> partials(static_cast<size_t>(logistic_internal::BlockThreads(num_blocks)));
  for (StatisticsPartial& p : partials) {
    p.class_sums.assign(static_cast<size_t>(k * d), 0.0);
    p.scatter.assign(static_cast<size_t>(d * d), 0.0);
    p.block.assign(static_cast<size_t>(kBlockRows * d), 0.0f);
    p.product.assign(static_cast<size_t>(d * d), 0.0f);
    p.block_class_sums.assign(static_cast<size_t>(k * d), 0.0f);
    p.block_has_class.assign(static_cast<size_t>(k), 0);
  }
  std::vector<float> shifts(s.class_shifts.begin(), s.class_shifts.end());  // exact: floats already
  std::vector<ThreadContext> contexts;
  RETURN_IF_ERROR(logistic_internal::ForEachBlock(num_blocks, &contexts, [&](int thread, int64_t block) {
    StatisticsPartial& p = partials[static_cast<size_t>(thread)];
    const int64_t row0 = block * kBlockRows;
    const int64_t rows = std::min(kBlockRows, n - row0);
    // Centre each row on its class's reference point (float32, one rounding) and sum the
    // centred rows per class in float32 over this block only (<= kBlockRows terms, the same
    // bound as the matmul), then fold the block's sums into double.
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t c = labels[static_cast<size_t>(row0 + r)];
      const float* x = features.values.data() + (row0 + r) * d;
      const float* a = shifts.data() + c * d;
      float* t = p.block_class_sums.data() + c * d;
      float* xc = p.block.data() + r * d;
      p.block_has_class[static_cast<size_t>(c)] = 1;
      for (int64_t j = 0; j < d; ++j) {
        xc[j] = x[j] - a[j];
        t[j] += xc[j];
      }
    }
    for (int64_t c = 0; c < k; ++c) {
      if (!p.block_has_class[static_cast<size_t>(c)]) continue;
      p.block_has_class[static_cast<size_t>(c)] = 0;
      float* t = p.block_class_sums.data() + c * d;
      double* total = p.class_sums.data() + c * d;
      for (int64_t j = 0; j < d; ++j) {
        total[j] += t[j];
        t[j] = 0.0f;
      }
    }
    // A short last block: zero rows add nothing to block^T block (one cached primitive shape).
    if (rows < kBlockRows) std::fill(p.block.begin() + rows * d, p.block.end(), 0.0f);
    ThreadContext& context = contexts[static_cast<size_t>(thread)];
    matmul->Execute(context.stream, p.block.data(), p.block.data(), p.product.data(), context.Scratch(*matmul));
    context.stream.wait();
    for (size_t i = 0; i < p.scatter.size(); ++i) p.scatter[i] += p.product[i];
    return absl::OkStatus();
  }));
  for (const StatisticsPartial& p : partials) {
    for (size_t i = 0; i < s.class_sums.size(); ++i) s.class_sums[i] += p.class_sums[i];
    for (size_t i = 0; i < s.scatter.size(); ++i) s.scatter[i] += p.scatter[i];
  }
  // Finite float32 inputs can still overflow a float32 product (|x - a_c| above ~1e18).
  if (!CheckFinite(s.scatter, "scatter").ok() || !CheckFinite(s.class_sums, "class_sums").ok()) {
    return absl::InvalidArgumentError(
        "features: values too large: the centred products x_j x_k overflow float32 (|x - class mean| must stay "
        "below ~1e18); rescale the features");
  }
  // The blocked float products need not be exactly symmetric (summation order differs per
  // entry); the statistic is, so average the two triangles.
  for (int64_t j = 0; j < d; ++j) {
    for (int64_t i = j + 1; i < d; ++i) {
      const double v = 0.5 * (s.scatter[static_cast<size_t>(j * d + i)] + s.scatter[static_cast<size_t>(i * d + j)]);
      s.scatter[static_cast<size_t>(j * d + i)] = v;
      s.scatter[static_cast<size_t>(i * d + j)] = v;
    }
  }
  return s;
}

absl::Status AccumulateStatistics(const Tensor& features, absl::Span<const int64_t> labels, int64_t num_classes,
                                  SufficientStatistics* statistics) {
  if (statistics->dim != 0 && features.rank() == 2 && features.dim(1) != statistics->dim) {
    return absl::InvalidArgumentError(absl::StrCat("features.shape: expected [num_samples, ", statistics->dim,
                                                   "] like the earlier chunks, got ", ShapeToString(features.shape)));
  }
  ASSIGN_OR_RETURN(SufficientStatistics chunk, ComputeStatistics(features, labels, num_classes));
  return statistics->Merge(chunk);
}

}  // namespace primserve
