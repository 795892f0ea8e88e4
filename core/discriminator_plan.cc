// The compiled plan of a discriminator (discriminator_internal.h): oneDNN primitives in the
// memory formats where oneDNN 2.6 has its fast kernels (Builder::AddConvolution), the reorders
// between them, and the forward, backward, tangent and second-order backward passes.
#include <algorithm>
#include <cstring>
#include <list>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "core/dnnl_context.h"
#include "core/discriminator_internal.h"
#include "core/parallel.h"

namespace primserve {
namespace discriminator_internal {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using md_t = dnnl::memory::desc;

md_t PlainMd(int64_t batch, const Shape& shape, dt type = dt::f32) {
  dnnl::memory::dims dims{batch};
  dims.insert(dims.end(), shape.begin(), shape.end());
  static constexpr tag kTags[] = {tag::a, tag::ab, tag::abc, tag::abcd};
  return md_t(dims, type, kTags[dims.size() - 1]);
}

md_t AnyMd(dnnl::memory::dims dims, dt type = dt::f32) { return md_t(std::move(dims), type, tag::any); }

// Floats of storage for `md` (rounded up: a bf16 tensor may hold an odd number of elements).
int64_t Floats(const md_t& md) {
  return static_cast<int64_t>((md.get_size() + sizeof(float) - 1) / sizeof(float));
}

// An activation that can run as a post-op of the preceding linear layer with a backward pass
// from its output: y = z for z > 0, alpha z otherwise, with alpha >= 0, so y > 0 exactly when
// z > 0 (oneDNN's eltwise_relu_use_dst_for_bwd).
bool FusableActivation(const Layer& layer) {
  const auto* act = std::get_if<ActivationLayer>(&layer);
  if (act == nullptr) return false;
  return act->kind == ActivationKind::kRelu || (act->kind == ActivationKind::kLeakyRelu && act->alpha >= 0.0);
}

bool IsReference(const std::string& impl) { return impl.rfind("ref", 0) == 0; }

// Builds a Plan; every method may throw dnnl::error (BuildPlan maps it to a status).
class Builder {
 public:
  // `first_linear` / `last_linear`: indices of the first and last Dense / Conv2d layers (BF16
  // keeps g and f in float32 there).
  Builder(Plan* plan, WeightStore* weights, int first_linear, int last_linear)
      : plan_(*plan), weights_(*weights), first_linear_(first_linear), last_linear_(last_linear) {
    attr_.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  }

  int NewForwardSlot(const md_t& md) { return NewSlot(md, &plan_.forward_slots, &plan_.forward_storage); }
  int NewBackwardSlot(const md_t& md) { return NewSlot(md, &plan_.backward_slots, &plan_.backward_storage); }
  int ForwardView(int slot, const md_t& md) { return View(slot, md, &plan_.forward_slots); }
  int BackwardView(int slot, const md_t& md) { return View(slot, md, &plan_.backward_slots); }
  // By value: the slot vectors grow while a plan is built.
  md_t ForwardMd(int slot) const { return plan_.forward_slots[static_cast<size_t>(slot)].md; }
  md_t BackwardMd(int slot) const { return plan_.backward_slots[static_cast<size_t>(slot)].md; }

  // Records a primitive's implementation name and scratchpad size.
  void Record(const dnnl::primitive_desc_base& pd) {
    plan_.implementations.push_back(pd.impl_info_str());
    plan_.scratchpad_bytes = std::max<int64_t>(plan_.scratchpad_bytes, static_cast<int64_t>(pd.scratchpad_desc().get_size()));
  }

  dnnl::reorder Reorder(const md_t& from, const md_t& to) {
    dnnl::reorder::primitive_desc pd(DnnlEngine(), from, DnnlEngine(), to, attr_);
    Record(pd);
    return dnnl::reorder(pd);
  }

  // in (slot `cur`) -> a copy in `md` when the formats differ; returns the slot to read.
  int ForwardIn(Stage& stage, int cur, const md_t& md) {
    stage.in = cur;
    if (ForwardMd(cur) == md) return stage.src = cur;
    stage.src_reorder = Reorder(ForwardMd(cur), md);
    return stage.src = NewForwardSlot(md);
  }
  // diff_src in `md` -> (reorder) -> in_diff (slot `cur_diff`, in the forward input's format).
  void BackwardOut(Stage& stage, int cur_diff, const md_t& md) {
    stage.in_diff = cur_diff;
    const md_t in_md = BackwardMd(cur_diff);
    if (in_md == md) {
      stage.diff_src = cur_diff;
      return;
    }
    stage.diff_src = NewBackwardSlot(md);
    stage.diff_src_reorder = Reorder(md, in_md);
  }

