// Internal to the discriminator: the compiled plan of one network at one chunk size, and the
// four passes that run on it (discriminator_plan.cc), shared with Score (discriminator.cc).
//
// Tensors live in "slots": a storage (a float buffer) plus the oneDNN memory descriptor it is
// read with. Two slots may share a storage (a Flatten, or an IDENTITY activation, is a view).
// There are two slot sets:
//   forward set:  the activations a_0 (the input, bound to the caller's data), a_1, ..., and
//                 any copy of one in the format a primitive wants (its "src");
//   backward set: their gradients delta_k = df/da_k in the same formats, plus any copy in the
//                 format a backward primitive wants.
// Score instantiates each set twice: forward + backward (f and g = grad_x f), and, for the
// Hessian term, tangent + second-order backward (forward-over-reverse, see discriminator.h):
//   tangent:      adot_0 = v;  linear: adot_k = W adot_{k-1} (bias 0);
//                 activation: adot_k = s'(z) adot_{k-1}                  (eltwise backward)
//   second-order: ddot_K = 0;  linear: ddot_{k-1} = W^T ddot_k            (backward-data)
//                 activation: ddot_{k-1} = s'(z) ddot_k + s''(z) adot_{k-1} delta_k
//   so that ddot_0 = H v.
#ifndef PRIMSERVE_CORE_DISCRIMINATOR_INTERNAL_H_
#define PRIMSERVE_CORE_DISCRIMINATOR_INTERNAL_H_

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/discriminator.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace primserve {
namespace discriminator_internal {

struct Workspace;

struct Slot {
  int storage = -1;
  dnnl::memory::desc md;
};

struct Stage {
  enum class Kind {
    kLinear,    // convolution or inner product (Conv2d, Dense)
    kEltwise,   // RELU, LEAKY_RELU, TANH, SIGMOID, ELU
    kReformat,  // a reorder into a plain layout (Flatten, the final output)
  };
  Kind kind = Kind::kLinear;
  int layer = -1;  // Index in Network::layers; -1 for the final reformat.

  // Forward set: in -> (src_reorder) -> src -> primitive -> out. For kReformat `out` views src.
  int in = -1, src = -1, out = -1;
  std::optional<dnnl::reorder> src_reorder;

  // Backward set: out_diff -> (diff_dst_reorder) -> diff_dst -> primitive -> diff_src ->
  // (diff_src_reorder) -> in_diff. For kReformat diff_src views out_diff.
  int out_diff = -1, diff_dst = -1, diff_src = -1, in_diff = -1;
  std::optional<dnnl::reorder> diff_dst_reorder, diff_src_reorder;

  // kLinear.
  dnnl::primitive forward, backward_data;
  std::shared_ptr<const std::vector<float>> weights_forward, weights_backward;  // Reordered.
  dnnl::memory::desc weights_forward_md, weights_backward_md, bias_md;
  const float* bias = nullptr;  // Into the CompiledNetwork's layer (plain [out]): plans live in it.
  std::shared_ptr<const std::vector<float>> zero_bias;  // For the tangent pass.

  // kEltwise. eltwise_backward computes diff_src = s'(src) diff_dst. A `fused` activation (RELU
  // or LEAKY_RELU with alpha >= 0 in a piecewise-linear network) runs as a post-op of the
  // preceding linear stage: in = src = out is that stage's output y, there is no forward
  // primitive, and eltwise_backward (a *_use_dst_for_bwd algorithm) reads y instead of z.
  dnnl::primitive eltwise_forward, eltwise_backward;
  bool fused = false;
  ActivationKind activation = ActivationKind::kRelu;
  float alpha = 0.0f;
};

struct Plan {
  int64_t batch = 0;
  ComputePrecision precision = ComputePrecision::kF32;
  std::vector<Slot> forward_slots, backward_slots;
  // Floats per storage; storage 0 of the forward set is external (the input, or v).
  std::vector<int64_t> forward_storage, backward_storage;
  std::vector<Stage> stages;
  int input_slot = 0;          // Forward set, plain [batch, ...input_shape], storage 0.
  int output_slot = -1;        // Forward set, plain, one float per sample.
  int input_diff_slot = -1;    // Backward set, plain [batch, ...input_shape]: g.
  int output_diff_slot = -1;   // Backward set, plain, one float per sample: df/df = 1.
  int64_t scratchpad_bytes = 0;            // The largest of any primitive (user scratchpad mode).
  std::vector<std::string> implementations;  // pd.impl_info_str() of every primitive created.

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan();

  // A workspace for one call: the idle one if any, else a new zero-filled one. Release keeps
  // at most one idle workspace (a concurrent caller allocates its own), within the process's
  // idle budget (SetIdleWorkspaceBudget): to fit it, the idle workspaces other plans released
  // longest ago are freed; one larger than the whole budget is freed itself.
  std::unique_ptr<Workspace> AcquireWorkspace() const;
  void ReleaseWorkspace(std::unique_ptr<Workspace> workspace) const;
  // Moves the idle workspace (if any) out of the process's pool; the caller holds its lock.
  std::unique_ptr<Workspace> TakeIdle() const;

 private:
  // Guarded by the process-wide idle pool's mutex (discriminator_plan.cc).
  mutable std::unique_ptr<Workspace> idle_;
  mutable int64_t idle_bytes_ = 0;
  mutable std::list<const Plan*>::iterator lru_position_;  // Valid while idle_ is set.
};

// Reordered weight copies of one network, one per (layer, memory format), shared by its plans.
class WeightStore {
 public:
  // The weights of `layer` (plain PyTorch layout `from`) in format `to`, reordered on first
  // request (its implementation name appended to `implementations`). Throws dnnl::error.
  std::shared_ptr<const std::vector<float>> Get(int layer, const float* values, const dnnl::memory::desc& from,
                                                const dnnl::memory::desc& to,
                                                std::vector<std::string>* implementations);
  // Zeros of `count` floats for `layer` (the tangent pass's bias).
  std::shared_ptr<const std::vector<float>> Zeros(int layer, int64_t count);

 private:
  struct Entry {
    int layer;
    dnnl::memory::desc md;
    std::shared_ptr<const std::vector<float>> values;
  };
  absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
};

// Builds the plan of `network` (validated; `shapes` from LayerOutputShapes) for `batch`
// samples at `precision` (kBF16 needs native bfloat16: the caller checks HasNativeBf16()).
// Errors: from oneDNN (the RunDnnl mapping).
absl::StatusOr<std::shared_ptr<const Plan>> BuildPlan(const Network& network, const std::vector<Shape>& shapes,
                                                      int64_t batch, ComputePrecision precision, WeightStore& weights);

// A CompiledNetwork's plans by (chunk size, precision), and every implementation name they
// created.
class PlanCache {
 public:
  absl::Mutex mu;
  std::vector<std::shared_ptr<const Plan>> plans ABSL_GUARDED_BY(mu);
  std::vector<std::string> implementations ABSL_GUARDED_BY(mu);
  int64_t built ABSL_GUARDED_BY(mu) = 0;
  WeightStore weights;
};

// One instance of a slot set: a buffer per storage (storage 0 of the forward set external).
struct Buffers {
  std::vector<std::vector<float>> owned;
  std::vector<float*> storage;
  float* data(const std::vector<Slot>& slots, int slot) const {
    return storage[static_cast<size_t>(slots[static_cast<size_t>(slot)].storage)];
  }
};
// Zero-filled buffers for every storage; `input` is bound to storage 0 of the forward set.
Buffers AllocateForward(const Plan& plan, float* input);
Buffers AllocateBackward(const Plan& plan);

// Everything one chunk of Score needs besides the input. Buffers are zero-filled once, when
// created: padded areas of blocked layouts then start as zeros, and every pass writes each slot
// (padding included, as oneDNN primitives and reorders do) before reading it, so a reused
// workspace computes exactly what a fresh one would. The forward sets' storage 0 is rebound to
// the input (fwd) and to `v` (tan) on every use.
struct Workspace {
  Buffers fwd, bwd;
  Buffers tan, rbwd;     // Allocated on the first call that needs the Hessian term.
  std::vector<float> v;  // [batch, input_size]: g / ||g||, the tangent direction.
  std::vector<char> scratchpad;
};

// The passes (see the top of this file); `scratchpad` holds plan.scratchpad_bytes bytes.
// Forward: a_0 (fwd storage 0) -> every activation of `fwd`.
void RunForward(const Plan& plan, dnnl::stream& stream, void* scratchpad, const Buffers& fwd);
// Tangent: adot_0 = v (tan storage 0) -> every tangent of `tan`, reading the activations `fwd`.
void RunTangent(const Plan& plan, dnnl::stream& stream, void* scratchpad, const Buffers& fwd, const Buffers& tan);
// Backward: from bwd's output_diff_slot (the caller sets 1) to its input_diff_slot (g).
void RunBackward(const Plan& plan, dnnl::stream& stream, void* scratchpad, const Buffers& fwd, const Buffers& bwd);
// Second-order backward: from rbwd's output_diff_slot (the caller sets 0) to its
// input_diff_slot (H v), reading `fwd`, the first-order deltas `bwd` and the tangents `tan`.
// Tangent and second-order passes need a plan without fused activations (only
// piecewise-linear networks fuse, and they never need H v).
void RunSecondOrderBackward(const Plan& plan, dnnl::stream& stream, void* scratchpad, const Buffers& fwd,
                            const Buffers& bwd, const Buffers& tan, const Buffers& rbwd);

}  // namespace discriminator_internal
}  // namespace primserve

#endif  // PRIMSERVE_CORE_DISCRIMINATOR_INTERNAL_H_
