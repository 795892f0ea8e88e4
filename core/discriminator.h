// Gradient-normalised discriminator scoring (MATH.md section 8; Su, kexue.fm archive 8757):
// a PyTorch-style feed-forward discriminator f, compiled once into oneDNN primitives, scored
// with its input gradient and normalised as in GN-GAN or GraN-GAN, plus the GAN losses on the
// normalised scores.
//
//   GRADIENT_NORM (Wu et al., ICCV 2021):  f_hat = f / (||grad_x f|| + |f|)
//   GRAN (Bhaskara et al., WACV 2022):      f_hat = f ||grad_x f|| / (||grad_x f||^2 + epsilon)
//   NONE:                                   f_hat = f
// ||.|| is the L2 norm over all input elements of one sample (accumulated in double).
// f = 0 with grad_x f = 0 would be 0/0 for GRADIENT_NORM (the official code has no guard);
// primserve defines f_hat = 0 there. |f_hat| <= 1 always for GRADIENT_NORM.
//
// Shapes (row-major float32, PyTorch layouts so a `state_dict` maps 1:1):
//   Network.input_shape   per-sample shape: [features], or [channels, height, width] for convs
//   DenseLayer            weight [out, in], bias [out]              (nn.Linear)
//   Conv2dLayer           weight [out, in, kh, kw], bias [out]; one stride and one zero padding
//                         for both axes (nn.Conv2d, dilation 1, groups 1)
//   ActivationLayer       elementwise; FlattenLayer: [C, H, W] -> [C * H * W] (nn.Flatten)
//   inputs                [batch, ...input_shape]
//   ScoreResult           raw_scores, gradient_norms, scores: [batch];
//                         input_gradients (optional): [batch, ...input_shape]
// The last layer's output must hold exactly one element per sample ([1], or [1, 1, 1] after a
// final convolution, as in DCGAN discriminators). A Dense layer needs a flat input: put a
// Flatten between a convolution and a Dense layer, as nn.Sequential does.
//
// input_gradients = grad_x f_hat. With n = ||g||, g = grad_x f, H = the Hessian of f, and
// v = g / n (the unit direction of g), grad_x n = H g / n = H v, so
//   GRADIENT_NORM: grad f_hat = (n g - f H v) / (n + |f|)^2
//                  (d|f| = sign(f) g cancels: (n + |f|) g - f (H v + sign(f) g) = n g - f H v;
//                   f_hat is C^1 in f across f = 0)
//   GRAN:          grad f_hat = n g / (n^2 + eps) + f (eps - n^2) / (n^2 + eps)^2 H v
//                  (no |f| here, so no sign term)
//   NONE:          grad f_hat = g.
// For piecewise-linear networks (activations RELU, LEAKY_RELU, IDENTITY only) f is linear in
// each region, H = 0 there and these reduce to the exact region formulas of MATH.md
// (GN: g n / (n + |f|)^2, whose norm is n^2 / (n + |f|)^2 <= 1; GraN: g n / (n^2 + eps)); H v
// is not computed. For smooth activations (TANH, SIGMOID, ELU) H v is computed EXACTLY (to
// float32 rounding, no step size) by forward-over-reverse differentiation (Pearlmutter's
// R-operator): a tangent forward pass along v, then the backward pass differentiated along v,
// on the same oneDNN primitives plus one elementwise second-derivative term per activation.
// This costs about one more forward and one more backward-data pass. Where n = 0 the
// direction is undefined (n is not differentiable there); primserve takes H v = 0, so
// input_gradients is 0 where g = 0. At a kink (x = 0 of RELU, LEAKY_RELU, and of ELU when
// alpha != 1) the derivative of the x <= 0 side is used, as PyTorch and oneDNN do.
//
// Compute precision (ScoreOptions::precision): F32 runs every primitive in float32. BF16
// (CPUs with native bfloat16, avx512_core_bf16 or newer; UNIMPLEMENTED elsewhere) runs the
// convolutions and inner products on bfloat16 inputs and weights with float32 accumulation
// inside oneDNN; activations and their gradients between layers are stored in bfloat16 (each
// would be rounded to bfloat16 as the next product's input anyway); the last linear layer
// writes f in float32 and the first one writes g = grad_x f in float32, and the norms, the
// normalisation and every returned number are float32 / double as in F32. Expected error
// against exact arithmetic: a few bfloat16 roundings (2^-9 relative each) per layer, about
// 1e-2 relative on f, ||g|| and f_hat; up to ~5e-2 on input_gradients, where a pre-activation
// within bfloat16 error of a RELU / LEAKY_RELU kink may take the other slope (F32: ~1e-6;
// tests/core/discriminator_bf16_test.cc bounds both).
//
// Compilation: CompiledNetwork::Create validates the network and keeps it; per batch size and
// precision it builds (once, then caches) oneDNN 2.x primitives: convolution / inner product
// forward and backward-data, eltwise forward and backward, and the reorders between the
// formats they use (F32 convolutions in NHWC, BF16 ones in the blocked layouts oneDNN picks
// with format_tag::any, a few-channel first layer's backward-data in plain NCHW; see
// discriminator_plan.cc for the measurements; an activation with no jit kernel on a padded
// blocked layout runs on the plain one). Weights are reordered once per chosen format. Large batches run in chunks (CompileOptions::max_chunk), so at most two plans serve
// any batch size (per precision). Piecewise-linear networks fuse each RELU / LEAKY_RELU (alpha
// >= 0) into the preceding convolution or inner product as a oneDNN post-op; its backward
// reads the sign of the activation's output (sign(y) = sign(z) for alpha >= 0). Cost per sample: forward + backward-data (about twice the forward), twice
// that with the Hessian term; work buffers hold every activation and its gradient.
//
// Thread safety: a CompiledNetwork is immutable to its users; Score may run concurrently on
// one CompiledNetwork (each call owns its buffers and oneDNN scratchpad).
//
// Example:
//   Network net;
//   net.input_shape = {2};
//   net.layers.push_back(DenseLayer{weight, bias});      // weight [1, 2], bias [1]
//   ASSIGN_OR_RETURN(std::shared_ptr<const CompiledNetwork> compiled,
//                    CompiledNetwork::Create(std::move(net)));
//   ASSIGN_OR_RETURN(ScoreResult result, Score(*compiled, inputs, ScoreOptions{}));
#ifndef PRIMSERVE_CORE_DISCRIMINATOR_H_
#define PRIMSERVE_CORE_DISCRIMINATOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/tensor.h"