  // `fused`: an activation (FusableActivation) applied as an eltwise post-op; AddEltwise with
  // fused = true must follow.
  void AddLinear(int layer, const Layer& def, const Shape& out_shape, const ActivationLayer* fused, int* cur,
                 int* cur_diff);
  void AddConvolution(Stage& stage, const Conv2dLayer& conv, const dnnl::memory::dims& in_dims, const Shape& out_shape,
                      const dnnl::primitive_attr& attr, int* cur, int* cur_diff);
  void AddEltwise(int layer, const ActivationLayer& act, bool fused, int* cur, int* cur_diff);
  void AddFusedEltwise(int layer, const ActivationLayer& act, int* cur, int* cur_diff);
  void AddReformat(int layer, const Shape& in_shape, const Shape& out_shape, int* cur, int* cur_diff);

 private:
  bool bf16() const { return plan_.precision == ComputePrecision::kBF16; }
  // Products in bf16 (weights, src, diff_dst); f32 for F32 plans.
  dt ProductType() const { return bf16() ? dt::bf16 : dt::f32; }
  // A linear layer's dst: bf16 between layers of a BF16 plan, f32 for the last one (f).
  dt DstType(int layer) const { return bf16() && layer != last_linear_ ? dt::bf16 : dt::f32; }
  // A linear layer's diff_src: bf16 between layers, f32 for the first one (g = grad_x f).
  dt DiffSrcType(int layer) const { return bf16() && layer != first_linear_ ? dt::bf16 : dt::f32; }
  dnnl::primitive_attr LinearAttr(const ActivationLayer* fused) const;

  int NewSlot(const md_t& md, std::vector<Slot>* slots, std::vector<int64_t>* storage) {
    storage->push_back(Floats(md));
    slots->push_back(Slot{static_cast<int>(storage->size()) - 1, md});
    return static_cast<int>(slots->size()) - 1;
  }
  int View(int slot, const md_t& md, std::vector<Slot>* slots) {
    slots->push_back(Slot{(*slots)[static_cast<size_t>(slot)].storage, md});
    return static_cast<int>(slots->size()) - 1;
  }
  // Sets the weights, bias and backward slots common to convolution and inner product.
  template <typename FwdPd, typename BwdPd>
  void FinishLinear(Stage& stage, const Tensor& weight, const Tensor& bias, const FwdPd& pd, const BwdPd& bpd,
                    int* cur, int* cur_diff);

