// Reproducible random streams for the Toolkit service: the same seed gives the same bytes on
// every machine, every build of this file and every thread count.
//
// How: a tensor of n elements is cut into blocks of kRandomBlockElements in row-major order.
// Block b draws from its own Philox4x32-10 counters (j, b mod 2^32, b div 2^32, stream) for
// j = 0, 1, 2, ... under the key (seed mod 2^32, seed div 2^32), so a block's values depend only
// on (seed, stream, b) and blocks can be filled in any order, on any thread. The transforms use
// IEEE double +, -, *, / and sqrt (correctly rounded everywhere) and PortableLog below instead of
// libm's log, whose last bit may differ between library versions and CPU dispatch paths; this
// file is compiled with -ffp-contract=off so no build fuses a multiply-add differently.
// The exact formulas are part of the wire contract (toolkit.proto) so other languages can
// reproduce the bytes.
//
// Example:
//   std::vector<float> block(kRandomBlockElements);
//   NormalBlock(/*seed=*/42, RandomStream::kInitialize, /*block=*/0, /*scale=*/0.02,
//               /*truncate=*/false, block.data(), kRandomBlockElements);
#ifndef PRIMSERVE_CORE_COUNTER_RANDOM_H_
#define PRIMSERVE_CORE_COUNTER_RANDOM_H_

#include <cstdint>

namespace primserve {

// Elements per block. Part of the stream format: changing it changes every tensor.
inline constexpr int64_t kRandomBlockElements = 16384;

// Counter word 3: independent streams for independent uses of one seed.
enum class RandomStream : uint32_t {
  kInitialize = 1,
  kChildTuningMask = 2,
};

// ln x for finite x > 0 in the normal range, in portable double arithmetic (within a few ulp of
// the true value; the same bits on every machine).
double PortableLog(double x);

// The first `count` (<= kRandomBlockElements) raw 32-bit output words of block `block`: the four
// words of counter j = 0, then of j = 1, ...
void WordBlock(uint64_t seed, RandomStream stream, int64_t block, uint32_t* out, int64_t count);

// Uniform on (-half_width, half_width): word w gives ((2w + 1) / 2^32 - 1) * half_width.
// The 2^32 values are symmetric about 0, so the mean is exactly 0 and the variance
// half_width^2 / 3 (1 - 2^-64).
void UniformBlock(uint64_t seed, RandomStream stream, int64_t block, double half_width, float* out,
                  int64_t count);

// scale * z with z ~ N(0, 1) by Marsaglia's polar method, or with `truncate` only the z with
// |z| <= 2 (the normal cut at two standard deviations). Each counter gives u = 2 U(w0, w1) - 1,
// v = 2 U(w2, w3) - 1 with 53-bit uniforms U(hi, lo) = ((hi 2^32 + lo) >> 11) / 2^53; a pair
// with 0 < s = u^2 + v^2 < 1 yields u f and v f, f = sqrt(-2 ln s / s), in that order.
// |z| < 12.01 always (s >= 2^-104).
void NormalBlock(uint64_t seed, RandomStream stream, int64_t block, double scale, bool truncate, float* out,
                 int64_t count);

}  // namespace primserve

#endif  // PRIMSERVE_CORE_COUNTER_RANDOM_H_
