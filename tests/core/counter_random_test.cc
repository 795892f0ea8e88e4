// The reproducible random streams of core/counter_random.h: Philox4x32-10 against Random123's
// published known answers, PortableLog against libm, and each batched (vectorised) block filler
// against a plain scalar loop written here from the stream format documented in toolkit.proto.
#include "core/counter_random.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/philox.h"
#include "gtest/gtest.h"

namespace primserve {
namespace {

TEST(Philox4x32, RandomTwoThreeKnownAnswers) {
  // Random123 tests/kat_vectors, "philox4x32 10" lines (also TensorFlow's philox test).
  struct Kat {
    PhiloxWords counter;
    PhiloxKey key;
    PhiloxWords expected;
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& kat : kats) EXPECT_EQ(Philox4x32(kat.counter, kat.key), kat.expected);
}

// Word i of block b: word i % 4 of counter (i / 4, b mod 2^32, b div 2^32, stream) under key
// (seed mod 2^32, seed div 2^32).
uint32_t ReferenceWord(uint64_t seed, RandomStream stream, uint64_t block, int64_t i) {
  const PhiloxWords words =
      Philox4x32({static_cast<uint32_t>(i / 4), static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                  static_cast<uint32_t>(stream)},
                 {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
  return words[static_cast<size_t>(i % 4)];
}

TEST(WordBlock, IsThePhiloxStreamOfTheBlock) {
  const uint64_t seed = 0x0123456789abcdefull;
  // Block indices above 2^32 exercise the high counter word; 13 and 16384 are odd / full counts.
  for (const int64_t block : {int64_t{0}, int64_t{5}, (int64_t{1} << 32) + 3}) {
    for (const int64_t count : {int64_t{1}, int64_t{13}, kRandomBlockElements}) {
      SCOPED_TRACE(testing::Message() << "block " << block << " count " << count);
      std::vector<uint32_t> words(static_cast<size_t>(count));
      WordBlock(seed, RandomStream::kChildTuningMask, block, words.data(), count);
      for (int64_t i = 0; i < count; ++i) {
        ASSERT_EQ(words[i], ReferenceWord(seed, RandomStream::kChildTuningMask, block, i)) << "word " << i;
      }
    }
  }
}

TEST(WordBlock, StreamsAndSeedsAreDifferent) {
  std::vector<uint32_t> a(64), b(64), c(64);
  WordBlock(1, RandomStream::kInitialize, 0, a.data(), 64);
  WordBlock(1, RandomStream::kChildTuningMask, 0, b.data(), 64);
  WordBlock(2, RandomStream::kInitialize, 0, c.data(), 64);
  int equal_ab = 0, equal_ac = 0;
  for (int i = 0; i < 64; ++i) {
    equal_ab += a[i] == b[i];
    equal_ac += a[i] == c[i];
  }
  // Two independent 32-bit words agree with probability 2^-32.
  EXPECT_EQ(equal_ab, 0);
  EXPECT_EQ(equal_ac, 0);
}

double UlpDistance(double a, double b) {
  return std::fabs(a - b) / (std::numeric_limits<double>::epsilon() * std::max(std::fabs(b), 1e-300));
}

TEST(PortableLog, WithinFourUlpOfLibm) {
  // libm's log is within ~0.5 ulp; ours (atanh series) within a few. Relative error is measured
  // against |log x|, which is smallest near 1 (e = 0 there, so no cancellation either).
  EXPECT_EQ(PortableLog(1.0), 0.0);
  std::vector<double> xs = {0x1p-104, 0x1.8p-104, 1e-30, 0.25, 0.5, 0.70710678118654746,
                            0.70710678118654757, 1.0 - 0x1p-53, 1.0 + 0x1p-52, 1.4142135623730949,
                            1.4142135623730951, 2.0, 10.0, 1e300};
  std::mt19937_64 rng(8620);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int i = 0; i < 200000; ++i) {
    const double u = unit(rng);
    if (u > 0) xs.push_back(i % 2 == 0 ? u : std::ldexp(u, -static_cast<int>(i % 100)));
  }
  double worst = 0;
  for (double x : xs) {
    const double distance = UlpDistance(PortableLog(x), std::log(x));
    worst = std::max(worst, distance);
    ASSERT_LE(distance, 4.0) << "x = " << x;
  }
  std::printf("worst PortableLog error: %.2f ulp over %zu arguments\n", worst, xs.size());
}

// The documented transforms, one scalar step at a time, with libm's log.
double ReferenceSigned53(uint32_t hi, uint32_t lo) {
  const uint64_t bits53 = ((static_cast<uint64_t>(hi) << 32) | lo) >> 11;
  return 2.0 * (static_cast<double>(bits53) / 9007199254740992.0) - 1.0;  // 2 U - 1, U = bits / 2^53
}

std::vector<double> ReferenceNormals(uint64_t seed, int64_t block, int64_t count, bool truncate) {
  std::vector<double> z;
  for (uint32_t j = 0; static_cast<int64_t>(z.size()) < count; ++j) {
    const PhiloxWords w = Philox4x32({j, static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 1},
                                     {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
    const double u = ReferenceSigned53(w[0], w[1]);
    const double v = ReferenceSigned53(w[2], w[3]);
    const double s = u * u + v * v;
    if (!(s > 0 && s < 1)) continue;
    const double f = std::sqrt(-2.0 * std::log(s) / s);
    for (double value : {u * f, v * f}) {
      if (static_cast<int64_t>(z.size()) < count && (!truncate || std::fabs(value) <= 2.0)) z.push_back(value);
    }
  }
  return z;
}

// Float distance in units in the last place (both finite, same sign or zero).
int64_t FloatUlps(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  if (ia < 0) ia = std::numeric_limits<int32_t>::min() - ia;
  if (ib < 0) ib = std::numeric_limits<int32_t>::min() - ib;
  return std::abs(static_cast<int64_t>(ia) - ib);
}

TEST(NormalBlock, MatchesTheScalarReference) {
  // The only difference from the reference is PortableLog vs libm's log (a few double ulp), so
  // after rounding to float the values agree to 1 float ulp, and the accept / reject decisions
  // (made on exact u, v, s) are identical: the same values in the same positions.
  for (const bool truncate : {false, true}) {
    for (const int64_t block : {int64_t{0}, int64_t{7}, (int64_t{1} << 32) + 1}) {
      SCOPED_TRACE(testing::Message() << (truncate ? "truncated" : "normal") << " block " << block);
      const uint64_t seed = 20210617 + static_cast<uint64_t>(block);
      const double scale = truncate ? 0.37 : 1.0;
      std::vector<float> out(kRandomBlockElements);
      NormalBlock(seed, RandomStream::kInitialize, block, scale, truncate, out.data(), kRandomBlockElements);
      const std::vector<double> z = ReferenceNormals(seed, block, kRandomBlockElements, truncate);
      int64_t inexact = 0;
      for (int64_t i = 0; i < kRandomBlockElements; ++i) {
        const float expected = static_cast<float>(z[i] * scale);
        ASSERT_LE(FloatUlps(out[i], expected), 1) << "element " << i << ": " << out[i] << " vs " << expected;
        inexact += out[i] != expected;
      }
      // Rounding to float hides a few-ulp double difference almost always.
      EXPECT_LT(inexact, 20);
    }
  }
}

TEST(NormalBlock, PrefixesAgreeAcrossCounts) {
  // The first k values of a block do not depend on how many were asked for (batching is invisible).
  std::vector<float> full(kRandomBlockElements), part(1001);
  NormalBlock(3, RandomStream::kInitialize, 2, 1.0, true, full.data(), kRandomBlockElements);
  NormalBlock(3, RandomStream::kInitialize, 2, 1.0, true, part.data(), 1001);
  EXPECT_EQ(std::memcmp(full.data(), part.data(), part.size() * sizeof(float)), 0);
}

TEST(UniformBlock, IsExactlyTheDocumentedTransform) {
  const double half_width = std::sqrt(3.0) * 0.05;
  for (const int64_t block : {int64_t{0}, int64_t{3}}) {
    std::vector<float> out(kRandomBlockElements);
    UniformBlock(99, RandomStream::kInitialize, block, half_width, out.data(), kRandomBlockElements);
    for (int64_t i = 0; i < kRandomBlockElements; ++i) {
      const uint32_t w = ReferenceWord(99, RandomStream::kInitialize, static_cast<uint64_t>(block), i);
      const double centred = (2.0 * w + 1.0) / 4294967296.0 - 1.0;
      ASSERT_EQ(out[i], static_cast<float>(centred * half_width)) << "element " << i;
      ASSERT_LT(std::fabs(out[i]), half_width * (1 + 0x1p-24));
    }
  }
}

}  // namespace
}  // namespace primserve