  Plan& plan_;
  WeightStore& weights_;
  int first_linear_, last_linear_;
  dnnl::primitive_attr attr_;
};

dnnl::primitive_attr Builder::LinearAttr(const ActivationLayer* fused) const {
  // A new attr, not a copy of attr_: dnnl::primitive_attr copies share one handle.
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (fused != nullptr) {
    const float alpha = fused->kind == ActivationKind::kLeakyRelu ? static_cast<float>(fused->alpha) : 0.0f;
    dnnl::post_ops ops;
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, alpha, 0.0f);
    attr.set_post_ops(ops);
  }
  return attr;
}

template <typename FwdPd, typename BwdPd>
void Builder::FinishLinear(Stage& stage, const Tensor& weight, const Tensor& bias, const FwdPd& pd, const BwdPd& bpd,
                           int* cur, int* cur_diff) {
  Record(pd);
  Record(bpd);
  const dnnl::memory::dims wdims(weight.shape.begin(), weight.shape.end());
  const md_t plain_weights(wdims, dt::f32, weight.rank() == 2 ? tag::ab : tag::abcd);
  auto get = [&](const md_t& to) {
    return weights_.Get(stage.layer, weight.values.data(), plain_weights, to, &plan_.implementations);
  };
  stage.weights_forward_md = pd.weights_desc();
  stage.weights_backward_md = bpd.weights_desc();
  stage.weights_forward = get(stage.weights_forward_md);
  stage.weights_backward = get(stage.weights_backward_md);
  stage.bias_md = pd.bias_desc();
  stage.bias = bias.values.data();
  stage.zero_bias = weights_.Zeros(stage.layer, Floats(stage.bias_md));
  stage.out = NewForwardSlot(pd.dst_desc());
  stage.out_diff = NewBackwardSlot(pd.dst_desc());
  stage.diff_dst = stage.out_diff;
  if (bpd.diff_dst_desc() != pd.dst_desc()) {
    stage.diff_dst = NewBackwardSlot(bpd.diff_dst_desc());
    stage.diff_dst_reorder = Reorder(pd.dst_desc(), bpd.diff_dst_desc());
  }
  BackwardOut(stage, *cur_diff, bpd.diff_src_desc());
  *cur = stage.out;
  *cur_diff = stage.out_diff;
}

// Memory formats. F32 convolutions run in NHWC where oneDNN 2.6 has a fast kernel for it: on
// the DCGAN discriminator (conv 64->128 and 128->256, 4x4 stride 2, batch 64) the brgemm-based
// forward ran at ~370 GFLOP/s and the NHWC backward-data at ~360, against ~270 for both in the
// blocked nChw16c layouts that format_tag::any picks. BF16 keeps format_tag::any (its blocked
// kernels were as fast or faster: forward ~830 vs ~620 GFLOP/s). Any layout that would select
// a reference kernel falls back to format_tag::any.
//
// Backward-data of a first layer with few input channels (3 for images): blocked layouts pad
// the channels to 16, 5x the work (oneDNN's jit kernel there: ~60 GFLOP/s on DCGAN conv1),
// and NHWC picks a kernel as slow; the gemm-based kernel on plain NCHW ran ~3x faster and
// writes g in the input's own layout. It is kept where it is not a reference kernel.
void Builder::AddConvolution(Stage& stage, const Conv2dLayer& conv, const dnnl::memory::dims& in_dims,
                             const Shape& out_shape, const dnnl::primitive_attr& attr, int* cur, int* cur_diff) {
  const int layer = stage.layer;
  const int64_t batch = plan_.batch;
  const dt product = ProductType(), dst_type = DstType(layer), diff_src_type = DiffSrcType(layer);
  const Shape& w = conv.weight.shape;
  const dnnl::memory::dims src{batch, w[1], in_dims[2], in_dims[3]};
  const dnnl::memory::dims dst{batch, out_shape[0], out_shape[1], out_shape[2]};
  const dnnl::memory::dims weights(w.begin(), w.end());
  const dnnl::memory::dims strides{conv.stride, conv.stride}, pad{conv.padding, conv.padding};
  const md_t bias_md({w[0]}, dt::f32, tag::a);
  const tag activations = bf16() ? tag::any : tag::nhwc;
  auto forward_pd = [&](tag format) {
    dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                         md_t(src, product, format), AnyMd(weights, product), bias_md,
                                         md_t(dst, dst_type, format), strides, pad, pad);
    return dnnl::convolution_forward::primitive_desc(desc, attr, DnnlEngine());
  };
  dnnl::convolution_forward::primitive_desc pd = forward_pd(activations);
  if (IsReference(pd.impl_info_str())) pd = forward_pd(tag::any);
  auto backward_pd = [&](tag format) {
    dnnl::convolution_backward_data::desc bdesc(dnnl::algorithm::convolution_direct, md_t(src, diff_src_type, format),
                                                AnyMd(weights, product), md_t(dst, product, format), strides, pad,
                                                pad);
    return dnnl::convolution_backward_data::primitive_desc(bdesc, attr_, DnnlEngine(), pd);
  };
  const bool few_channels = layer == first_linear_ && w[1] % 16 != 0;
  dnnl::convolution_backward_data::primitive_desc bpd = backward_pd(few_channels ? tag::nchw : activations);
  if (IsReference(bpd.impl_info_str())) bpd = backward_pd(tag::any);
  stage.forward = dnnl::convolution_forward(pd);
  stage.backward_data = dnnl::convolution_backward_data(bpd);
  ForwardIn(stage, *cur, pd.src_desc());
  FinishLinear(stage, conv.weight, conv.bias, pd, bpd, cur, cur_diff);
}

void Builder::AddLinear(int layer, const Layer& def, const Shape& out_shape, const ActivationLayer* fused, int* cur,
                        int* cur_diff) {
  Stage stage;
  stage.kind = Stage::Kind::kLinear;
  stage.layer = layer;
  const md_t in_md = ForwardMd(*cur);
  const int64_t batch = plan_.batch;
  const dt product = ProductType(), dst_type = DstType(layer), diff_src_type = DiffSrcType(layer);
  const dnnl::primitive_attr attr = LinearAttr(fused);
  if (const auto* conv = std::get_if<Conv2dLayer>(&def)) {
    AddConvolution(stage, *conv, in_md.dims(), out_shape, attr, cur, cur_diff);
  } else {
    const auto& dense = std::get<DenseLayer>(def);
    const Shape& w = dense.weight.shape;
    const dnnl::memory::dims src{batch, w[1]}, dst{batch, w[0]}, weights{w[0], w[1]};
    const md_t bias_md({w[0]}, dt::f32, tag::a);
    dnnl::inner_product_forward::desc desc(dnnl::prop_kind::forward_training, AnyMd(src, product),
                                           AnyMd(weights, product), bias_md, AnyMd(dst, dst_type));
    dnnl::inner_product_forward::primitive_desc pd(desc, attr, DnnlEngine());
    dnnl::inner_product_backward_data::desc bdesc(AnyMd(src, diff_src_type), AnyMd(weights, product),
                                                  AnyMd(dst, product));
    dnnl::inner_product_backward_data::primitive_desc bpd(bdesc, attr_, DnnlEngine(), pd);
    stage.forward = dnnl::inner_product_forward(pd);
    stage.backward_data = dnnl::inner_product_backward_data(bpd);
    ForwardIn(stage, *cur, pd.src_desc());
    FinishLinear(stage, dense.weight, dense.bias, pd, bpd, cur, cur_diff);
  }
  plan_.stages.push_back(std::move(stage));
}

