// ApplyRope throughput against memcpy of the same bytes, single- and multi-threaded.
//
// RoPE reads and writes each element once, exactly like a copy, so memcpy bandwidth is its
// ceiling. Bytes counted: read + written (2 * 4 * elements) for both. Shapes are
// [batch, heads, seq, dim]; the argument list is {batch, heads, seq, dim, threads}.
//
//   ApplyRopeKernel:    in-place rotation with a prebuilt cos/sin table (the kernel; the server
//                       rotates the request's buffer in place).
//   ApplyRopeCall:      table construction + in-place rotation (what one request pays in compute).
//   ApplyRopeOutOfPlace: rotation into a second buffer (pays a read-for-ownership of the output
//                       that glibc's memcpy avoids with streaming stores on large copies).
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "core/parallel.h"
#include "core/position_encoding.h"

namespace primserve {
namespace {

struct Shape4 {
  int64_t batch, heads, seq, dim, threads;
  int64_t elements() const { return batch * heads * seq * dim; }
};

Shape4 ShapeOf(const benchmark::State& state) {
  return {state.range(0), state.range(1), state.range(2), state.range(3), state.range(4)};
}

std::string Key(const Shape4& s) {
  return std::to_string(s.batch) + "x" + std::to_string(s.heads) + "x" + std::to_string(s.seq) + "x" +
         std::to_string(s.dim) + "/t" + std::to_string(s.threads);
}

std::vector<float> RandomValues(int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& x : v) x = dist(rng);
  return v;
}

void BM_Memcpy(benchmark::State& state) {
  const Shape4 s = ShapeOf(state);
  SetComputeThreads(static_cast<int>(s.threads));
  const std::vector<float> in = RandomValues(s.elements());
  std::vector<float> out(in.size(), 0.0f);
  for (auto _ : state) {
    ParallelForRange(s.elements(), true, [&](int64_t begin, int64_t end) {
      std::memcpy(out.data() + begin, in.data() + begin, sizeof(float) * static_cast<size_t>(end - begin));
    });
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * s.elements() * 8);
  state.SetLabel("baseline:" + Key(s));
}

enum class Mode { kInPlace, kCall, kOutOfPlace };

void RopeKernel(benchmark::State& state, RopePairing pairing, Mode mode) {
  const Shape4 s = ShapeOf(state);
  SetComputeThreads(static_cast<int>(s.threads));
  std::vector<float> in = RandomValues(s.elements());
  std::vector<float> out(mode == Mode::kOutOfPlace ? in.size() : 0, 0.0f);
  float* dst = mode == Mode::kOutOfPlace ? out.data() : in.data();
  RopeSpec spec;
  spec.pairing = pairing;
  absl::StatusOr<RopeTable> table = RopeTable::Create(spec, s.seq, s.dim);
  if (!table.ok()) {
    state.SkipWithError(std::string(table.status().message()).c_str());
    return;
  }
  for (auto _ : state) {
    if (mode == Mode::kCall) {
      absl::StatusOr<RopeTable> fresh = RopeTable::Create(spec, s.seq, s.dim);
      fresh->Apply(in.data(), dst, s.batch * s.heads);
    } else {
      table->Apply(in.data(), dst, s.batch * s.heads);
    }
    benchmark::DoNotOptimize(dst);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * s.elements() * 8);
  state.SetLabel("vs:" + Key(s));
}

void BM_ApplyRopeKernelInterleaved(benchmark::State& state) { RopeKernel(state, RopePairing::kInterleaved, Mode::kInPlace); }
void BM_ApplyRopeKernelHalfSplit(benchmark::State& state) { RopeKernel(state, RopePairing::kHalfSplit, Mode::kInPlace); }
void BM_ApplyRopeCallInterleaved(benchmark::State& state) { RopeKernel(state, RopePairing::kInterleaved, Mode::kCall); }
void BM_ApplyRopeCallHalfSplit(benchmark::State& state) { RopeKernel(state, RopePairing::kHalfSplit, Mode::kCall); }
void BM_ApplyRopeOutOfPlaceInterleaved(benchmark::State& state) {
  RopeKernel(state, RopePairing::kInterleaved, Mode::kOutOfPlace);
}

void Shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"batch", "heads", "seq", "dim", "threads"});
  for (int64_t threads : {1, 2}) {
    b->Args({8, 8, 2048, 64, threads});
    b->Args({4, 32, 4096, 128, threads});
  }
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_Memcpy)->Apply(Shapes);
BENCHMARK(BM_ApplyRopeKernelInterleaved)->Apply(Shapes);
BENCHMARK(BM_ApplyRopeKernelHalfSplit)->Apply(Shapes);
BENCHMARK(BM_ApplyRopeCallInterleaved)->Apply(Shapes);
BENCHMARK(BM_ApplyRopeCallHalfSplit)->Apply(Shapes);
BENCHMARK(BM_ApplyRopeOutOfPlaceInterleaved)->Apply(Shapes);

}  // namespace
}  // namespace primserve

PRIMSERVE_BENCHMARK_MAIN()
