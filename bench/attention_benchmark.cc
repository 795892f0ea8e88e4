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
#include <cmath>
#include <random>
#include <string>
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

// The baselines: C = A B with A, B, C 2048 x 2048 on all threads, f32 or (A, B) bf16 with f32 C.
void OneDnnMatmul(benchmark::State& state, bool bf16) {
  const int64_t n = state.range(0);
  if (bf16 && !HasNativeBf16()) {
    state.SkipWithError("no native bf16 on this CPU");  // oneDNN 2.6 has no bf16 matmul here.
    return;
  }
  SetComputeThreads(0);
  dnnl::engine& engine = DnnlEngine();
  dnnl::stream stream(engine);
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  const dt in_type = bf16 ? dt::bf16 : dt::f32;
  dnnl::memory::desc in_md({n, n}, in_type, tag::ab), out_md({n, n}, dt::f32, tag::ab);
  // bf16 inputs: the upper halves of random floats (the values do not matter for speed).
  std::vector<uint16_t> a16(static_cast<size_t>(n * n), 0x3f80), b16(static_cast<size_t>(n * n), 0x3f80);
  Tensor a = Random({n, n}, 1), b = Random({n, n}, 2), c = Tensor::Zeros({n, n});
  void* a_ptr = bf16 ? static_cast<void*>(a16.data()) : a.values.data();
  void* b_ptr = bf16 ? static_cast<void*>(b16.data()) : b.values.data();
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(in_md, in_md, out_md), engine);
  dnnl::matmul matmul(pd);
  dnnl::memory am(in_md, engine, a_ptr), bm(in_md, engine, b_ptr), cm(out_md, engine, c.values.data());
  for (auto _ : state) {
    matmul.execute(stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    stream.wait();
  }
  SetRate(state, 2.0 * n * n * n);
  state.SetLabel(std::string(bf16 ? "baseline:matmul_bf16" : "baseline:matmul") + " impl=" + pd.impl_info_str());
}

void BM_OneDnnMatmul(benchmark::State& state) { OneDnnMatmul(state, false); }
void BM_OneDnnMatmulBf16(benchmark::State& state) { OneDnnMatmul(state, true); }
void BM_OneDnnMatmulAtEnd(benchmark::State& state) { OneDnnMatmul(state, false); }
void BM_OneDnnMatmulBf16AtEnd(benchmark::State& state) { OneDnnMatmul(state, true); }

void AttentionFused(benchmark::State& state, ComputePrecision precision) {
  const int64_t len = state.range(0);
  const bool causal = state.range(1) != 0;
  SetComputeThreads(0);
  const Tensor q = Random({1, kHeads, len, kHeadDim}, 1), k = Random({1, kHeads, len, kHeadDim}, 2),
               v = Random({1, kHeads, len, kHeadDim}, 3);
  AttentionOptions options;
  options.causal = causal;
  options.precision = precision;
  for (auto _ : state) {
    absl::StatusOr<AttentionResult> result = Attend(q, k, v, options);
    if (!result.ok()) {
      state.SkipWithError(std::string(result.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(result->output.values.data());
  }
  SetRate(state, AttentionFlops(len, causal));
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

// The best unfused path: per head, S = q k^T * scale (matmul), P = softmax(S) (softmax
// primitive, in place), O = P v (matmul), with the [L, L] score matrix materialised. Heads run
// one after another, each primitive on all threads.
void BM_AttentionUnfused(benchmark::State& state) {
  const int64_t len = state.range(0);
  const bool causal = state.range(1) != 0;
  SetComputeThreads(0);
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  dnnl::engine& engine = DnnlEngine();
  dnnl::stream stream(engine);
  const Tensor q = Random({kHeads, len, kHeadDim}, 1), k = Random({kHeads, len, kHeadDim}, 2),
               v = Random({kHeads, len, kHeadDim}, 3);
  Tensor out = Tensor::Zeros({kHeads, len, kHeadDim});
  std::vector<float> scores(static_cast<size_t>(len * len));
  // Causal: an additive [L, L] mask (0 / -Inf) as a binary post-op of the first matmul.
  std::vector<float> mask;
  dnnl::memory::desc q_md({len, kHeadDim}, dt::f32, tag::ab), kt_md({kHeadDim, len}, dt::f32, tag::ba),
      s_md({len, len}, dt::f32, tag::ab), v_md({len, kHeadDim}, dt::f32, tag::ab);
  dnnl::primitive_attr qk_attr;
  qk_attr.set_output_scales(0, {1.0f / std::sqrt(static_cast<float>(kHeadDim))});
  if (causal) {
    mask.assign(static_cast<size_t>(len * len), 0.0f);
    for (int64_t i = 0; i < len; ++i)
      for (int64_t j = i + 1; j < len; ++j) mask[static_cast<size_t>(i * len + j)] = -INFINITY;
    dnnl::post_ops ops;
    ops.append_binary(dnnl::algorithm::binary_add, s_md);
    qk_attr.set_post_ops(ops);
  }
  dnnl::matmul::primitive_desc qk_pd(dnnl::matmul::desc(q_md, kt_md, s_md), qk_attr, engine);
  dnnl::softmax_forward::primitive_desc sm_pd(
      dnnl::softmax_forward::desc(dnnl::prop_kind::forward_inference, s_md, 1), engine);
  dnnl::matmul::primitive_desc pv_pd(dnnl::matmul::desc(s_md, v_md, v_md), engine);
  dnnl::matmul qk(qk_pd), pv(pv_pd);
  dnnl::softmax_forward softmax(sm_pd);
  dnnl::memory s_mem(s_md, engine, scores.data());
  for (auto _ : state) {
    for (int64_t h = 0; h < kHeads; ++h) {
      dnnl::memory qm(q_md, engine, const_cast<float*>(q.values.data()) + h * len * kHeadDim);
      dnnl::memory km(kt_md, engine, const_cast<float*>(k.values.data()) + h * len * kHeadDim);
      dnnl::memory vm(v_md, engine, const_cast<float*>(v.values.data()) + h * len * kHeadDim);
      dnnl::memory om(v_md, engine, out.values.data() + h * len * kHeadDim);
      std::unordered_map<int, dnnl::memory> qk_args = {{DNNL_ARG_SRC, qm}, {DNNL_ARG_WEIGHTS, km}, {DNNL_ARG_DST, s_mem}};
      if (causal) {
        qk_args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] = dnnl::memory(s_md, engine, mask.data());
      }
      qk.execute(stream, qk_args);
      softmax.execute(stream, {{DNNL_ARG_SRC, s_mem}, {DNNL_ARG_DST, s_mem}});
      pv.execute(stream, {{DNNL_ARG_SRC, s_mem}, {DNNL_ARG_WEIGHTS, vm}, {DNNL_ARG_DST, om}});
    }
    stream.wait();
  }
  SetRate(state, AttentionFlops(len, causal));
  state.SetLabel("vs:matmul baseline:" + ShapeKey("unfused", len, causal) + " impl=" + qk_pd.impl_info_str() + "," +
                 sm_pd.impl_info_str());
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
BENCHMARK(BM_AttentionLinear)->Apply([](auto* b) { Lengths(b, {256, 512, 1024, 2048, 4096, 8192}); });
// The peak again after the suite: a shared machine drifts, and the ratios use the higher reading
// (bench_util.h), never a low one that would flatter them.
BENCHMARK(BM_OneDnnMatmulAtEnd)->Arg(2048)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_OneDnnMatmulBf16AtEnd)->Arg(2048)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace primserve

PRIMSERVE_BENCHMARK_MAIN()