void Builder::AddEltwise(int layer, const ActivationLayer& act, bool fused, int* cur, int* cur_diff) {
  if (fused) {
    AddFusedEltwise(layer, act, cur, cur_diff);
    return;
  }
  Stage stage;
  stage.kind = Stage::Kind::kEltwise;
  stage.layer = layer;
  stage.activation = act.kind;
  dnnl::algorithm alg = dnnl::algorithm::eltwise_relu;
  stage.alpha = 0.0f;
  switch (act.kind) {
    case ActivationKind::kLeakyRelu: stage.alpha = static_cast<float>(act.alpha); break;
    case ActivationKind::kTanh: alg = dnnl::algorithm::eltwise_tanh; break;
    case ActivationKind::kSigmoid: alg = dnnl::algorithm::eltwise_logistic; break;
    case ActivationKind::kElu:
      alg = dnnl::algorithm::eltwise_elu;
      stage.alpha = static_cast<float>(act.alpha);
      break;
    default: break;
  }
  md_t data = ForwardMd(*cur);
  auto make_pd = [&](const md_t& md) {
    dnnl::eltwise_forward::desc desc(dnnl::prop_kind::forward_training, alg, md, stage.alpha, 0.0f);
    return dnnl::eltwise_forward::primitive_desc(desc, attr_, DnnlEngine());
  };
  dnnl::eltwise_forward::primitive_desc pd = make_pd(data);
  // oneDNN 2.6 has no jit kernel for an eltwise with f(0) != 0 (sigmoid) on a blocked layout
  // whose channels are padded (e.g. 3 channels in nChw8c): it would pick "ref:any". Run that
  // activation on the plain layout instead (two cheap reorders).
  const dnnl::memory::dims dims = data.dims();
  const md_t plain = PlainMd(plan_.batch, Shape(dims.begin() + 1, dims.end()), data.data_type());
  if (IsReference(pd.impl_info_str()) && data != plain) {
    data = plain;
    pd = make_pd(data);
  }
  dnnl::eltwise_backward::desc bdesc(alg, data, data, stage.alpha, 0.0f);
  dnnl::eltwise_backward::primitive_desc bpd(bdesc, attr_, DnnlEngine(), pd);
  Record(pd);
  Record(bpd);
  stage.eltwise_forward = dnnl::eltwise_forward(pd);
  stage.eltwise_backward = dnnl::eltwise_backward(bpd);
  ForwardIn(stage, *cur, data);
  stage.out = NewForwardSlot(data);
  stage.out_diff = NewBackwardSlot(data);
  stage.diff_dst = stage.out_diff;
  BackwardOut(stage, *cur_diff, data);
  *cur = stage.out;
  *cur_diff = stage.out_diff;
  plan_.stages.push_back(std::move(stage));
}

void Builder::AddFusedEltwise(int layer, const ActivationLayer& act, int* cur, int* cur_diff) {
  Stage stage;
  stage.kind = Stage::Kind::kEltwise;
  stage.layer = layer;
  stage.activation = act.kind;
  stage.fused = true;
  stage.alpha = act.kind == ActivationKind::kLeakyRelu ? static_cast<float>(act.alpha) : 0.0f;
  const md_t data = ForwardMd(*cur);
  // The forward descriptor is only the backward one's hint: the linear stage's post-op already
  // wrote y into its output.
  const dnnl::algorithm alg = dnnl::algorithm::eltwise_relu_use_dst_for_bwd;
  dnnl::eltwise_forward::desc desc(dnnl::prop_kind::forward_training, alg, data, stage.alpha, 0.0f);
  dnnl::eltwise_forward::primitive_desc pd(desc, attr_, DnnlEngine());
  dnnl::eltwise_backward::desc bdesc(alg, data, data, stage.alpha, 0.0f);
  dnnl::eltwise_backward::primitive_desc bpd(bdesc, attr_, DnnlEngine(), pd);
  Record(bpd);
  stage.eltwise_backward = dnnl::eltwise_backward(bpd);
  stage.in = stage.src = stage.out = *cur;
  stage.out_diff = NewBackwardSlot(data);
  stage.diff_dst = stage.out_diff;
  BackwardOut(stage, *cur_diff, data);
  *cur_diff = stage.out_diff;
  plan_.stages.push_back(std::move(stage));
}

void Builder::AddReformat(int layer, const Shape& in_shape, const Shape& out_shape, int* cur, int* cur_diff) {
  // Flatten keeps the data type; the final output (layer -1) is f32 (f, one per sample).
  const dt type = layer < 0 ? dt::f32 : ForwardMd(*cur).data_type();
  const md_t plain_in = PlainMd(plan_.batch, in_shape, type);
  const md_t plain_out = PlainMd(plan_.batch, out_shape, type);
  if (ForwardMd(*cur) == plain_in) {  // Already plain: a view, no stage.
    *cur = ForwardView(*cur, plain_out);
    *cur_diff = BackwardView(*cur_diff, plain_out);
    return;
  }
  Stage stage;
  stage.kind = Stage::Kind::kReformat;
  stage.layer = layer;
  ForwardIn(stage, *cur, plain_in);
  stage.out = ForwardView(stage.src, plain_out);
  stage.out_diff = NewBackwardSlot(plain_out);
  stage.diff_dst = stage.out_diff;
  stage.in_diff = *cur_diff;
  stage.diff_src = BackwardView(stage.out_diff, plain_in);
  stage.diff_src_reorder = Reorder(plain_in, BackwardMd(*cur_diff));
  *cur = stage.out;
  *cur_diff = stage.out_diff;
  plan_.stages.push_back(std::move(stage));
}

