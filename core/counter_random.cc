#include "core/counter_random.h"

#include <cmath>
#include <cstring>

#include "core/multiversion.h"
#include "core/philox.h"

// Reproducibility rests on this file doing only correctly rounded IEEE double operations in a
// fixed order: CMake compiles it with -ffp-contract=off (no FMA fusion in any clone), and nothing
// here calls libm except sqrt (correctly rounded by IEEE 754). The AVX2 / AVX-512 clones compute
// the same bits as the baseline: vector +, -, *, /, sqrt round exactly like scalar ones.

namespace primserve {
namespace {

// Counters per batch: Philox runs over a batch in structure-of-arrays form so it vectorises.
constexpr int kBatch = 64;

struct Words {
  uint32_t w[4][kBatch];
};

uint64_t BitsOf(double x) {
  uint64_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}

double FromBits(uint64_t bits) {
  double x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// An integer below 2^52 as a double, exactly: 2^52 + k has k in its mantissa bits. The same
// value as static_cast<double>, but in 64-bit integer lanes that SSE2 / AVX2 vectorise (they
// have no unsigned -> double conversion).
inline double ExactDouble(uint64_t k) { return FromBits(0x4330000000000000ull | k) - 0x1p52; }

// u = 2 U - 1 in [-1, 1) from the 53-bit uniform U = ((hi 2^32 + lo) >> 11) / 2^53, exactly:
// hi 2^21 + (lo >> 11) < 2^53 is an exact double, and so are the scaling and the subtraction.
inline double Signed53(uint32_t hi, uint32_t lo) {
  return (ExactDouble(hi) * 0x1p21 + ExactDouble(lo >> 11)) * 0x1p-52 - 1.0;
}

// ln x, branch-free so the polar transform vectorises. x = m 2^e with m in [sqrt(1/2), sqrt(2)),
// ln m = 2 atanh(f) with f = (m - 1) / (m + 1), |f| <= 0.1716, by its series to f^21 (the next
// term is below 1e-18 relative), and e ln 2 with ln 2 split so that e * kLn2Hi is exact
// (fdlibm's constants; kLn2Hi has 32 trailing zero bits).
inline double LogInline(double x) {
  constexpr double kLn2Hi = 6.93147180369123816490e-01;
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  constexpr double kSqrt2 = 1.41421356237309504880;
  const uint64_t bits = BitsOf(x);
  double m = FromBits((bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull);  // [1, 2)
  double e = ExactDouble(bits >> 52) - 1023.0;
  const bool high = m > kSqrt2;
  m = high ? m * 0.5 : m;
  e = high ? e + 1.0 : e;
  const double f = (m - 1.0) / (m + 1.0);  // m - 1 is exact (Sterbenz).
  const double f2 = f * f;
  double p = 1.0 / 21;
  p = p * f2 + 1.0 / 19;
  p = p * f2 + 1.0 / 17;
  p = p * f2 + 1.0 / 15;
  p = p * f2 + 1.0 / 13;
  p = p * f2 + 1.0 / 11;
  p = p * f2 + 1.0 / 9;
  p = p * f2 + 1.0 / 7;
  p = p * f2 + 1.0 / 5;
  p = p * f2 + 1.0 / 3;
  const double two_f = 2.0 * f;
  const double log_m = two_f + two_f * f2 * p;
  return e * kLn2Hi + (e * kLn2Lo + log_m);
}

// Philox4x32-10 of counters (j0 + i, block_lo, block_hi, stream) for i < kBatch: the scalar
// Philox4x32 of philox.h, one batch lane per counter.
PRIMSERVE_MULTIVERSION
void PhiloxBatch(uint64_t seed, uint32_t stream, uint64_t block, uint32_t j0, Words* out) {
  uint32_t c0[kBatch], c1[kBatch], c2[kBatch], c3[kBatch];
  for (int i = 0; i < kBatch; ++i) {
    c0[i] = j0 + static_cast<uint32_t>(i);
    c1[i] = static_cast<uint32_t>(block);
    c2[i] = static_cast<uint32_t>(block >> 32);
    c3[i] = stream;
  }
  uint32_t k0 = static_cast<uint32_t>(seed);
  uint32_t k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < kPhiloxRounds; ++round) {
    if (round > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    for (int i = 0; i < kBatch; ++i) {
      const uint64_t p0 = uint64_t{kPhiloxM0} * c0[i];
      const uint64_t p1 = uint64_t{kPhiloxM1} * c2[i];
      const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1[i] ^ k0;
      const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3[i] ^ k1;
      c0[i] = n0;
      c1[i] = static_cast<uint32_t>(p1);
      c2[i] = n2;
      c3[i] = static_cast<uint32_t>(p0);
    }
  }
  std::memcpy(out->w[0], c0, sizeof c0);
  std::memcpy(out->w[1], c1, sizeof c1);
  std::memcpy(out->w[2], c2, sizeof c2);
  std::memcpy(out->w[3], c3, sizeof c3);
}


// The polar transform of a batch: z0[i] = u f, z1[i] = v f, accepted[i] = 0 < s < 1.
PRIMSERVE_MULTIVERSION
void PolarBatch(const Words& words, double* z0, double* z1, bool* accepted) {
  for (int i = 0; i < kBatch; ++i) {
    const double u = Signed53(words.w[0][i], words.w[1][i]);
    const double v = Signed53(words.w[2][i], words.w[3][i]);
    const double s = u * u + v * v;
    const bool ok = s > 0.0 && s < 1.0;
    const double safe = ok ? s : 0.5;  // Rejected lanes still compute, on a harmless value.
    const double f = std::sqrt(-2.0 * LogInline(safe) / safe);
    z0[i] = u * f;
    z1[i] = v * f;
    accepted[i] = ok;
  }
}

}  // namespace

double PortableLog(double x) { return LogInline(x); }

void WordBlock(uint64_t seed, RandomStream stream, int64_t block, uint32_t* out, int64_t count) {
  Words words;
  int64_t filled = 0;
  for (uint32_t j0 = 0; filled < count; j0 += kBatch) {
    PhiloxBatch(seed, static_cast<uint32_t>(stream), static_cast<uint64_t>(block), j0, &words);
    for (int i = 0; i < kBatch && filled < count; ++i) {
      for (int k = 0; k < 4 && filled < count; ++k) out[filled++] = words.w[k][i];
    }
  }
}

void UniformBlock(uint64_t seed, RandomStream stream, int64_t block, double half_width, float* out,
                  int64_t count) {
  Words words;
  int64_t filled = 0;
  for (uint32_t j0 = 0; filled < count; j0 += kBatch) {
    PhiloxBatch(seed, static_cast<uint32_t>(stream), static_cast<uint64_t>(block), j0, &words);
    for (int i = 0; i < kBatch && filled < count; ++i) {
      for (int k = 0; k < 4 && filled < count; ++k) {
        // (2w + 1) / 2^32 - 1 is exact in double: 33 significant bits.
        const double centred = (2.0 * static_cast<double>(words.w[k][i]) + 1.0) * 0x1p-32 - 1.0;
        out[filled++] = static_cast<float>(centred * half_width);
      }
    }
  }
}

void NormalBlock(uint64_t seed, RandomStream stream, int64_t block, double scale, bool truncate, float* out,
                 int64_t count) {
  Words words;
  double z0[kBatch], z1[kBatch];
  bool accepted[kBatch];
  int64_t filled = 0;
  const auto emit = [&](double z) {
    // The cut keeps |z| <= 2 (two standard deviations of N(0, 1)); the rest are drawn again.
    if (filled < count && (!truncate || std::fabs(z) <= 2.0)) out[filled++] = static_cast<float>(z * scale);
  };
  for (uint32_t j0 = 0; filled < count; j0 += kBatch) {
    PhiloxBatch(seed, static_cast<uint32_t>(stream), static_cast<uint64_t>(block), j0, &words);
    PolarBatch(words, z0, z1, accepted);
    for (int i = 0; i < kBatch && filled < count; ++i) {
      if (!accepted[i]) continue;
      emit(z0[i]);
      emit(z1[i]);
    }
  }
}

}  // namespace primserve