namespace primserve {

// ---------------------------------------------------------------------------------------------
// The network description.
// ---------------------------------------------------------------------------------------------

enum class ActivationKind {
  kUnspecified,  // Rejected by ValidateNetwork (a proto enum's 0 maps here).
  kRelu,         // max(x, 0)
  kLeakyRelu,    // x > 0 ? x : alpha x            (nn.LeakyReLU(negative_slope = alpha))
  kTanh,
  kSigmoid,
  kElu,          // x > 0 ? x : alpha (e^x - 1)    (nn.ELU(alpha)); alpha >= 0
  kIdentity,
};

struct DenseLayer {
  Tensor weight;  // [out, in]
  Tensor bias;    // [out]
};

struct Conv2dLayer {
  Tensor weight;        // [out, in, kh, kw]
  Tensor bias;          // [out]
  int64_t stride = 1;   // >= 1, both axes
  int64_t padding = 0;  // >= 0, zero padding on every side
};

struct ActivationLayer {
  ActivationKind kind = ActivationKind::kUnspecified;
  // LEAKY_RELU: the negative slope (PyTorch default 0.01); ELU: alpha (PyTorch default 1).
  // Ignored by the other kinds. Used as given: a converter maps "unset" to a default.
  double alpha = 0.0;
};

struct FlattenLayer {};

using Layer = std::variant<DenseLayer, Conv2dLayer, ActivationLayer, FlattenLayer>;

struct Network {
  Shape input_shape;          // Per sample, rank 1 to 3, every extent >= 1.
  std::vector<Layer> layers;  // At least one.
};

// "Dense", "Conv2d", "Activation" or "Flatten".
const char* LayerKindName(const Layer& layer);

// True when every activation is RELU, LEAKY_RELU or IDENTITY (f is piecewise linear).
bool IsPiecewiseLinear(const Network& network);

// Checks the network layer by layer: input_shape rank 1..3 with extents >= 1; at least one
// layer; Dense needs a flat input and weight [out, in] with in = the previous output's size;
// Conv2d needs [C, H, W] input, weight [out, C, kh, kw], stride >= 1, padding >= 0 and a kernel
// that fits the padded input; bias [out]; values.size() equal to each shape's element count;
// every weight and bias finite; activation kind specified, alpha finite in float32 (ELU: >= 0);
// the last output one element per sample. Messages name the layer and the mismatch, e.g.
//   "layers[2] (Dense): weight is [16, 30], expected in = 32 from the previous layer's output [32]".
// Errors: INVALID_ARGUMENT; RESOURCE_EXHAUSTED when a per-sample activation exceeds
// kDefaultMaxElements.
absl::Status ValidateNetwork(const Network& network);

// The per-sample output shape of every layer (element i is layers[i]'s output).
// Errors: as ValidateNetwork (it validates first).
absl::StatusOr<std::vector<Shape>> LayerOutputShapes(const Network& network);

// ---------------------------------------------------------------------------------------------
// Compilation.
// ---------------------------------------------------------------------------------------------

struct CompileOptions {
  // Samples per oneDNN execution; a larger batch runs in chunks of this size (plus one
  // remainder chunk). Each distinct chunk size gets its own cached plan.
  int64_t max_chunk = 64;
  // Bound on the work buffers of one chunk (activations and their gradients, all passes);
  // lowers the chunk size for large per-sample networks, down to one sample.
  int64_t max_workspace_bytes = int64_t{512} << 20;
  // Bound on one sample's work buffers: Create refuses a network that needs more
  // (RESOURCE_EXHAUSTED), rather than let a chunk of one sample allocate it.
  int64_t max_sample_workspace_bytes = int64_t{2} << 30;
  // Plans kept per network (distinct chunk sizes); the cache is cleared past it. Each cached
  // plan also keeps one idle workspace (its chunk's buffers, reused by the next call), within
  // the process-wide budget below.
  int max_cached_plans = 8;
};

// Idle workspaces (work buffers kept between calls for reuse) of every plan of every
// CompiledNetwork in the process are bounded together. To keep a released workspace within the
// budget, the idle workspaces released longest ago are freed (the coldest networks'; their next
// call allocates afresh, with the same results); one larger than the whole budget is freed
// itself. Without it, a server holding many networks could keep max_cached_plans x 512 MiB per
// network idle. Thread-safe; the default (1 GiB) holds one chunk at max_workspace_bytes with room.
inline constexpr int64_t kDefaultIdleWorkspaceBudget = int64_t{1} << 30;
void SetIdleWorkspaceBudget(int64_t bytes);
// Bytes of idle workspaces held now, process-wide.
int64_t IdleWorkspaceBytes();

namespace discriminator_internal {
struct Plan;
class PlanCache;
}  // namespace discriminator_internal

class CompiledNetwork {
 public:
  // Validates `network` (errors as ValidateNetwork) and keeps it. Primitives are built lazily,
  // per chunk size, by the first Score of that size. Errors: INVALID_ARGUMENT (as
  // ValidateNetwork; options.max_chunk < 1), RESOURCE_EXHAUSTED (as ValidateNetwork; one sample's
  // work buffers above options.max_sample_workspace_bytes).
  static absl::StatusOr<std::shared_ptr<const CompiledNetwork>> Create(Network network,
                                                                       CompileOptions options = {});
  ~CompiledNetwork();
  CompiledNetwork(const CompiledNetwork&) = delete;
  CompiledNetwork& operator=(const CompiledNetwork&) = delete;

