// Analytic logistic regression (MATH.md section 5) against its two natural yardsticks, measured
// in the same run:
//   * "fit": the whole analytic fit (ComputeStatistics + FitAnalytic) on N = 1,000,000,
//     d = 128, K = 10 float32 next to ONE oneDNN matmul computing the d x d scatter X^T X of the
//     same data (the unavoidable core of any fit; target: the fit within 2x of it, ratio >= 0.5).
//   * "solver_n<N>": the analytic fit against MAXIMUM_LIKELIHOOD (L-BFGS, l2 = 1e-4) on the
//     same data, N = 1,000,000 and N = 1,000 (the article's small-data case): the speed ratio
//     and the train / held-out (200,000 samples) accuracy of each, printed as the article
//     reports them.
// Plus streaming: AccumulateStatistics over 10,000,000 x 32 in 65,536-row chunks generated on
// the fly, with the peak resident memory of the process (it runs first, before the large data
// set is allocated).
//
// "rate" = the scatter's 2 N d^2 FLOPs per fit over the time, for every benchmark, so each
// ratio is a speed ratio.
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "core/dnnl_context.h"
#include "core/logistic_regression.h"
#include "core/parallel.h"
#include "core/tile_matmul.h"

namespace primserve {
namespace {

constexpr int64_t kSamples = 1000000;
constexpr int64_t kHeldOut = 200000;
constexpr int64_t kDim = 128;
constexpr int64_t kClasses = 10;

// splitmix64: a fast, well-mixed stream; normals by Box-Muller.
struct Rng {
  uint64_t state;
  uint64_t Next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double Uniform() { return (static_cast<double>(Next() >> 11) + 0.5) * 0x1.0p-53; }
  double Normal() { return std::sqrt(-2 * std::log(Uniform())) * std::cos(6.283185307179586 * Uniform()); }
};

struct Data {
  Tensor features;
  std::vector<int64_t> labels;
};

// K Gaussian classes sharing one covariance: x = mu_c + z + 0.5 * f * u (a common factor f
// along a fixed direction u correlates the features), class means ~ 0.15 N(0, I) + 2, so the
// classes overlap (accuracy well below 1) and sit away from the origin.
class Generator {
 public:
  Generator(int64_t dim, int64_t classes) : dim_(dim), classes_(classes), means_(dim * classes), u_(dim) {
    Rng rng{12345};
    for (double& m : means_) m = 2 + 0.15 * rng.Normal();
    for (double& v : u_) v = rng.Normal() / std::sqrt(static_cast<double>(dim));
  }
  Data Make(int64_t n, uint64_t seed) const {
    Data data;
    data.features = Tensor::Zeros({n, dim_});
    data.labels.resize(static_cast<size_t>(n));
    ParallelForRange(n, true, [&](int64_t begin, int64_t end) {
      Rng rng{seed * 1000003 + static_cast<uint64_t>(begin)};
      for (int64_t i = begin; i < end; ++i) {
        const int64_t c = static_cast<int64_t>(rng.Next() % static_cast<uint64_t>(classes_));
        data.labels[static_cast<size_t>(i)] = c;
        const double f = rng.Normal();
        float* x = data.features.values.data() + i * dim_;
        for (int64_t j = 0; j < dim_; ++j) {
          x[j] = static_cast<float>(means_[static_cast<size_t>(c * dim_ + j)] + rng.Normal() + 0.5 * f * u_[static_cast<size_t>(j)]);
        }
      }
    });
    return data;
  }