// The s''(z) of an activation from its output y = s(z) (no transcendental functions).
inline float SecondDerivative(ActivationKind kind, float alpha, float y) {
  switch (kind) {
    case ActivationKind::kTanh: return -2.0f * y * (1.0f - y * y);           // t' = 1 - t^2
    case ActivationKind::kSigmoid: return y * (1.0f - y) * (1.0f - 2.0f * y);  // s' = s (1 - s)
    case ActivationKind::kElu: return y > 0.0f ? 0.0f : y + alpha;           // alpha e^z = y + alpha
    default: return 0.0f;
  }
}

// bfloat16 storage: the high half of a float32 (round to nearest even on the way in).
struct Bf16 {
  static float Load(const void* p, int64_t i) {
    const uint32_t u = static_cast<uint32_t>(static_cast<const uint16_t*>(p)[i]) << 16;
    float f;
    std::memcpy(&f, &u, sizeof(f));
    return f;
  }
  static void Store(void* p, int64_t i, float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof(u));
    u += 0x7fffu + ((u >> 16) & 1u);  // Finite inputs only (the passes never produce NaN).
    static_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(u >> 16);
  }
};

template <typename T>
float LoadAs(const void* p, int64_t i) {
  if constexpr (std::is_same_v<T, Bf16>) return Bf16::Load(p, i);
  return static_cast<const float*>(p)[i];
}

template <typename T>
void StoreAs(void* p, int64_t i, float value) {
  if constexpr (std::is_same_v<T, Bf16>) {
    Bf16::Store(p, i, value);
  } else {
    static_cast<float*>(p)[i] = value;
  }
}

// The second-order backward's extra term at a smooth activation: d/dt of s'(z(t)) delta is
// s''(z) zdot delta, with zdot the tangent of this layer's input. y, zdot, delta and d share
// one memory format and data type (elementwise, padding included).
struct SecondOrderTerm {
  ActivationKind kind;
  float alpha;
  const void *y, *zdot, *delta;
  void* d;

  template <typename T>
  void Add(int64_t n) const {
    ParallelForRange(n, n >= 16384, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const float term = SecondDerivative(kind, alpha, LoadAs<T>(y, i)) * LoadAs<T>(zdot, i) * LoadAs<T>(delta, i);
        StoreAs<T>(d, i, LoadAs<T>(d, i) + term);
      }
    });
  }
};

dnnl::memory Mem(const std::vector<Slot>& slots, const Buffers& buffers, int slot) {
  const Slot& s = slots[static_cast<size_t>(slot)];
  return dnnl::memory(s.md, DnnlEngine(), buffers.storage[static_cast<size_t>(s.storage)]);
}

dnnl::memory ConstMem(const md_t& md, const float* data) {
  return dnnl::memory(md, DnnlEngine(), const_cast<float*>(data));
}

dnnl::memory Scratch(const Plan& plan, void* scratchpad) {
  const md_t md({std::max<int64_t>(plan.scratchpad_bytes, 1)}, dt::u8, tag::a);
  return dnnl::memory(md, DnnlEngine(), scratchpad);
}

void RunReorder(const std::optional<dnnl::reorder>& reorder, dnnl::stream& stream, const dnnl::memory& from,
                const dnnl::memory& to, const dnnl::memory& scratch) {
  if (!reorder) return;
  reorder->execute(stream, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}, {DNNL_ARG_SCRATCHPAD, scratch}});
}

