// InitializeParameters (and the ChildTuning TASK_FREE mask) throughput against memcpy of the
// same output bytes, single- and multi-threaded.
//
// Bytes counted: the float32 output (4 * elements) for every benchmark, memcpy included, so the
// ratio says how close generating a tensor comes to merely copying one of that size. The
// InitializeParameters figures are whole calls (validation, allocation with its zero fill, and
// the Philox stream with its transform); arguments are {elements, threads}.
#include <cstring>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "core/parallel.h"
#include "core/toolkit.h"

namespace primserve {
namespace {

std::string Key(const benchmark::State& state) {
  return std::to_string(state.range(0)) + "/t" + std::to_string(state.range(1));
}

void BM_Memcpy(benchmark::State& state) {
  const int64_t n = state.range(0);
  SetComputeThreads(static_cast<int>(state.range(1)));
  const std::vector<float> in(static_cast<size_t>(n), 0.5f);
  std::vector<float> out(in.size(), 0.0f);
  for (auto _ : state) {
    ParallelForRange(n, true, [&](int64_t begin, int64_t end) {
      std::memcpy(out.data() + begin, in.data() + begin, sizeof(float) * static_cast<size_t>(end - begin));
    });
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * n * 4);
  state.SetLabel("baseline:" + Key(state));
}

void Initialize(benchmark::State& state, InitDistribution distribution) {
  const int64_t n = state.range(0);
  SetComputeThreads(static_cast<int>(state.range(1)));
  InitOptions options;
  options.shape = {n / 1024, 1024};
  options.distribution = distribution;
  options.scheme = InitScheme::kHe;
  for (auto _ : state) {
    ++options.seed;
    absl::StatusOr<InitResult> result = InitializeParameters(options);
    if (!result.ok()) {
      state.SkipWithError(std::string(result.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(result->parameters.values.data());
  }
  state.SetBytesProcessed(state.iterations() * n * 4);
  state.SetLabel("vs:" + Key(state));
}

void BM_InitializeNormal(benchmark::State& state) { Initialize(state, InitDistribution::kNormal); }
void BM_InitializeUniform(benchmark::State& state) { Initialize(state, InitDistribution::kUniform); }
void BM_InitializeTruncatedNormal(benchmark::State& state) { Initialize(state, InitDistribution::kTruncatedNormal); }

void BM_ChildTuningTaskFree(benchmark::State& state) {
  const int64_t n = state.range(0);
  SetComputeThreads(static_cast<int>(state.range(1)));
  const Tensor gradient{{n}, std::vector<float>(static_cast<size_t>(n), 1.0f)};
  ChildTuningOptions options;
  options.keep_probability = 0.3;
  options.rescale = true;
  for (auto _ : state) {
    state.PauseTiming();
    Tensor copy = gradient;  // The call masks in place; the copy is not what is measured.
    state.ResumeTiming();
    ++options.seed;
    absl::StatusOr<ChildTuningResult> result = ChildTuningMask(std::move(copy), options);
    benchmark::DoNotOptimize(result->gradient.values.data());
  }
  state.SetBytesProcessed(state.iterations() * n * 4);
  state.SetLabel("vs:" + Key(state));
}

void Sizes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"elements", "threads"});
  for (int64_t threads : {1, 2}) {
    b->Args({int64_t{1} << 20, threads});  // 4 MiB
    b->Args({int64_t{1} << 24, threads});  // 64 MiB
  }
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_Memcpy)->Apply(Sizes);
BENCHMARK(BM_InitializeNormal)->Apply(Sizes);
BENCHMARK(BM_InitializeUniform)->Apply(Sizes);
BENCHMARK(BM_InitializeTruncatedNormal)->Apply(Sizes);
BENCHMARK(BM_ChildTuningTaskFree)->Apply(Sizes);

}  // namespace
}  // namespace primserve

PRIMSERVE_BENCHMARK_MAIN()