  const Network& network() const { return network_; }
  const CompileOptions& options() const { return options_; }
  const Shape& input_shape() const { return network_.input_shape; }
  int64_t input_size() const { return input_size_; }  // Elements per sample.
  bool piecewise_linear() const { return piecewise_linear_; }

  // The plan of a chunk size and precision (built and cached on first use). Errors:
  // INVALID_ARGUMENT / RESOURCE_EXHAUSTED / INTERNAL from oneDNN; UNIMPLEMENTED for kBF16 on a
  // CPU without native bfloat16.
  absl::StatusOr<std::shared_ptr<const discriminator_internal::Plan>> GetPlan(
      int64_t chunk, ComputePrecision precision = ComputePrecision::kF32) const;
  // Samples per chunk for a batch of `batch` (max_chunk, lowered by max_workspace_bytes).
  int64_t ChunkSize(int64_t batch) const;

  // Chunk sizes with a cached plan (any precision), ascending, without repeats; and the number
  // of plans built so far.
  std::vector<int64_t> CachedChunkSizes() const;
  int64_t plans_built() const;
  // oneDNN implementation names (pd.impl_info_str()) of every primitive this network created,
  // e.g. "jit:avx2", "x64:gemm:jit", "jit:uni" (tests assert none starts with "ref").
  std::vector<std::string> Implementations() const;