// The backward pass over `bwd`; with `second_order`, adds s''(z) adot delta at activations.
void Backward(const Plan& plan, dnnl::stream& stream, void* scratchpad, const Buffers& fwd, const Buffers& bwd,
              const Buffers* tan, const Buffers* first) {
  const dnnl::memory scratch = Scratch(plan, scratchpad);
  const auto& fs = plan.forward_slots;
  const auto& bs = plan.backward_slots;
  for (auto it = plan.stages.rbegin(); it != plan.stages.rend(); ++it) {
    const Stage& st = *it;
    RunReorder(st.diff_dst_reorder, stream, Mem(bs, bwd, st.out_diff), Mem(bs, bwd, st.diff_dst), scratch);
    if (st.kind == Stage::Kind::kLinear) {
      st.backward_data.execute(stream, {{DNNL_ARG_DIFF_DST, Mem(bs, bwd, st.diff_dst)},
                                        {DNNL_ARG_WEIGHTS, ConstMem(st.weights_backward_md, st.weights_backward->data())},
                                        {DNNL_ARG_DIFF_SRC, Mem(bs, bwd, st.diff_src)},
                                        {DNNL_ARG_SCRATCHPAD, scratch}});
    } else if (st.kind == Stage::Kind::kEltwise) {
      // A fused activation's backward reads its output y (st.out, = st.src).
      st.eltwise_backward.execute(stream, {{st.fused ? DNNL_ARG_DST : DNNL_ARG_SRC, Mem(fs, fwd, st.src)},
                                           {DNNL_ARG_DIFF_DST, Mem(bs, bwd, st.diff_dst)},
                                           {DNNL_ARG_DIFF_SRC, Mem(bs, bwd, st.diff_src)},
                                           {DNNL_ARG_SCRATCHPAD, scratch}});
      const bool curved = st.activation == ActivationKind::kTanh || st.activation == ActivationKind::kSigmoid ||
                          st.activation == ActivationKind::kElu;
      if (tan != nullptr && curved) {
        stream.wait();
        const md_t& md = fs[static_cast<size_t>(st.out)].md;
        const SecondOrderTerm term{st.activation, st.alpha, fwd.data(fs, st.out), tan->data(fs, st.src),
                                   first->data(bs, st.out_diff), bwd.data(bs, st.diff_src)};
        if (md.data_type() == dt::bf16) {
          term.Add<Bf16>(static_cast<int64_t>(md.get_size() / sizeof(uint16_t)));
        } else {
          term.Add<float>(static_cast<int64_t>(md.get_size() / sizeof(float)));
        }
      }
    }
    RunReorder(st.diff_src_reorder, stream, Mem(bs, bwd, st.diff_src), Mem(bs, bwd, st.in_diff), scratch);
  }
  stream.wait();
}

}  // namespace

namespace {

// The idle workspaces of every plan in the process: their bytes, the budget, and the plans that
// hold one, least recently released first (evicted first when a release passes the budget).
struct IdlePool {
  absl::Mutex mu;
  int64_t bytes ABSL_GUARDED_BY(mu) = 0;
  int64_t budget ABSL_GUARDED_BY(mu) = kDefaultIdleWorkspaceBudget;
  std::list<const Plan*> lru ABSL_GUARDED_BY(mu);
};

IdlePool& Pool() {
  static IdlePool* pool = new IdlePool();  // Never destroyed: plans may outlive static teardown.
  return *pool;
}

int64_t BuffersBytes(const Buffers& buffers) {
  int64_t bytes = 0;
  for (const std::vector<float>& owned : buffers.owned) bytes += static_cast<int64_t>(owned.capacity() * sizeof(float));
  return bytes;
}

int64_t WorkspaceBytes(const Workspace& ws) {
  return BuffersBytes(ws.fwd) + BuffersBytes(ws.bwd) + BuffersBytes(ws.tan) + BuffersBytes(ws.rbwd) +
         static_cast<int64_t>(ws.v.capacity() * sizeof(float) + ws.scratchpad.capacity());
}

}  // namespace

// Takes this plan's idle workspace out of the pool (the caller holds the pool's lock).
std::unique_ptr<Workspace> Plan::TakeIdle() const {
  if (idle_ == nullptr) return nullptr;
  Pool().bytes -= idle_bytes_;
  Pool().lru.erase(lru_position_);
  idle_bytes_ = 0;
  return std::move(idle_);
}

Plan::~Plan() {
  std::unique_ptr<Workspace> idle;
  {
    absl::MutexLock lock(&Pool().mu);
    idle = TakeIdle();
  }
}

std::unique_ptr<Workspace> Plan::AcquireWorkspace() const {
  {
    absl::MutexLock lock(&Pool().mu);
    if (std::unique_ptr<Workspace> idle = TakeIdle()) return idle;
  }
  auto workspace = std::make_unique<Workspace>();
  workspace->fwd = AllocateForward(*this, nullptr);
  workspace->bwd = AllocateBackward(*this);
  workspace->scratchpad.resize(static_cast<size_t>(std::max<int64_t>(scratchpad_bytes, 1)));
  return workspace;
}

void Plan::ReleaseWorkspace(std::unique_ptr<Workspace> workspace) const {
  if (workspace == nullptr) return;
  const int64_t bytes = WorkspaceBytes(*workspace);
  std::vector<std::unique_ptr<Workspace>> evicted;  // Freed after the lock is released.
  IdlePool& pool = Pool();
  absl::MutexLock lock(&pool.mu);
  if (idle_ != nullptr || bytes > pool.budget) return;  // This plan keeps one; or it can never fit.
  // Make room by freeing the workspaces released longest ago (other plans', which are colder).
  while (pool.bytes + bytes > pool.budget && !pool.lru.empty()) evicted.push_back(pool.lru.front()->TakeIdle());
  idle_ = std::move(workspace);
  idle_bytes_ = bytes;
  pool.bytes += bytes;
  lru_position_ = pool.lru.insert(pool.lru.end(), this);
}