 private:
  int64_t dim_, classes_;
  std::vector<double> means_, u_;
};

const Data& Train() {
  static const Data* data = new Data(Generator(kDim, kClasses).Make(kSamples, 1));
  return *data;
}
const Data& HeldOut() {
  static const Data* data = new Data(Generator(kDim, kClasses).Make(kHeldOut, 2));
  return *data;
}
// The first `n` training rows (the small-data comparison of the article: 1,000 samples).
const Data& TrainPrefix(int64_t n) {
  if (n >= kSamples) return Train();
  // One prefix per n (benchmarks run one at a time, on the main thread).
  static std::map<int64_t, Data>* prefixes = new std::map<int64_t, Data>;
  auto it = prefixes->find(n);
  if (it != prefixes->end()) return it->second;
  Data& prefix = (*prefixes)[n];
  prefix.features = Tensor::Zeros({n, kDim});
  std::copy_n(Train().features.values.begin(), n * kDim, prefix.features.values.begin());
  prefix.labels.assign(Train().labels.begin(), Train().labels.begin() + n);
  return prefix;
}

// "rate" for every benchmark here: the 2 N d^2 FLOPs of the d x d scatter per fit, divided by
// the time; so every ratio is a speed ratio, and the G/s column reads as GFLOP/s-equivalent.
void SetRate(benchmark::State& state, int64_t samples, int64_t dim) {
  state.counters["rate"] = benchmark::Counter(2.0 * static_cast<double>(samples) * dim * dim *
                                                  static_cast<double>(state.iterations()),
                                              benchmark::Counter::kIsRate);
}

// Google Benchmark calls a benchmark function several times (iteration-count probing); print
// each summary line once.
bool FirstTime(const std::string& key) {
  static std::set<std::string>* seen = new std::set<std::string>;
  return seen->insert(key).second;
}

double PeakRssMiB() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

// Streaming statistics: 10M x 32 in chunks; memory independent of N.
void BM_StreamingStatistics(benchmark::State& state) {
  SetComputeThreads(0);
  constexpr int64_t kStreamSamples = 10000000, kStreamDim = 32, kChunk = 65536;
  const Generator generator(kStreamDim, kClasses);
  for (auto _ : state) {
    SufficientStatistics stats;
    for (int64_t begin = 0; begin < kStreamSamples; begin += kChunk) {
      state.PauseTiming();  // generating the chunk is the client's cost, not the fit's
      const Data chunk = generator.Make(std::min(kChunk, kStreamSamples - begin), 100 + static_cast<uint64_t>(begin));
      state.ResumeTiming();
      absl::Status status = AccumulateStatistics(chunk.features, chunk.labels, kClasses, &stats);
      if (!status.ok()) state.SkipWithError(std::string(status.message()).c_str());
    }
    absl::StatusOr<LogisticModel> model = FitAnalytic(stats, AnalyticFitOptions{});
    if (!model.ok()) state.SkipWithError(std::string(model.status().message()).c_str());
    benchmark::DoNotOptimize(model);
  }
  SetRate(state, kStreamSamples, kStreamDim);
  state.counters["peak_rss_MiB"] = PeakRssMiB();
  state.SetLabel(absl::StrFormat("N=10M d=32 chunks of 65536, peak RSS %.0f MiB", PeakRssMiB()));
}
BENCHMARK(BM_StreamingStatistics)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();

// Baseline: one oneDNN matmul C = X^T X (d x d) over all N rows, on all threads.
void BM_ScatterMatmul(benchmark::State& state) {
  SetComputeThreads(0);
  const Data& data = Train();
  MatmulShape shape;
  shape.m = kDim;
  shape.n = kDim;
  shape.k = kSamples;
  shape.lda = kDim;
  shape.ldb = kDim;
  shape.ldc = kDim;
  shape.a_transposed = true;
  absl::StatusOr<std::shared_ptr<const TileMatmul>> matmul = TileMatmul::Get(shape);
  if (!matmul.ok()) {
    state.SkipWithError(std::string(matmul.status().message()).c_str());
    return;
  }
  std::vector<char> scratch((*matmul)->scratchpad_bytes());
  std::vector<float> c(static_cast<size_t>(kDim * kDim));
  dnnl::stream stream(DnnlEngine());
  for (auto _ : state) {
    (*matmul)->Execute(stream, data.features.values.data(), data.features.values.data(), c.data(), scratch.data());
    stream.wait();
    benchmark::DoNotOptimize(c.data());
  }
  SetRate(state, kSamples, kDim);
  state.SetLabel("baseline:fit one oneDNN matmul X^T X, " + (*matmul)->implementation());
}
BENCHMARK(BM_ScatterMatmul)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);

struct Accuracy {
  double train = 0, held_out = 0;
};
Accuracy Score(const LogisticModel& model, const Data& train) {
  Accuracy a;
  a.train = Evaluate(model, train.features, train.labels)->accuracy;
  a.held_out = Evaluate(model, HeldOut().features, HeldOut().labels)->accuracy;
  return a;
}

// The analytic fit: statistics (one pass) + Cholesky solve. Args {n, role}: role 0 is compared
// with the scatter matmul ("fit"), role 1 is the baseline of the solver comparison on n samples.
void BM_AnalyticFit(benchmark::State& state) {
  SetComputeThreads(0);
  const int64_t n = state.range(0);
  const Data& data = TrainPrefix(n);
  absl::StatusOr<LogisticModel> model;
  for (auto _ : state) {
    absl::StatusOr<SufficientStatistics> stats = ComputeStatistics(data.features, data.labels, kClasses);
    if (!stats.ok()) {
      state.SkipWithError(std::string(stats.status().message()).c_str());
      return;
    }
    model = FitAnalytic(*stats, AnalyticFitOptions{});
    if (!model.ok()) {
      state.SkipWithError(std::string(model.status().message()).c_str());
      return;
    }
  }
  SetRate(state, n, kDim);
  const Accuracy accuracy = Score(*model, data);
  state.counters["train_acc"] = accuracy.train;
  state.counters["heldout_acc"] = accuracy.held_out;
  if (state.range(1) == 0) {
    state.SetLabel("vs:fit ComputeStatistics + FitAnalytic");
    return;
  }
  state.SetLabel(absl::StrFormat("baseline:solver_n%d ANALYTIC", n));
  if (FirstTime(absl::StrCat("analytic", n))) {
    std::printf("N = %7d  ANALYTIC           : train accuracy %.4f, held-out accuracy %.4f\n", static_cast<int>(n),
                accuracy.train, accuracy.held_out);
  }
}
BENCHMARK(BM_AnalyticFit)
    ->Args({kSamples, 0})
    ->Args({kSamples, 1})
    ->Args({1000, 1})
    ->Args({10000, 1})    // N = 10^4 and 10^5: fit time vs N (bench/report.md)
    ->Args({100000, 1})
    ->ArgNames({"n", "role"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);

// MAXIMUM_LIKELIHOOD (L-BFGS, l2 = 1e-4, default gradient tolerance) on the same n samples.
void BM_MaxLikelihoodFit(benchmark::State& state) {
  SetComputeThreads(0);
  const int64_t n = state.range(0);
  const Data& data = TrainPrefix(n);
  MaxLikelihoodOptions options;
  options.l2 = 1e-4;
  absl::StatusOr<MaxLikelihoodResult> result;
  for (auto _ : state) {
    result = FitMaxLikelihood(data.features, data.labels, kClasses, options);
    if (!result.ok()) {
      state.SkipWithError(std::string(result.status().message()).c_str());
      return;
    }
  }
  SetRate(state, n, kDim);
  const Accuracy accuracy = Score(result->model, data);
  state.counters["train_acc"] = accuracy.train;
  state.counters["heldout_acc"] = accuracy.held_out;
  state.counters["iterations"] = result->iterations;
  state.SetLabel(absl::StrFormat("vs:solver_n%d MAXIMUM_LIKELIHOOD%s", n, result->converged ? "" : " NOT CONVERGED"));
  if (FirstTime(absl::StrCat("ml", n))) {
    std::printf("N = %7d  MAXIMUM_LIKELIHOOD : train accuracy %.4f, held-out accuracy %.4f (%s)\n",
                static_cast<int>(n), accuracy.train, accuracy.held_out, result->message.c_str());
  }
}
BENCHMARK(BM_MaxLikelihoodFit)
    ->Arg(kSamples)
    ->Arg(1000)
    ->Arg(10000)
    ->Arg(100000)
    ->ArgName("n")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

}  // namespace
}  // namespace primserve

PRIMSERVE_BENCHMARK_MAIN();
