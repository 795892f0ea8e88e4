// Discriminator scoring (core/discriminator.h) on a DCGAN-style discriminator for 3x32x32
// inputs: conv 3->64->128->256 (4x4, stride 2, padding 1), LeakyReLU 0.2 (or TANH), Flatten,
// Dense 4096 -> 1. About 35 MFLOP forward and 35 MFLOP backward-data per sample.
//
// Two ratios, each measured in the same run:
//   metric 0, rate = samples/s x forward FLOPs per sample ("forward-equivalent" FLOP/s, so the
//     G/s column reads as GFLOP/s of the forward pass): Score against the forward pass alone on
//     the same compiled plan (label "vs:fwd_<net>_b<batch>"); the ratio is a samples/s ratio,
//     the cost of the gradient (~0.5 when the backward-data pass costs as much as the forward
//     one; ~0.25 with the Hessian term).
//   metric 1, rate = FLOP/s (forward + backward-data FLOPs, the Hessian passes not counted):
//     against one large oneDNN f32 matmul (the machine's practical peak).
// and for compute_precision BF16 (ScoreOptions::precision; skipped without native bf16):
//   metric 2, the F32 Score run that is the baseline of metric 3 (label
//     "baseline:score_f32_b<batch>"; same rate as metric 1);
//   metric 3, BF16 Score against F32 Score of the same batch (a samples/s ratio; target 1.6x);
//   metric 4, BF16 Score FLOP/s against one large oneDNN bf16 matmul (bf16 A and B, f32 C).
// Modes: 0 = GRADIENT_NORM scores; 1 = plus input_gradients (piecewise linear: exact region
// formula, no extra pass); 2 = TANH network with input_gradients (Hessian-vector term: a tangent
// and a second-order backward pass, about twice the work); 3 = mode 0 with
// CompileOptions::max_chunk = 256 (one chunk of 256 instead of the default four of 64).
#include <cmath>
#include <map>
#include <utility>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "core/discriminator.h"
#include "core/discriminator_internal.h"
#include "core/dnnl_context.h"
#include "core/parallel.h"
#include "core/tile_matmul.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace primserve {
namespace {

Tensor Random(Shape shape, std::mt19937& rng, double stddev) {
  Tensor t = Tensor::Zeros(std::move(shape));
  std::normal_distribution<float> dist(0.0f, static_cast<float>(stddev));
  for (float& v : t.values) v = dist(rng);
  return t;
}

Conv2dLayer Conv(int64_t out, int64_t in, std::mt19937& rng) {
  Conv2dLayer conv;
  conv.weight = Random({out, in, 4, 4}, rng, std::sqrt(2.0 / (in * 16.0)));
  conv.bias = Random({out}, rng, 0.01);
  conv.stride = 2;
  conv.padding = 1;
  return conv;
}

Network Dcgan(bool tanh) {
  std::mt19937 rng(42);
  const ActivationLayer act{tanh ? ActivationKind::kTanh : ActivationKind::kLeakyRelu, 0.2};
  Network net;
  net.input_shape = {3, 32, 32};
  net.layers = {Conv(64, 3, rng),  act, Conv(128, 64, rng), act, Conv(256, 128, rng), act, FlattenLayer{},
                DenseLayer{Random({1, 4096}, rng, std::sqrt(1.0 / 4096)), Random({1}, rng, 0.01)}};
  return net;
}

// Multiply-adds x 2 of one sample's forward pass (the backward-data pass has the same count).
double ForwardFlops() {
  const double conv1 = 64.0 * 16 * 16 * 3 * 16, conv2 = 128.0 * 8 * 8 * 64 * 16, conv3 = 256.0 * 4 * 4 * 128 * 16;
  return 2.0 * (conv1 + conv2 + conv3 + 4096.0);
}

const CompiledNetwork& Compiled(bool tanh, int64_t max_chunk = CompileOptions{}.max_chunk) {
  static auto* cache = new std::map<std::pair<bool, int64_t>, std::shared_ptr<const CompiledNetwork>>();
  auto& entry = (*cache)[{tanh, max_chunk}];
  if (entry == nullptr) {
    CompileOptions options;
    options.max_chunk = max_chunk;
    entry = *CompiledNetwork::Create(Dcgan(tanh), options);
  }
  return *entry;
}

std::string Key(bool tanh, int64_t batch) { return std::string(tanh ? "tanh" : "lrelu") + "_b" + std::to_string(batch); }

void SetRate(benchmark::State& state, double per_iteration) {
  state.counters["rate"] =
      benchmark::Counter(per_iteration * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void SetCounters(benchmark::State& state, int64_t batch, double flops_per_sample) {
  state.counters["samples/s"] =
      benchmark::Counter(static_cast<double>(batch * state.iterations()), benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(1e-9 * flops_per_sample * static_cast<double>(batch * state.iterations()),
                                                 benchmark::Counter::kIsRate);
}

// The baselines of metrics 1 and 4: C = A B, 2048 x 2048, all threads; A and B f32 (arg 1 = 0)
// or bf16 (arg 1 = 1; C f32 either way, as the discriminator's bf16 products accumulate in f32).
void BM_OneDnnMatmul(benchmark::State& state) {
  const int64_t n = state.range(0);
  const bool bf16 = state.range(1) != 0;
  if (bf16 && !HasNativeBf16()) {
    state.SkipWithError("no native bf16 on this CPU");
    return;
  }
  SetComputeThreads(0);
  dnnl::engine& engine = DnnlEngine();
  dnnl::stream stream(engine);
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  const dnnl::memory::desc in_md({n, n}, bf16 ? dt::bf16 : dt::f32, tag::ab), out_md({n, n}, dt::f32, tag::ab);
  std::mt19937 rng(1);
  // Buffers of n x n floats hold the bf16 inputs too (half of each is used); bf16 inputs are
  // the float bits' upper halves, so random float data gives finite bf16 values.
  Tensor a = Random({n, n}, rng, 1.0), b = Random({n, n}, rng, 1.0), c = Tensor::Zeros({n, n});
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(in_md, in_md, out_md), engine);
  dnnl::matmul matmul(pd);
  dnnl::memory am(in_md, engine, a.values.data()), bm(in_md, engine, b.values.data()),
      cm(out_md, engine, c.values.data());
  for (auto _ : state) {
    matmul.execute(stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    stream.wait();
  }
  SetRate(state, 2.0 * n * n * n);
  state.SetLabel(std::string(bf16 ? "baseline:matmul_bf16" : "baseline:matmul") + " impl=" + pd.impl_info_str());
}

void BM_OneDnnMatmulAtEnd(benchmark::State& state) { BM_OneDnnMatmul(state); }

// The forward pass alone, on the plan and workspace Score uses.
void BM_Forward(benchmark::State& state) {
  const int64_t batch = state.range(0);
  const bool tanh = state.range(1) != 0;
  SetComputeThreads(0);
  const CompiledNetwork& net = Compiled(tanh);
  std::mt19937 rng(7);
  Tensor x = Random({batch, 3, 32, 32}, rng, 1.0);
  auto plan = net.GetPlan(batch);
  if (!plan.ok()) {
    state.SkipWithError(std::string(plan.status().message()).c_str());
    return;
  }
  std::unique_ptr<discriminator_internal::Workspace> ws = (*plan)->AcquireWorkspace();
  ws->fwd.storage[0] = x.values.data();
  dnnl::stream stream(DnnlEngine());
  for (auto _ : state) {
    discriminator_internal::RunForward(**plan, stream, ws->scratchpad.data(), ws->fwd);
    benchmark::DoNotOptimize(ws->fwd.storage.back());
  }
  (*plan)->ReleaseWorkspace(std::move(ws));
  SetRate(state, ForwardFlops() * static_cast<double>(batch));
  SetCounters(state, batch, ForwardFlops());
  state.SetLabel("baseline:fwd_" + Key(tanh, batch));
}

// Args: batch, mode, metric (see the top).
void BM_Score(benchmark::State& state) {
  const int64_t batch = state.range(0);
  const int mode = static_cast<int>(state.range(1));
  const int metric = static_cast<int>(state.range(2));
  const bool tanh = mode == 2;
  const bool bf16 = metric >= 3;
  if (bf16 && !HasNativeBf16()) {
    state.SkipWithError("no native bf16 on this CPU");
    return;
  }
  SetComputeThreads(0);
  const CompiledNetwork& net = mode == 3 ? Compiled(false, 256) : Compiled(tanh);
  std::mt19937 rng(7);
  const Tensor x = Random({batch, 3, 32, 32}, rng, 1.0);
  ScoreOptions options;
  options.return_input_gradient = mode != 0;
  options.precision = bf16 ? ComputePrecision::kBF16 : ComputePrecision::kF32;
  // One untimed call: a plan's primitives are created on its first use (a chunk size or precision
  // not run before), which took 0.5 s of the one timed iteration of a 256 chunk once.
  if (absl::StatusOr<ScoreResult> warm = Score(net, x, options); !warm.ok()) {
    state.SkipWithError(std::string(warm.status().message()).c_str());
    return;
  }
  for (auto _ : state) {
    absl::StatusOr<ScoreResult> result = Score(net, x, options);
    if (!result.ok()) {
      state.SkipWithError(std::string(result.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(result->scores.values.data());
  }
  SetCounters(state, batch, 2 * ForwardFlops());
  if (metric == 0) {
    SetRate(state, ForwardFlops() * static_cast<double>(batch));
    state.SetLabel("vs:fwd_" + Key(tanh, batch) + " (forward-equivalent FLOPs: a samples/s ratio)");
    return;
  }
  SetRate(state, 2 * ForwardFlops() * static_cast<double>(batch));
  const std::string f32_score = "score_f32_" + Key(tanh, batch);
  switch (metric) {
    case 1: state.SetLabel("vs:matmul (forward + backward-data FLOPs)"); break;
    case 2: state.SetLabel("baseline:" + f32_score + " (F32 Score, the baseline of BF16 Score)"); break;
    case 3: state.SetLabel("vs:" + f32_score + " (BF16 Score: a samples/s ratio)"); break;
    default: state.SetLabel("vs:matmul_bf16 (BF16 Score, forward + backward-data FLOPs)"); break;
  }
}

// The matmul peak, f32 and bf16 (registered at the start and again at the end of the suite).
void MatmulPeakArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"n", "bf16"})->Args({2048, 0})->Args({2048, 1})->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_OneDnnMatmul)->Apply(MatmulPeakArgs);
BENCHMARK(BM_Forward)
    ->ArgNames({"batch", "tanh"})
    ->Args({64, 0})
    ->Args({256, 0})
    ->Args({64, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Score)
    ->ArgNames({"batch", "mode", "metric"})
    ->Args({64, 0, 0})
    ->Args({256, 0, 0})
    ->Args({64, 1, 0})
    ->Args({64, 2, 0})
    ->Args({64, 0, 1})
    ->Args({256, 0, 1})
    ->Args({256, 3, 1})
    ->Args({64, 0, 2})
    ->Args({64, 0, 3})
    ->Args({64, 0, 4})
    ->Args({256, 0, 2})
    ->Args({256, 0, 3})
    ->Args({256, 0, 4})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
// The peak again after the suite (drift): the ratios use the higher reading (bench_util.h).
BENCHMARK(BM_OneDnnMatmulAtEnd)->Apply(MatmulPeakArgs);

}  // namespace
}  // namespace primserve

PRIMSERVE_BENCHMARK_MAIN()
