// CompiledNetwork (plan cache), Score and the GAN losses (core/discriminator.h).
#include "core/discriminator.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/discriminator_internal.h"
#include "core/dnnl_context.h"
#include "core/number_format.h"
#include "core/parallel.h"
#include "core/status_macros.h"
#include "core/tile_matmul.h"

namespace primserve {

using discriminator_internal::Plan;
using discriminator_internal::PlanCache;

// ---------------------------------------------------------------------------------------------
// CompiledNetwork.
// ---------------------------------------------------------------------------------------------

CompiledNetwork::CompiledNetwork(Network network, CompileOptions options)
    : network_(std::move(network)), options_(options), cache_(std::make_unique<PlanCache>()) {}

CompiledNetwork::~CompiledNetwork() = default;

absl::StatusOr<std::shared_ptr<const CompiledNetwork>> CompiledNetwork::Create(Network network,
                                                                               CompileOptions options) {
  ASSIGN_OR_RETURN(std::vector<Shape> shapes, LayerOutputShapes(network));
  if (options.max_chunk < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_chunk: expected >= 1, got ", options.max_chunk));
  }
  std::shared_ptr<CompiledNetwork> compiled(new CompiledNetwork(std::move(network), options));
  compiled->layer_shapes_ = std::move(shapes);
  compiled->piecewise_linear_ = IsPiecewiseLinear(compiled->network_);
  int64_t input_size = 1;
  for (int64_t extent : compiled->network_.input_shape) input_size *= extent;
  compiled->input_size_ = input_size;
  // Every activation and its gradient, in up to two formats each, and for smooth networks again
  // in the tangent / second-order sets: an upper estimate of the bytes per sample.
  int64_t elements = input_size;
  for (const Shape& shape : compiled->layer_shapes_) {
    int64_t count = 1;
    for (int64_t extent : shape) count *= extent;
    elements += count;
  }
  const int64_t sets = compiled->piecewise_linear_ ? 2 : 4;
  compiled->workspace_bytes_per_sample_ = elements * sets * 2 * static_cast<int64_t>(sizeof(float));
  // Chunks shrink to fit max_workspace_bytes, but not below one sample: a network whose single
  // sample needs more than max_sample_workspace_bytes is refused here (a probe's 104-byte
  // request, a 1x1 input padded by 4000, made the server touch 2.6 GB, and its plan kept it).
  if (compiled->workspace_bytes_per_sample_ > options.max_sample_workspace_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "network: one sample needs about ", compiled->workspace_bytes_per_sample_, " bytes of activations and ",
        "gradients (", elements, " activation elements over input_shape and the layers), above the limit of ",
        options.max_sample_workspace_bytes, " bytes for one sample"));
  }
  return std::shared_ptr<const CompiledNetwork>(std::move(compiled));
}

int64_t CompiledNetwork::ChunkSize(int64_t batch) const {
  const int64_t by_memory = std::max<int64_t>(1, options_.max_workspace_bytes / workspace_bytes_per_sample_);
  return std::max<int64_t>(1, std::min({batch, options_.max_chunk, by_memory}));
}