std::shared_ptr<const std::vector<float>> WeightStore::Get(int layer, const float* values, const md_t& from,
                                                          const md_t& to, std::vector<std::string>* implementations) {
  absl::MutexLock lock(&mu_);
  for (const Entry& e : entries_) {
    if (e.layer == layer && e.md == to) return e.values;
  }
  auto out = std::make_shared<std::vector<float>>(static_cast<size_t>(Floats(to)));
  // A user scratchpad, as for every primitive here: oneDNN's library-mode scratchpad is shared
  // by all primitives and is not safe while others run concurrently.
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::reorder::primitive_desc pd(DnnlEngine(), from, DnnlEngine(), to, attr);
  implementations->push_back(pd.impl_info_str());
  std::vector<char> scratchpad(pd.scratchpad_desc().get_size() + 1);
  dnnl::stream stream(DnnlEngine());
  dnnl::reorder(pd).execute(stream, {{DNNL_ARG_FROM, ConstMem(from, values)},
                                     {DNNL_ARG_TO, dnnl::memory(to, DnnlEngine(), out->data())},
                                     {DNNL_ARG_SCRATCHPAD, dnnl::memory(pd.scratchpad_desc(), DnnlEngine(), scratchpad.data())}});
  stream.wait();
  entries_.push_back(Entry{layer, to, out});
  return out;
}

std::shared_ptr<const std::vector<float>> WeightStore::Zeros(int layer, int64_t count) {
  absl::MutexLock lock(&mu_);
  const md_t key({count}, dt::f32, tag::a);
  for (const Entry& e : entries_) {
    if (e.layer == -1 - layer && e.md == key) return e.values;
  }
  auto zeros = std::make_shared<const std::vector<float>>(static_cast<size_t>(count), 0.0f);
  entries_.push_back(Entry{-1 - layer, key, zeros});
  return zeros;
}

absl::StatusOr<std::shared_ptr<const Plan>> BuildPlan(const Network& network, const std::vector<Shape>& shapes,
                                                      int64_t batch, ComputePrecision precision, WeightStore& weights) {
  auto plan = std::make_shared<Plan>();
  plan->batch = batch;
  plan->precision = precision;
  int first_linear = -1, last_linear = -1;
  for (size_t i = 0; i < network.layers.size(); ++i) {
    if (std::holds_alternative<DenseLayer>(network.layers[i]) || std::holds_alternative<Conv2dLayer>(network.layers[i])) {
      if (first_linear < 0) first_linear = static_cast<int>(i);
      last_linear = static_cast<int>(i);
    }
  }
  // Fusing changes the linear primitive's output to s(z): fine for the forward and backward
  // passes, wrong for the tangent pass, which only networks with smooth activations run.
  const bool fuse = IsPiecewiseLinear(network);
  absl::Status status = RunDnnl("discriminator: building primitives", [&] {
    Builder b(plan.get(), &weights, first_linear, last_linear);
    int cur = b.NewForwardSlot(PlainMd(batch, network.input_shape));
    int cur_diff = b.NewBackwardSlot(PlainMd(batch, network.input_shape));
    plan->input_slot = cur;
    plan->input_diff_slot = cur_diff;
    Shape shape = network.input_shape;
    bool fused_next = false;  // The previous linear layer took this activation as a post-op.
    for (size_t i = 0; i < network.layers.size(); ++i) {
      const Layer& layer = network.layers[i];
      const int index = static_cast<int>(i);
      if (std::holds_alternative<DenseLayer>(layer) || std::holds_alternative<Conv2dLayer>(layer)) {
        const bool fuse_next = fuse && i + 1 < network.layers.size() && FusableActivation(network.layers[i + 1]);
        const ActivationLayer* fused = fuse_next ? &std::get<ActivationLayer>(network.layers[i + 1]) : nullptr;
        b.AddLinear(index, layer, shapes[i], fused, &cur, &cur_diff);
        fused_next = fuse_next;
      } else if (const auto* act = std::get_if<ActivationLayer>(&layer)) {
        if (act->kind != ActivationKind::kIdentity) b.AddEltwise(index, *act, fused_next, &cur, &cur_diff);
        fused_next = false;
      } else {
        b.AddReformat(index, shape, shapes[i], &cur, &cur_diff);
      }
      shape = shapes[i];
    }
    // f must be plain (one float per sample), e.g. after a final convolution to [1, 1, 1].
    b.AddReformat(-1, shape, shape, &cur, &cur_diff);
    plan->output_slot = cur;
    plan->output_diff_slot = cur_diff;
  });
  if (!status.ok()) return status;
  return std::shared_ptr<const Plan>(std::move(plan));
}

Buffers AllocateForward(const Plan& plan, float* input) {
  Buffers buffers;
  buffers.owned.resize(plan.forward_storage.size());
  buffers.storage.resize(plan.forward_storage.size());
  for (size_t i = 0; i < plan.forward_storage.size(); ++i) {
    if (i == 0) {
      buffers.storage[i] = input;
      continue;
    }
    buffers.owned[i].assign(static_cast<size_t>(plan.forward_storage[i]), 0.0f);
    buffers.storage[i] = buffers.owned[i].data();
  }
  return buffers;
}