 private:
  CompiledNetwork(Network network, CompileOptions options);

  Network network_;
  CompileOptions options_;
  std::vector<Shape> layer_shapes_;
  int64_t input_size_ = 0;
  int64_t workspace_bytes_per_sample_ = 0;  // Estimate before oneDNN padding.
  bool piecewise_linear_ = false;
  std::unique_ptr<discriminator_internal::PlanCache> cache_;
};

// ---------------------------------------------------------------------------------------------
// Scoring and losses.
// ---------------------------------------------------------------------------------------------

enum class Normalization {
  kGradientNorm,  // GN-GAN (default)
  kGran,          // GraN-GAN, with `epsilon`
  kNone,          // the raw f
};

struct ScoreOptions {
  Normalization normalization = Normalization::kGradientNorm;
  double epsilon = 1e-8;  // GRAN only: finite and > 0.
  bool return_input_gradient = false;
  // kBF16: bfloat16 products with float32 accumulation (see the top of this file).
  ComputePrecision precision = ComputePrecision::kF32;
  // Cap on the elements of `inputs` and of input_gradients (checked before allocating).
  int64_t max_elements = kDefaultMaxElements;
  // Polled between chunks and passes; returning true abandons the call with CANCELLED.
  std::function<bool()> cancelled;
};

struct ScoreResult {
  Tensor raw_scores;      // f [batch]
  Tensor gradient_norms;  // ||grad_x f|| of the raw f [batch]
  Tensor scores;          // f_hat [batch]
  std::optional<Tensor> input_gradients;  // grad_x f_hat [batch, ...input_shape] if requested
};

// Scores `inputs` [batch, ...input_shape] (batch 0 gives empty results).
// Errors: INVALID_ARGUMENT ("inputs.shape" not [batch, ...input_shape]; NaN/Inf in "inputs";
// epsilon not finite or <= 0 for GRAN: "epsilon"; a sample whose f, gradient or f_hat overflows
// float32, naming "inputs" and the sample); RESOURCE_EXHAUSTED (inputs or
// input_gradients above max_elements; oneDNN out of memory); UNIMPLEMENTED (precision kBF16
// on a CPU without native bfloat16: "compute_precision"); CANCELLED; INTERNAL (oneDNN).
absl::StatusOr<ScoreResult> Score(const CompiledNetwork& network, const Tensor& inputs,
                                  const ScoreOptions& options);

enum class LossKind {
  kHinge,        // D = mean(relu(1 - real)) + mean(relu(1 + fake)),  G = -mean(fake)
  kWasserstein,  // D = -mean(real) + mean(fake),                     G = -mean(fake)
  kBce,          // with logits: D = mean(softplus(-real)) + mean(softplus(fake)),
                 //              G = mean(softplus(-fake))
};

struct GanLosses {
  double discriminator = 0.0;
  double generator = 0.0;
};

// The losses of the official GN-GAN code on already computed scores (f_hat); means and
// softplus (max(x, 0) + log1p(exp(-|x|)), stable) in double. On GRADIENT_NORM scores (|f_hat|
// <= 1) hinge D - wasserstein D = 2 exactly (up to double rounding).
// Errors: INVALID_ARGUMENT when a batch is empty ("real_scores" / "fake_scores") or holds NaN/Inf.
absl::StatusOr<GanLosses> ComputeGanLosses(absl::Span<const float> real_scores,
                                           absl::Span<const float> fake_scores, LossKind loss);

// Scores the real and fake batches with `options` (normalization, epsilon; no input
// gradients), then ComputeGanLosses. Errors: as Score, with "inputs" named "real_inputs" /
// "fake_inputs"; INVALID_ARGUMENT for an empty batch.
absl::StatusOr<GanLosses> DiscriminatorLosses(const CompiledNetwork& network, const Tensor& real_inputs,
                                              const Tensor& fake_inputs, LossKind loss,
                                              const ScoreOptions& options);

}  // namespace primserve

#endif  // PRIMSERVE_CORE_DISCRIMINATOR_H_