namespace {

// The cached plan of (chunk, precision), or null. Requires cache.mu.
std::shared_ptr<const Plan> FindPlan(const PlanCache& cache, int64_t chunk, ComputePrecision precision)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(cache.mu) {
  for (const std::shared_ptr<const Plan>& plan : cache.plans) {
    if (plan->batch == chunk && plan->precision == precision) return plan;
  }
  return nullptr;
}

// UNIMPLEMENTED for BF16 where oneDNN has no native bfloat16 kernels (it would emulate them far
// slower than F32, or fall back to reference code).
absl::Status CheckPrecisionSupported(ComputePrecision precision) {
  if (precision != ComputePrecision::kBF16 || HasNativeBf16()) return absl::OkStatus();
  return absl::UnimplementedError(
      absl::StrCat("compute_precision: BF16 needs a CPU with native bfloat16 (oneDNN ISA avx512_core_bf16 or "
                   "newer); this CPU: ",
                   DnnlIsaName(), "; use F32"));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Plan>> CompiledNetwork::GetPlan(int64_t chunk, ComputePrecision precision) const {
  if (chunk < 1) return absl::InvalidArgumentError(absl::StrCat("chunk: expected >= 1 samples, got ", chunk));
  RETURN_IF_ERROR(CheckPrecisionSupported(precision));
  PlanCache& cache = *cache_;
  {
    absl::MutexLock lock(&cache.mu);
    if (std::shared_ptr<const Plan> plan = FindPlan(cache, chunk, precision)) return plan;
  }
  // Built outside the lock (it may take milliseconds); a concurrent duplicate is discarded.
  ASSIGN_OR_RETURN(std::shared_ptr<const Plan> plan,
                   discriminator_internal::BuildPlan(network_, layer_shapes_, chunk, precision, cache.weights));
  absl::MutexLock lock(&cache.mu);
  if (std::shared_ptr<const Plan> existing = FindPlan(cache, chunk, precision)) return existing;
  if (static_cast<int>(cache.plans.size()) >= std::max(options_.max_cached_plans, 1)) cache.plans.clear();
  cache.plans.push_back(plan);
  ++cache.built;
  for (const std::string& impl : plan->implementations) {
    if (std::find(cache.implementations.begin(), cache.implementations.end(), impl) == cache.implementations.end()) {
      cache.implementations.push_back(impl);
    }
  }
  return plan;
}

std::vector<int64_t> CompiledNetwork::CachedChunkSizes() const {
  absl::MutexLock lock(&cache_->mu);
  std::vector<int64_t> sizes;
  for (const std::shared_ptr<const Plan>& plan : cache_->plans) sizes.push_back(plan->batch);
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  return sizes;
}

int64_t CompiledNetwork::plans_built() const {
  absl::MutexLock lock(&cache_->mu);
  return cache_->built;
}

std::vector<std::string> CompiledNetwork::Implementations() const {
  absl::MutexLock lock(&cache_->mu);
  return cache_->implementations;
}

// ---------------------------------------------------------------------------------------------
// Score.
// ---------------------------------------------------------------------------------------------

namespace {

// Per-sample coefficients of grad f_hat = alpha g + beta H v (see discriminator.h).
struct Normalized {
  double f_hat = 0.0, alpha = 0.0, beta = 0.0;
};

Normalized Normalize(double f, double n, const ScoreOptions& options) {
  Normalized r;
  switch (options.normalization) {
    case Normalization::kGradientNorm: {
      const double d = n + std::fabs(f);
      if (d == 0.0) return r;  // f = 0 and g = 0: f_hat := 0 (0/0 in the official code).
      r.f_hat = f / d;
      r.alpha = n / (d * d);
      r.beta = -f / (d * d);
      return r;
    }
    case Normalization::kGran: {
      const double d = n * n + options.epsilon;
      r.f_hat = f * n / d;
      r.alpha = n / d;
      // Where n = 0, H v := 0 (see Score); a zero beta also keeps f / eps from overflowing.
      r.beta = n > 0.0 ? f * (options.epsilon - n * n) / (d * d) : 0.0;
      return r;
    }
    case Normalization::kNone:
      r.f_hat = f;
      r.alpha = 1.0;
      return r;
  }
  return r;
}

bool Cancelled(const ScoreOptions& options) { return options.cancelled && options.cancelled(); }

absl::Status CancelledError() { return absl::CancelledError("Score: cancelled"); }

// Returns a plan's workspace to it when the call ends (also on errors).
class WorkspaceLease {
 public:
  explicit WorkspaceLease(const Plan& plan) : plan_(plan), workspace_(plan.AcquireWorkspace()) {}
  ~WorkspaceLease() { plan_.ReleaseWorkspace(std::move(workspace_)); }
  discriminator_internal::Workspace& operator*() { return *workspace_; }

 private:
  const Plan& plan_;
  std::unique_ptr<discriminator_internal::Workspace> workspace_;
};

// Scores samples [start, start + plan.batch) of `inputs` into `result`.
absl::Status ScoreChunk(const CompiledNetwork& network, const Plan& plan, const float* inputs, int64_t start,
                        const ScoreOptions& options, ScoreResult* result) {
  namespace internal = discriminator_internal;
  const int64_t batch = plan.batch;
  const int64_t size = network.input_size();
  const bool gradient = result->input_gradients.has_value();
  const bool hessian = gradient && options.normalization != Normalization::kNone && !network.piecewise_linear();
  std::vector<Normalized> coefficients(static_cast<size_t>(batch));
  std::unique_ptr<WorkspaceLease> lease;
  bool cancelled = false;
  RETURN_IF_ERROR(RunDnnl("discriminator: forward and backward-data", [&] {
    lease = std::make_unique<WorkspaceLease>(plan);
    internal::Workspace& ws = **lease;
    ws.fwd.storage[0] = const_cast<float*>(inputs + start * size);
    dnnl::stream stream(DnnlEngine());
    internal::RunForward(plan, stream, ws.scratchpad.data(), ws.fwd);
    if ((cancelled = Cancelled(options))) return;
    // df/df = 1 for every sample (the output slot is plain: one float per sample).
    float* seed = ws.bwd.data(plan.backward_slots, plan.output_diff_slot);
    std::fill(seed, seed + batch, 1.0f);
    internal::RunBackward(plan, stream, ws.scratchpad.data(), ws.fwd, ws.bwd);
  }));
  if (cancelled) return CancelledError();
  internal::Workspace& ws = **lease;

  const float* f = ws.fwd.data(plan.forward_slots, plan.output_slot);
  const float* g = ws.bwd.data(plan.backward_slots, plan.input_diff_slot);
  if (hessian) ws.v.resize(static_cast<size_t>(batch * size));
  ParallelFor(batch, batch * size >= 65536, [&](int64_t b) {
    const float* gb = g + b * size;
    double sum = 0.0;
    for (int64_t i = 0; i < size; ++i) sum += static_cast<double>(gb[i]) * gb[i];
    const double n = std::sqrt(sum);
    const Normalized c = Normalize(f[b], n, options);
    coefficients[static_cast<size_t>(b)] = c;
    const size_t out = static_cast<size_t>(start + b);
    result->raw_scores.values[out] = f[b];
    result->gradient_norms.values[out] = static_cast<float>(n);
    result->scores.values[out] = static_cast<float>(c.f_hat);
    if (hessian) {  // v = 0 where g = 0 (||g|| not differentiable there): H v := 0.
      const double inv = n > 0.0 ? 1.0 / n : 0.0;
      float* vb = ws.v.data() + b * size;
      for (int64_t i = 0; i < size; ++i) vb[i] = static_cast<float>(gb[i] * inv);
    }
  });
  if (!gradient) return absl::OkStatus();

  const float* hv = nullptr;
  if (hessian) {
    if (Cancelled(options)) return CancelledError();
    RETURN_IF_ERROR(RunDnnl("discriminator: Hessian-vector product", [&] {
      if (ws.tan.storage.empty()) {
        ws.tan = internal::AllocateForward(plan, nullptr);
        ws.rbwd = internal::AllocateBackward(plan);
      }
      ws.tan.storage[0] = ws.v.data();
      // d(df/df)/dt = 0: the second-order pass starts from zero.
      float* seed = ws.rbwd.data(plan.backward_slots, plan.output_diff_slot);
      std::fill(seed, seed + batch, 0.0f);
      dnnl::stream stream(DnnlEngine());
      internal::RunTangent(plan, stream, ws.scratchpad.data(), ws.fwd, ws.tan);
      internal::RunSecondOrderBackward(plan, stream, ws.scratchpad.data(), ws.fwd, ws.bwd, ws.tan, ws.rbwd);
    }));
    hv = ws.rbwd.data(plan.backward_slots, plan.input_diff_slot);
  }
  float* out = result->input_gradients->values.data() + start * size;
  ParallelFor(batch, batch * size >= 65536, [&](int64_t b) {
    const Normalized& c = coefficients[static_cast<size_t>(b)];
    for (int64_t i = b * size; i < (b + 1) * size; ++i) {
      double value = c.alpha * g[i];
      if (hv != nullptr) value += c.beta * hv[i];
      out[i] = static_cast<float>(value);
    }
  });
  return absl::OkStatus();
}

absl::StatusOr<ScoreResult> ScoreNamed(const CompiledNetwork& network, const Tensor& inputs,
                                       const ScoreOptions& options, absl::string_view field) {
  if (options.normalization == Normalization::kGran && !(std::isfinite(options.epsilon) && options.epsilon > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("epsilon: expected a finite value > 0 for GRAN, got ", NumberToString(options.epsilon)));
  }
  const Shape& input_shape = network.input_shape();
  Shape expected{inputs.rank() >= 1 ? inputs.dim(0) : 0};
  expected.insert(expected.end(), input_shape.begin(), input_shape.end());
  if (inputs.shape != expected) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".shape: expected [batch, ", ShapeToString(input_shape).substr(1),
                                                   " (batch, then the network's input_shape), got ",
                                                   ShapeToString(inputs.shape)));
  }
  ASSIGN_OR_RETURN(const int64_t count, CheckedElementCount(inputs.shape, field, options.max_elements));
  if (static_cast<int64_t>(inputs.values.size()) != count) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", inputs.values.size(), " values for shape ",
                                                   ShapeToString(inputs.shape), ", expected ", count));
  }
  RETURN_IF_ERROR(CheckFinite(inputs.values, field));
  RETURN_IF_ERROR(CheckPrecisionSupported(options.precision));

  const int64_t batch = inputs.dim(0);
  ScoreResult result;
  result.raw_scores = Tensor::Zeros({batch});
  result.gradient_norms = Tensor::Zeros({batch});
  result.scores = Tensor::Zeros({batch});
  if (options.return_input_gradient) result.input_gradients = Tensor::Zeros(inputs.shape);
  if (batch == 0) return result;

  const int64_t chunk = network.ChunkSize(batch);
  for (int64_t start = 0; start < batch; start += chunk) {
    if (Cancelled(options)) return CancelledError();
    ASSIGN_OR_RETURN(std::shared_ptr<const Plan> plan, network.GetPlan(std::min(chunk, batch - start), options.precision));
    RETURN_IF_ERROR(ScoreChunk(network, *plan, inputs.values.data(), start, options, &result));
  }
  // Finite inputs through finite weights can still pass float32's range (weights near 1e30,
  // deep stacks of large weights): refused, never returned as Inf or NaN with OK.
  for (int64_t i = 0; i < batch; ++i) {
    const float f = result.raw_scores.values[i], norm = result.gradient_norms.values[i];
    if (!std::isfinite(f) || !std::isfinite(norm) || !std::isfinite(result.scores.values[i])) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": sample ", i, " overflows float32 in the network (f = ",
                                                     f, ", ||grad f|| = ", norm, "); scale the inputs or weights down"));
    }
  }
  if (result.input_gradients.has_value()) {
    const std::vector<float>& g = result.input_gradients->values;
    for (size_t n = 0; n < g.size(); ++n) {
      if (!std::isfinite(g[n])) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ": sample ", static_cast<int64_t>(n) / network.input_size(),
            " overflows float32 in the input gradient of f_hat; scale the inputs or weights down"));
      }
    }
  }
  return result;
}

}  // namespace