Buffers AllocateBackward(const Plan& plan) {
  Buffers buffers;
  buffers.owned.resize(plan.backward_storage.size());
  buffers.storage.resize(plan.backward_storage.size());
  for (size_t i = 0; i < plan.backward_storage.size(); ++i) {
    buffers.owned[i].assign(static_cast<size_t>(plan.backward_storage[i]), 0.0f);
    buffers.storage[i] = buffers.owned[i].data();
  }
  return buffers;
}

void RunForward(const Plan& plan, dnnl::stream& stream, void* scratchpad, const Buffers& fwd) {
  const dnnl::memory scratch = Scratch(plan, scratchpad);
  const auto& fs = plan.forward_slots;
  for (const Stage& st : plan.stages) {
    RunReorder(st.src_reorder, stream, Mem(fs, fwd, st.in), Mem(fs, fwd, st.src), scratch);
    if (st.kind == Stage::Kind::kLinear) {
      st.forward.execute(stream, {{DNNL_ARG_SRC, Mem(fs, fwd, st.src)},
                                  {DNNL_ARG_WEIGHTS, ConstMem(st.weights_forward_md, st.weights_forward->data())},
                                  {DNNL_ARG_BIAS, ConstMem(st.bias_md, st.bias)},
                                  {DNNL_ARG_DST, Mem(fs, fwd, st.out)},
                                  {DNNL_ARG_SCRATCHPAD, scratch}});
    } else if (st.kind == Stage::Kind::kEltwise && !st.fused) {
      st.eltwise_forward.execute(stream, {{DNNL_ARG_SRC, Mem(fs, fwd, st.src)},
                                          {DNNL_ARG_DST, Mem(fs, fwd, st.out)},
                                          {DNNL_ARG_SCRATCHPAD, scratch}});
    }
  }
  stream.wait();
}

void RunTangent(const Plan& plan, dnnl::stream& stream, void* scratchpad, const Buffers& fwd, const Buffers& tan) {
  const dnnl::memory scratch = Scratch(plan, scratchpad);
  const auto& fs = plan.forward_slots;
  for (const Stage& st : plan.stages) {
    RunReorder(st.src_reorder, stream, Mem(fs, tan, st.in), Mem(fs, tan, st.src), scratch);
    if (st.kind == Stage::Kind::kLinear) {
      // The tangent of W a + b along adot is W adot: the same primitive with a zero bias.
      st.forward.execute(stream, {{DNNL_ARG_SRC, Mem(fs, tan, st.src)},
                                  {DNNL_ARG_WEIGHTS, ConstMem(st.weights_forward_md, st.weights_forward->data())},
                                  {DNNL_ARG_BIAS, ConstMem(st.bias_md, st.zero_bias->data())},
                                  {DNNL_ARG_DST, Mem(fs, tan, st.out)},
                                  {DNNL_ARG_SCRATCHPAD, scratch}});
    } else if (st.kind == Stage::Kind::kEltwise) {
      // The tangent of s(z) is s'(z) zdot: exactly what eltwise backward computes.
      st.eltwise_backward.execute(stream, {{DNNL_ARG_SRC, Mem(fs, fwd, st.src)},
                                           {DNNL_ARG_DIFF_DST, Mem(fs, tan, st.src)},
                                           {DNNL_ARG_DIFF_SRC, Mem(fs, tan, st.out)},
                                           {DNNL_ARG_SCRATCHPAD, scratch}});
    }
  }
  stream.wait();
}

void RunBackward(const Plan& plan, dnnl::stream& stream, void* scratchpad, const Buffers& fwd, const Buffers& bwd) {
  Backward(plan, stream, scratchpad, fwd, bwd, nullptr, nullptr);
}

void RunSecondOrderBackward(const Plan& plan, dnnl::stream& stream, void* scratchpad, const Buffers& fwd,
                            const Buffers& bwd, const Buffers& tan, const Buffers& rbwd) {
  Backward(plan, stream, scratchpad, fwd, rbwd, &tan, &bwd);
}

}  // namespace discriminator_internal

void SetIdleWorkspaceBudget(int64_t bytes) {
  std::vector<std::unique_ptr<discriminator_internal::Workspace>> evicted;  // Freed after the lock.
  discriminator_internal::IdlePool& pool = discriminator_internal::Pool();
  absl::MutexLock lock(&pool.mu);
  pool.budget = std::max<int64_t>(bytes, 0);
  while (pool.bytes > pool.budget) evicted.push_back(pool.lru.front()->TakeIdle());
}

int64_t IdleWorkspaceBytes() {
  discriminator_internal::IdlePool& pool = discriminator_internal::Pool();
  absl::MutexLock lock(&pool.mu);
  return pool.bytes;
}

}  // namespace primserve
