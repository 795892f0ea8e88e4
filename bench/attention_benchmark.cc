// Attention throughput (GFLOP/s) against one large oneDNN f32 matmul measured in the same run
// (the machine's practical peak), the best unfused path (oneDNN matmul -> softmax -> matmul
// with the score matrix materialised), and linear attention.
//
// FLOPs counted: 4 B H Lq Lk D per softmax call (q k^T and p v), halved for causal; linear
// attention is timed with the same count so its "rate" compares times directly (the ratio to
// fused softmax is then a speed ratio).
//
// BF16 (compute_precision) runs the same shapes; its ratios are to F32 fused attention of the
// same shape (the speed-up) and to one large oneDNN bf16 matmul. Fused F32 is also printed as a
// ratio to the unfused path of the same shape.
//
// Args: {seq_len, causal}; B = 1, H = 8, D = Dv = 64.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <omp.h>

#include "bench/bench_util.h"
#include "core/attention.h"
#include "core/dnnl_context.h"
#include "core/parallel.h"
#include "core/tile_matmul.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace primserve {
namespace {

constexpr int64_t kHeads = 8;
constexpr int64_t kHeadDim = 64;

Tensor Random(Shape shape, int seed) {
  Tensor t = Tensor::Zeros(std::move(shape));
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  for (float& v : t.values) v = dist(rng);
  return t;
}

double AttentionFlops(int64_t len, bool causal) {
  const double flops = 4.0 * kHeads * len * len * kHeadDim;
  return causal ? flops / 2 : flops;
}

void SetRate(benchmark::State& state, double flops_per_iteration) {
  state.counters["rate"] =
      benchmark::Counter(flops_per_iteration * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// Baseline key of one attention shape, e.g. "f32_L2048_causal0".
std::string ShapeKey(const char* what, int64_t len, bool causal) {
  return std::string(what) + "_L" + std::to_string(len) + "_causal" + (causal ? "1" : "0");
}

// One call of a benchmarked computation, set up once; run() returns false on failure, with the
// message in *error. Shared by the plain benchmarks and the paired ones.
struct Workload {
  std::function<bool()> run;
  double flops = 0;  // Per call.
  std::string impl;  // oneDNN implementation names, for labels.
  std::shared_ptr<std::string> error = std::make_shared<std::string>();
};

// The baselines: C = A B with A, B, C n x n on all threads, f32 or (A, B) bf16 with f32 C.
Workload MatmulWorkload(int64_t n, bool bf16) {
  struct Buffers {
    dnnl::stream stream{DnnlEngine()};
    Tensor a, b, c;
    std::vector<uint16_t> a16, b16;
    dnnl::matmul matmul;
    std::unordered_map<int, dnnl::memory> args;
  };
  auto st = std::make_shared<Buffers>();
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  dnnl::engine& engine = DnnlEngine();
  const dt in_type = bf16 ? dt::bf16 : dt::f32;
  dnnl::memory::desc in_md({n, n}, in_type, tag::ab), out_md({n, n}, dt::f32, tag::ab);
  // bf16 inputs: ones (the values do not matter for speed).
  if (bf16) {
    st->a16.assign(static_cast<size_t>(n * n), 0x3f80);
    st->b16.assign(static_cast<size_t>(n * n), 0x3f80);
  } else {
    st->a = Random({n, n}, 1);
    st->b = Random({n, n}, 2);
  }
  st->c = Tensor::Zeros({n, n});
  void* a_ptr = bf16 ? static_cast<void*>(st->a16.data()) : st->a.values.data();
  void* b_ptr = bf16 ? static_cast<void*>(st->b16.data()) : st->b.values.data();
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(in_md, in_md, out_md), engine);
  st->matmul = dnnl::matmul(pd);
  st->args = {{DNNL_ARG_SRC, dnnl::memory(in_md, engine, a_ptr)},
              {DNNL_ARG_WEIGHTS, dnnl::memory(in_md, engine, b_ptr)},
              {DNNL_ARG_DST, dnnl::memory(out_md, engine, st->c.values.data())}};
  Workload w;
  w.flops = 2.0 * n * n * n;
  w.impl = pd.impl_info_str();
  w.run = [st] {
    st->matmul.execute(st->stream, st->args);
    st->stream.wait();
    return true;
  };
  return w;
}

// One Attend call on B = 1, H = 8, D = Dv = 64 random inputs.
Workload FusedWorkload(int64_t len, bool causal, ComputePrecision precision) {
  auto q = std::make_shared<const Tensor>(Random({1, kHeads, len, kHeadDim}, 1));
  auto k = std::make_shared<const Tensor>(Random({1, kHeads, len, kHeadDim}, 2));
  auto v = std::make_shared<const Tensor>(Random({1, kHeads, len, kHeadDim}, 3));
  AttentionOptions options;
  options.causal = causal;
  options.precision = precision;
  Workload w;
  w.flops = AttentionFlops(len, causal);
  w.run = [q, k, v, options, error = w.error] {
    absl::StatusOr<AttentionResult> result = Attend(*q, *k, *v, options);
    if (!result.ok()) *error = std::string(result.status().message());
    benchmark::DoNotOptimize(result);
    return result.ok();
  };
  return w;
}

// Runs `w` once per benchmark iteration.
void RunWorkload(benchmark::State& state, const Workload& w) {
  for (auto _ : state) {
    if (!w.run()) {
      state.SkipWithError(w.error->c_str());
      return;
    }
  }
  SetRate(state, w.flops);
}

void OneDnnMatmul(benchmark::State& state, bool bf16) {
  if (bf16 && !HasNativeBf16()) {
    state.SkipWithError("no native bf16 on this CPU");  // oneDNN 2.6 has no bf16 matmul here.
    return;
  }
  SetComputeThreads(0);
  const Workload w = MatmulWorkload(state.range(0), bf16);
  RunWorkload(state, w);
  state.SetLabel(std::string(bf16 ? "baseline:matmul_bf16" : "baseline:matmul") + " impl=" + w.impl);
}

void BM_OneDnnMatmul(benchmark::State& state) { OneDnnMatmul(state, false); }
void BM_OneDnnMatmulBf16(benchmark::State& state) { OneDnnMatmul(state, true); }
void BM_OneDnnMatmulAtEnd(benchmark::State& state) { OneDnnMatmul(state, false); }
void BM_OneDnnMatmulBf16AtEnd(benchmark::State& state) { OneDnnMatmul(state, true); }

void AttentionFused(benchmark::State& state, ComputePrecision precision) {
  const int64_t len = state.range(0);
  const bool causal = state.range(1) != 0;
  SetComputeThreads(0);
  RunWorkload(state, FusedWorkload(len, causal, precision));
  if (precision == ComputePrecision::kF32) {
    state.SetLabel("vs:matmul vs:" + ShapeKey("unfused", len, causal) + " baseline:" + ShapeKey("f32", len, causal));
  } else {
    state.SetLabel("vs:" + ShapeKey("f32", len, causal) + " vs:matmul_bf16");
  }
}

void BM_AttentionFused(benchmark::State& state) { AttentionFused(state, ComputePrecision::kF32); }
void BM_AttentionFusedBf16(benchmark::State& state) { AttentionFused(state, ComputePrecision::kBF16); }

void BM_AttentionLinear(benchmark::State& state) {
  const int64_t len = state.range(0);
  const bool causal = state.range(1) != 0;
  SetComputeThreads(0);
  const Tensor q = Random({1, kHeads, len, kHeadDim}, 1), k = Random({1, kHeads, len, kHeadDim}, 2),
               v = Random({1, kHeads, len, kHeadDim}, 3);
  AttentionOptions options;
  options.causal = causal;
  options.kind = AttentionKind::kLinear;
  for (auto _ : state) {
    absl::StatusOr<AttentionResult> result = Attend(q, k, v, options);
    if (!result.ok()) {
      state.SkipWithError(std::string(result.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(result->output.values.data());
  }
  // Softmax-equivalent FLOPs: the ratio to BM_AttentionFused of the same shape is a speed ratio.
  SetRate(state, AttentionFlops(len, causal));
  state.SetLabel("vs:matmul (softmax-equivalent FLOPs)");
}

// LINEAR decoding (one query row) against 4096 keys, with `group` query heads on one key/value
// head (multi-query attention). Rate: query heads per second. The group shares phi(K) and the
// state phi(K)^T V, so a head of a large group costs far less than a lone head, whose call
// builds the state for it alone; the ratio to the lone head shows how much (about 1 when every
// query head rebuilt the state).
void BM_AttentionLinearSharedKv(benchmark::State& state) {
  const int64_t group = state.range(0), keys = 4096;
  SetComputeThreads(0);
  const Tensor q = Random({1, group, 1, kHeadDim}, 1), k = Random({1, 1, keys, kHeadDim}, 2),
               v = Random({1, 1, keys, kHeadDim}, 3);
  AttentionOptions options;
  options.kind = AttentionKind::kLinear;
  for (auto _ : state) {
    absl::StatusOr<AttentionResult> result = Attend(q, k, v, options);
    if (!result.ok()) {
      state.SkipWithError(std::string(result.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(result->output.values.data());
  }
  SetRate(state, static_cast<double>(group));
  state.SetLabel(group == 1 ? "baseline:linear_lone_head (query heads/s)" : "vs:linear_lone_head (query heads/s)");
}

// The best unfused path: per head, S = q k^T * scale (matmul), P = softmax(S) (softmax
// primitive, in place), O = P v (matmul), with the [L, L] score matrix materialised. Heads run
// one after another, each primitive on all threads.
Workload UnfusedWorkload(int64_t len, bool causal) {
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  struct Buffers {
    dnnl::stream stream{DnnlEngine()};
    Tensor q, k, v, out;
    std::vector<float> scores, mask;
    dnnl::memory::desc q_md, kt_md, s_md, v_md;
    dnnl::matmul qk, pv;
    dnnl::softmax_forward softmax;
  };
  auto st = std::make_shared<Buffers>();
  dnnl::engine& engine = DnnlEngine();
  st->q = Random({kHeads, len, kHeadDim}, 1);
  st->k = Random({kHeads, len, kHeadDim}, 2);
  st->v = Random({kHeads, len, kHeadDim}, 3);
  st->out = Tensor::Zeros({kHeads, len, kHeadDim});
  st->scores.resize(static_cast<size_t>(len * len));
  st->q_md = dnnl::memory::desc({len, kHeadDim}, dt::f32, tag::ab);
  st->kt_md = dnnl::memory::desc({kHeadDim, len}, dt::f32, tag::ba);
  st->s_md = dnnl::memory::desc({len, len}, dt::f32, tag::ab);
  st->v_md = dnnl::memory::desc({len, kHeadDim}, dt::f32, tag::ab);
  dnnl::primitive_attr qk_attr;
  qk_attr.set_output_scales(0, {1.0f / std::sqrt(static_cast<float>(kHeadDim))});
  // Causal: an additive [L, L] mask (0 / -Inf) as a binary post-op of the first matmul.
  if (causal) {
    st->mask.assign(static_cast<size_t>(len * len), 0.0f);
    for (int64_t i = 0; i < len; ++i)
      for (int64_t j = i + 1; j < len; ++j) st->mask[static_cast<size_t>(i * len + j)] = -INFINITY;
    dnnl::post_ops ops;
    ops.append_binary(dnnl::algorithm::binary_add, st->s_md);
    qk_attr.set_post_ops(ops);
  }
  dnnl::matmul::primitive_desc qk_pd(dnnl::matmul::desc(st->q_md, st->kt_md, st->s_md), qk_attr, engine);
  dnnl::softmax_forward::primitive_desc sm_pd(
      dnnl::softmax_forward::desc(dnnl::prop_kind::forward_inference, st->s_md, 1), engine);
  dnnl::matmul::primitive_desc pv_pd(dnnl::matmul::desc(st->s_md, st->v_md, st->v_md), engine);
  st->qk = dnnl::matmul(qk_pd);
  st->pv = dnnl::matmul(pv_pd);
  st->softmax = dnnl::softmax_forward(sm_pd);
  Workload w;
  w.flops = AttentionFlops(len, causal);
  w.impl = std::string(qk_pd.impl_info_str()) + "," + sm_pd.impl_info_str();
  w.run = [st, len, causal] {
    dnnl::engine& engine = DnnlEngine();
    dnnl::memory s_mem(st->s_md, engine, st->scores.data());
    for (int64_t h = 0; h < kHeads; ++h) {
      const int64_t offset = h * len * kHeadDim;
      dnnl::memory qm(st->q_md, engine, st->q.values.data() + offset);
      dnnl::memory km(st->kt_md, engine, st->k.values.data() + offset);
      dnnl::memory vm(st->v_md, engine, st->v.values.data() + offset);
      dnnl::memory om(st->v_md, engine, st->out.values.data() + offset);
      std::unordered_map<int, dnnl::memory> qk_args = {{DNNL_ARG_SRC, qm}, {DNNL_ARG_WEIGHTS, km}, {DNNL_ARG_DST, s_mem}};
      if (causal) {
        qk_args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] = dnnl::memory(st->s_md, engine, st->mask.data());
      }
      st->qk.execute(st->stream, qk_args);
      st->softmax.execute(st->stream, {{DNNL_ARG_SRC, s_mem}, {DNNL_ARG_DST, s_mem}});
      st->pv.execute(st->stream, {{DNNL_ARG_SRC, s_mem}, {DNNL_ARG_WEIGHTS, vm}, {DNNL_ARG_DST, om}});
    }
    st->stream.wait();
    return true;
  };
  return w;
}

void BM_AttentionUnfused(benchmark::State& state) {
  const int64_t len = state.range(0);
  const bool causal = state.range(1) != 0;
  SetComputeThreads(0);
  const Workload w = UnfusedWorkload(len, causal);
  RunWorkload(state, w);
  state.SetLabel("vs:matmul baseline:" + ShapeKey("unfused", len, causal) + " impl=" + w.impl);
}

// The ratio targets, measured in pairs: the fused kernel and its baseline run one after
// the other (in alternating order), and the figure is the median of the per-pair speed ratios.
// These machines drift by 20% within minutes; a pair sees nearly one machine state, so slow
// drift cancels (faster noise does not: three runs on one Zen 3 host still differed by up to 0.1
// in a ratio). The two halves of a pair last about as long: the shorter computation repeats
// (the count fixed from a timed warm-up). A 0.1 s matmul against a 5 s attention call would
// time the machine's quiet moments against its average, favouring the short side. Args:
// {L, causal, versus}.
enum Versus : int64_t {
  kVsMatmul = 0,   // F32 fused against the 2048^3 f32 matmul (GFLOP/s over GFLOP/s).
  kVsUnfused = 1,  // F32 fused against the unfused path of the same shape.
  kBf16VsF32 = 2,  // BF16 fused against F32 fused of the same shape.
};

// Pairs per shape: a median of several at every length, about 10 s per shape at L = 8192.
int64_t PairsFor(int64_t len) { return len <= 2048 ? 15 : len <= 4096 ? 9 : len <= 8192 ? 5 : 3; }

// Seconds for `calls` back-to-back calls of `w`.
double SecondsOf(const Workload& w, int64_t calls, bool* ok) {
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; *ok && i < calls; ++i) *ok = w.run();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void BM_AttentionPaired(benchmark::State& state) {
  const int64_t len = state.range(0);
  const bool causal = state.range(1) != 0;
  const auto versus = static_cast<Versus>(state.range(2));
  if (versus == kBf16VsF32 && !HasNativeBf16()) {
    state.SkipWithError("no native bf16 on this CPU");
    return;
  }
  SetComputeThreads(0);
  const Workload subject =
      FusedWorkload(len, causal, versus == kBf16VsF32 ? ComputePrecision::kBF16 : ComputePrecision::kF32);
  const Workload baseline = versus == kVsMatmul    ? MatmulWorkload(2048, false)
                            : versus == kVsUnfused ? UnfusedWorkload(len, causal)
                                                   : FusedWorkload(len, causal, ComputePrecision::kF32);
  bool ok = true;
  SecondsOf(subject, 1, &ok);  // Warm-up: primitives, buffers, first-touch page faults.
  SecondsOf(baseline, 1, &ok);
  // Calls per half, so that both halves of a pair last about as long.
  const double subject_call = SecondsOf(subject, 1, &ok), baseline_call = SecondsOf(baseline, 1, &ok);
  const int64_t subject_calls = std::max<int64_t>(1, std::llround(baseline_call / subject_call));
  const int64_t baseline_calls = std::max<int64_t>(1, std::llround(subject_call / baseline_call));
  std::vector<double> ratios;
  double subject_seconds = 0, baseline_seconds = 0;
  for (auto _ : state) {  // One iteration (Iterations(1)) of PairsFor(len) pairs.
    for (int64_t pair = 0; ok && pair < PairsFor(len); ++pair) {
      const bool subject_first = pair % 2 == 0;
      double s = 0, b = 0;
      if (subject_first) s = SecondsOf(subject, subject_calls, &ok);
      b = SecondsOf(baseline, baseline_calls, &ok);
      if (!subject_first) s = SecondsOf(subject, subject_calls, &ok);
      subject_seconds += s;
      baseline_seconds += b;
      ratios.push_back((subject.flops * subject_calls / s) / (baseline.flops * baseline_calls / b));
    }
    state.SetIterationTime(subject_seconds);
  }
  if (!ok) {
    state.SkipWithError((subject.error->empty() ? *baseline.error : *subject.error).c_str());
    return;
  }
  std::sort(ratios.begin(), ratios.end());
  const size_t n = ratios.size();
  state.counters["paired_ratio"] = n % 2 == 1 ? ratios[n / 2] : 0.5 * (ratios[n / 2 - 1] + ratios[n / 2]);
  state.counters["ratio_min"] = ratios.front();
  state.counters["ratio_max"] = ratios.back();
  state.counters["pairs"] = static_cast<double>(n);
  state.counters["rate"] = subject.flops * static_cast<double>(n * subject_calls) / subject_seconds;
  state.counters["baseline_rate"] = baseline.flops * static_cast<double>(n * baseline_calls) / baseline_seconds;
  state.counters["subject_calls"] = static_cast<double>(subject_calls);
  state.counters["baseline_calls"] = static_cast<double>(baseline_calls);
  static const char* const kNames[] = {"fused_f32/matmul_f32", "fused_f32/unfused_f32", "fused_bf16/fused_f32"};
  state.SetLabel(std::string("paired:") + kNames[versus]);
}

// Diagnostic: the fused kernel's two tile products alone, on every thread at once (each with
// its own buffers, as in the kernel): S = scale q k^T [128 x keys, k = 64] and acc += P v
// [128 x 64, k = keys]. Their rate against the large matmul bounds what the fused kernel can
// reach; keys below 512 are the edge tiles of causal attention. Args: {product (0 = scores,
// 1 = values), bf16, keys}.
void BM_TileProduct(benchmark::State& state) {
  const bool values = state.range(0) != 0;
  const bool bf16 = state.range(1) != 0;
  if (bf16 && !HasNativeBf16()) {
    state.SkipWithError("no native bf16 on this CPU");
    return;
  }
  SetComputeThreads(0);
  constexpr int64_t kQ = 128, kLd = 512, kLen = 2048;
  const int64_t kK = state.range(2);
  MatmulShape shape;
  shape.m = kQ;
  shape.bf16 = bf16;
  if (values) {
    shape.n = kHeadDim, shape.k = kK, shape.lda = kLd, shape.ldb = kHeadDim, shape.ldc = kHeadDim;
    shape.accumulate = true;
  } else {
    shape.n = kK, shape.k = kHeadDim, shape.lda = kHeadDim, shape.ldb = kHeadDim, shape.ldc = kLd;
    shape.b_transposed = true;
    shape.scale = 0.125f;
  }
  absl::StatusOr<std::shared_ptr<const TileMatmul>> matmul = TileMatmul::Get(shape);
  if (!matmul.ok()) {
    state.SkipWithError(std::string(matmul.status().message()).c_str());
    return;
  }
  const int threads = ComputeThreads();
  const int64_t tiles_per_thread = kLen / kK * 16;  // Key tiles of B over kLen keys, cycled.
  for (auto _ : state) {
#pragma omp parallel num_threads(threads)
    {
      omp_set_num_threads(1);
      dnnl::stream stream(DnnlEngine());
      TileMatmulArgs args;
      std::vector<float> a(static_cast<size_t>(kQ * kLd), 0.01f), c(static_cast<size_t>(kQ * kLd), 0.0f);
      std::vector<float> b(static_cast<size_t>(kLen * kHeadDim), 0.01f);
      std::vector<char> scratch((*matmul)->scratchpad_bytes());
      for (int64_t t = 0; t < tiles_per_thread; ++t) {
        const int64_t j0 = (t * kK) % kLen;
        (*matmul)->Execute(stream, args, a.data(), b.data() + j0 * kHeadDim, c.data(), scratch.data());
      }
    }
  }
  SetRate(state, 2.0 * kQ * kK * kHeadDim * tiles_per_thread * threads);
  state.SetLabel(std::string("vs:") + (bf16 ? "matmul_bf16" : "matmul") + " impl=" + (*matmul)->implementation());
}

void Lengths(benchmark::internal::Benchmark* b, std::initializer_list<int64_t> lengths) {
  b->ArgNames({"L", "causal"});
  for (int64_t causal : {0, 1})
    for (int64_t len : lengths) b->Args({len, causal});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_OneDnnMatmul)->Arg(2048)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_OneDnnMatmulBf16)->Arg(2048)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AttentionFused)->Apply([](auto* b) { Lengths(b, {256, 512, 1024, 2048, 4096, 8192, 16384}); });
BENCHMARK(BM_AttentionFusedBf16)->Apply([](auto* b) { Lengths(b, {512, 2048, 4096, 8192}); });
BENCHMARK(BM_AttentionUnfused)->Apply([](auto* b) { Lengths(b, {512, 2048, 4096, 8192}); });
BENCHMARK(BM_TileProduct)->ArgNames({"values", "bf16", "keys"})->ArgsProduct({{0, 1}, {0, 1}, {128, 256, 512}})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AttentionPaired)->Apply([](auto* b) {
  b->ArgNames({"L", "causal", "versus"});
  for (int64_t versus : {kVsMatmul, kVsUnfused, kBf16VsF32})
    for (int64_t causal : {0, 1})
      for (int64_t len : {2048, 4096, 8192, 16384}) {
        // Only fused runs L = 16384 (the unfused scores would take 8.6 GB); BF16 is measured to 8192.
        if (len == 16384 && versus != kVsMatmul) continue;
        b->Args({len, causal, versus});
      }
  // Pairs are the repetitions here: one run of each, whatever --benchmark_repetitions says.
  b->Iterations(1)->Repetitions(1)->UseManualTime()->Unit(benchmark::kMillisecond);
});
BENCHMARK(BM_AttentionLinear)->Apply([](auto* b) { Lengths(b, {256, 512, 1024, 2048, 4096, 8192}); });
BENCHMARK(BM_AttentionLinearSharedKv)->ArgName("group")->Arg(1)->Arg(64)->Arg(512)->UseRealTime()->Unit(benchmark::kMillisecond);
// The peak again after the suite: a shared machine drifts, and the ratios use the higher reading
// (bench_util.h), never a low one that would flatter them.
BENCHMARK(BM_OneDnnMatmulAtEnd)->Arg(2048)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_OneDnnMatmulBf16AtEnd)->Arg(2048)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace primserve

PRIMSERVE_BENCHMARK_MAIN()