absl::StatusOr<ScoreResult> Score(const CompiledNetwork& network, const Tensor& inputs, const ScoreOptions& options) {
  return ScoreNamed(network, inputs, options, "inputs");
}

// ---------------------------------------------------------------------------------------------
// Losses.
// ---------------------------------------------------------------------------------------------

namespace {

double Mean(absl::Span<const float> x, double (*fn)(double)) {
  double sum = 0.0;
  for (float value : x) sum += fn(value);
  return sum / static_cast<double>(x.size());
}

// log(1 + e^x) without overflow or cancellation.
double Softplus(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); }

}  // namespace

absl::StatusOr<GanLosses> ComputeGanLosses(absl::Span<const float> real_scores, absl::Span<const float> fake_scores,
                                           LossKind loss) {
  if (real_scores.empty()) return absl::InvalidArgumentError("real_scores: expected at least one score, got none");
  if (fake_scores.empty()) return absl::InvalidArgumentError("fake_scores: expected at least one score, got none");
  RETURN_IF_ERROR(CheckFinite(real_scores, "real_scores"));
  RETURN_IF_ERROR(CheckFinite(fake_scores, "fake_scores"));
  GanLosses out;
  switch (loss) {
    case LossKind::kHinge:
      out.discriminator = Mean(real_scores, [](double r) { return std::max(1.0 - r, 0.0); }) +
                          Mean(fake_scores, [](double f) { return std::max(1.0 + f, 0.0); });
      out.generator = -Mean(fake_scores, [](double f) { return f; });
      break;
    case LossKind::kWasserstein:
      out.discriminator = -Mean(real_scores, [](double r) { return r; }) + Mean(fake_scores, [](double f) { return f; });
      out.generator = -Mean(fake_scores, [](double f) { return f; });
      break;
    case LossKind::kBce:
      // BCEWithLogits with targets 1 (real) and 0 (fake): -log s(x) = softplus(-x),
      // -log(1 - s(x)) = softplus(x).
      out.discriminator = Mean(real_scores, [](double r) { return Softplus(-r); }) +
                          Mean(fake_scores, [](double f) { return Softplus(f); });
      out.generator = Mean(fake_scores, [](double f) { return Softplus(-f); });
      break;
  }
  return out;
}

absl::StatusOr<GanLosses> DiscriminatorLosses(const CompiledNetwork& network, const Tensor& real_inputs,
                                              const Tensor& fake_inputs, LossKind loss, const ScoreOptions& options) {
  ScoreOptions score_options = options;
  score_options.return_input_gradient = false;
  ASSIGN_OR_RETURN(ScoreResult real, ScoreNamed(network, real_inputs, score_options, "real_inputs"));
  ASSIGN_OR_RETURN(ScoreResult fake, ScoreNamed(network, fake_inputs, score_options, "fake_inputs"));
  if (real.scores.values.empty()) return absl::InvalidArgumentError("real_inputs: expected at least one sample, got none");
  if (fake.scores.values.empty()) return absl::InvalidArgumentError("fake_inputs: expected at least one sample, got none");
  return ComputeGanLosses(real.scores.values, fake.scores.values, loss);
}

}  // namespace primserve
