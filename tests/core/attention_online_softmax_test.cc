// The online-softmax row pass of the SOFTMAX attention kernel (base-2 logits), on every
// instruction set this CPU has (portable, AVX2 + FMA, AVX-512), against a double-precision
// reference: row lengths around each vector width (tails), masked columns, -Inf and
// huge-negative logits, the lazy reference and the sum across two key tiles (with the reference
// moving mid-row), and the bfloat16 output.
#include "core/attention_online_softmax.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace primserve {
namespace attention_internal {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr double kFloatMin = std::numeric_limits<float>::min();  // 1.18e-38, the least normal.

const char* Name(SoftmaxIsa isa) {
  switch (isa) {
    case SoftmaxIsa::kPortable: return "portable";
    case SoftmaxIsa::kAvx2: return "avx2";
    case SoftmaxIsa::kAvx512: return "avx512";
  }
  return "?";
}

// Runs the body once per instruction set the CPU has, capped to it, and restores the cap.
class OnlineSoftmaxIsaTest : public testing::TestWithParam<SoftmaxIsa> {
 protected:
  void SetUp() override {
    if (GetParam() > BestSoftmaxIsa()) GTEST_SKIP() << "this CPU has no " << Name(GetParam()) << " path";
    previous_ = CapSoftmaxIsaForTesting(GetParam());
  }
  void TearDown() override {
    if (GetParam() <= BestSoftmaxIsa()) CapSoftmaxIsaForTesting(previous_);
  }
  SoftmaxIsa previous_ = SoftmaxIsa::kAvx512;
};

// 2^arg in float, for arg = x - m already rounded to float: the rounding of arg costs up to about
// |arg| * 6e-8 * ln2 relative, the polynomial and the last multiplications a few 6e-8.
double RelativeTolerance(float arg) { return 3e-7 + 1.2e-7 * std::abs(static_cast<double>(arg)); }

float FromBf16(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float x;
  std::memcpy(&x, &wide, sizeof x);
  return x;
}

// The reference of UpdateOnlineSoftmax's contract: m moves only when a visible logit rises above
// m + kHeadroom (or m was -Inf), and then to the maximum of the tile's visible logits.
double NextReference(double m, const float* logits, int64_t visible) {
  double tile_max = -INFINITY;
  for (int64_t c = 0; c < visible; ++c) tile_max = std::max(tile_max, static_cast<double>(logits[c]));
  return std::isinf(m) || tile_max > m + kHeadroom ? std::max(m, tile_max) : m;
}

// One tile of `rows` rows; row r has cols = 1 + r columns of which the first visible(r) count.
// Two tiles in a row: the second one's logits are shifted up by 3, and in every other row one
// logit (at a position that walks across the row: first, middle, the vector tails) rises
// kHeadroom + 3 above the first tile's maximum, so the reference must move mid-row. Run with
// the probabilities in place (f32) and as bfloat16.
TEST_P(OnlineSoftmaxIsaTest, MatchesDoubleReferenceOnEveryTailLengthAcrossTwoTiles) {
  constexpr int64_t kRows = 70, kLd = 72;  // Row lengths 1 .. 70 cover tails of 8 and 16 lanes.
  for (bool bf16 : {false, true}) {
    SCOPED_TRACE(bf16 ? "bfloat16 probabilities" : "float32 probabilities");
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 4.0f);
    std::vector<float> tile1(kRows * kLd), tile2(kRows * kLd);
    std::vector<int64_t> visible(kRows);
    int64_t moved = 0;
    for (int64_t r = 0; r < kRows; ++r) {
      visible[r] = (r + 1) - r % 3;  // Some rows mask their last columns.
      for (int64_t c = 0; c < kLd; ++c) {
        tile1[r * kLd + c] = normal(rng);
        tile2[r * kLd + c] = normal(rng) + 3.0f;
      }
      tile1[r * kLd] = -kInf;  // A -Inf logit (a bias mask) in each row of the first tile.
      if (r % 5 == 0) tile2[r * kLd + (r / 2)] = -1e30f;  // Far below: 2^x underflows to 0.
      if (r % 2 == 1 && visible[r] > 1) {
        float m1 = -kInf;
        for (int64_t c = 0; c < visible[r]; ++c) m1 = std::max(m1, tile1[r * kLd + c]);
        tile2[r * kLd + (r * 7) % visible[r]] = m1 + kHeadroom + 3.0f;
        ++moved;
      }
    }
    ASSERT_GT(moved, 30);
    const std::vector<float> logits1 = tile1, logits2 = tile2;
    std::vector<float> row_max(kRows, -kInf), row_sum(kRows, 0.0f), alpha(kRows);
    std::vector<double> ref_m(kRows, -INFINITY), ref_sum(kRows, 0.0);
    std::vector<uint16_t> probs(kRows * kLd);
    double worst_p = 0, worst_sum = 0;
    for (int pass = 0; pass < 2; ++pass) {
      std::vector<float>& scores = pass == 0 ? tile1 : tile2;
      const std::vector<float>& logits = pass == 0 ? logits1 : logits2;
      const std::vector<float> max_before = row_max;
      std::fill(probs.begin(), probs.end(), uint16_t{0xffff});
      for (int64_t r0 = 0; r0 < kRows; ++r0) {
        // One row per call, so each row has its own width (cols = r0 + 1).
        OnlineSoftmaxTile tile{scores.data() + r0 * kLd, kLd, 1, r0 + 1, &visible[r0], &row_max[r0], &row_sum[r0],
                               &alpha[r0], bf16 ? probs.data() + r0 * kLd : nullptr, kLd};
        ASSERT_TRUE(UpdateOnlineSoftmax(tile));
      }
      for (int64_t r = 0; r < kRows; ++r) {
        const int64_t cols = r + 1;
        const double m_before = ref_m[r];
        const double m = NextReference(m_before, &logits[r * kLd], visible[r]);
        ref_m[r] = m;
        EXPECT_EQ(row_max[r], static_cast<float>(m)) << "row " << r;
        if (std::isinf(m)) {  // Nothing visible yet: alpha 1, and every p exactly 0.
          EXPECT_EQ(alpha[r], 1.0f) << "row " << r;
        } else if (std::isinf(m_before)) {  // The first visible keys: the accumulator is empty.
          EXPECT_EQ(alpha[r], 0.0f) << "row " << r;
        } else if (m == m_before) {
          EXPECT_EQ(alpha[r], 1.0f) << "row " << r;
        } else {
          const float arg = max_before[r] - row_max[r];
          EXPECT_NEAR(alpha[r], std::exp2(static_cast<double>(arg)), RelativeTolerance(arg) * std::exp2(arg))
              << "row " << r;
        }
        double sum = ref_sum[r] * (std::isinf(m_before) ? 0.0 : std::exp2(m_before - m));
        for (int64_t c = 0; c < cols; ++c) {
          const float arg = static_cast<float>(logits[r * kLd + c] - m);
          const double expected = c < visible[r] && !std::isinf(m) ? std::exp2(static_cast<double>(arg)) : 0.0;
          sum += expected;
          const double got = bf16 ? FromBf16(probs[r * kLd + c]) : scores[r * kLd + c];
          if (expected == 0.0) {  // Masked, -Inf, or -1e30 (underflows in double too): exactly 0.
            EXPECT_EQ(got, 0.0) << "row " << r << " column " << c;
          } else if (expected < kFloatMin) {  // Below float's normal range: 0 or about right.
            EXPECT_LE(got, kFloatMin) << "row " << r << " column " << c;
          } else if (bf16) {  // Within half a bfloat16 ulp (2^-8 relative) and the 2.7e-6 polynomial.
            EXPECT_NEAR(got, expected, expected * (1.0 / 256 + 3e-6)) << "row " << r << " column " << c;
          } else {
            // A rescaled prefix (the reference moved mid-row) adds one rounding.
            EXPECT_NEAR(got, expected, (RelativeTolerance(arg) + 1.2e-7) * expected) << "row " << r << " column " << c;
            worst_p = std::max(worst_p, std::abs(got - expected) / expected);
          }
        }
        if (bf16) {
          EXPECT_EQ(probs[r * kLd + cols], 0xffff) << "row " << r << ": wrote past the row";
        }
        ref_sum[r] = sum;
        // The running sum against the reference over every tile seen so far.
        if (std::isinf(m)) {
          EXPECT_EQ(row_sum[r], 0.0f) << "row " << r;
        } else {
          EXPECT_NEAR(row_sum[r], sum, (bf16 ? 4e-6 : 2e-6) * sum) << "row " << r << " after tile " << pass + 1;
          worst_sum = std::max(worst_sum, std::abs(row_sum[r] - sum) / sum);
        }
      }
    }
    std::printf("%s %s: max relative error of p %.3g, of the running sum %.3g\n", Name(GetParam()),
                bf16 ? "bf16" : "f32", worst_p, worst_sum);
  }
}

TEST_P(OnlineSoftmaxIsaTest, AFullyMaskedRowStaysEmptyAndZeroed) {
  std::vector<float> row(37, 1.0f);
  row[3] = -kInf;
  const int64_t visible = 0;
  float m = -kInf, l = 0, a = -1;
  OnlineSoftmaxTile tile{row.data(), 37, 1, 37, &visible, &m, &l, &a, nullptr, 0};
  ASSERT_TRUE(UpdateOnlineSoftmax(tile));
  EXPECT_EQ(m, -kInf);
  EXPECT_EQ(l, 0.0f);
  EXPECT_EQ(a, 1.0f);
  for (float p : row) EXPECT_EQ(p, 0.0f);
  std::vector<float> all_minus_inf(21, -kInf);
  const int64_t all = 21;
  OnlineSoftmaxTile masked{all_minus_inf.data(), 21, 1, 21, &all, &m, &l, &a, nullptr, 0};
  ASSERT_TRUE(UpdateOnlineSoftmax(masked));  // Every bias -Inf: still nothing visible.
  EXPECT_EQ(m, -kInf);
  for (float p : all_minus_inf) EXPECT_EQ(p, 0.0f);
}

// (The bfloat16 output has AVX-512 passes; below AVX-512 it is the portable one, whatever the cap.)
TEST_P(OnlineSoftmaxIsaTest, ExpShiftedAndBf16OutputMatchTheReference) {
  for (int64_t n : {1, 7, 8, 9, 15, 16, 17, 31, 33, 513}) {
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i) x[i] = -0.37f * static_cast<float>(i % 97) + 2.0f;
    const std::vector<float> logits = x;
    Exp2Shifted(x.data(), n, 2.0f - kHeadroom);  // Arguments from kHeadroom down to -27.5.
    for (int64_t i = 0; i < n; ++i) {
      const float arg = logits[i] - (2.0f - kHeadroom);
      const double expected = std::exp2(static_cast<double>(arg));
      EXPECT_NEAR(x[i], expected, RelativeTolerance(arg) * expected) << "n " << n << " i " << i;
    }
    // The bfloat16 probabilities: p rounded to nearest even, within half a bf16 ulp: 8 significant
    // bits, so at most 2^-8 of the value.
    std::vector<float> s = logits;
    std::vector<uint16_t> p16(static_cast<size_t>(n) + 3, 0xffff);
    const int64_t visible = n;
    float m = -kInf, l = 0, a = 0;
    OnlineSoftmaxTile tile{s.data(), n, 1, n, &visible, &m, &l, &a, p16.data(), n + 3};
    ASSERT_TRUE(UpdateOnlineSoftmax(tile));
    for (int64_t i = 0; i < n; ++i) {
      const double expected = std::exp2(static_cast<double>(logits[i] - m));
      EXPECT_NEAR(FromBf16(p16[i]), expected, expected * (1.0 / 256) * 1.0001) << "n " << n << " i " << i;
    }
    EXPECT_EQ(p16[n], 0xffff) << "wrote past the row";
  }
}

TEST_P(OnlineSoftmaxIsaTest, TheUnderflowEdgeIsZeroOrAboutRightNeverGarbage) {
  // 2^(x - m) for x - m from -120 to -150 in steps of 1/16: across float's normal range (-126),
  // the AVX2 clamp (-127) and the subnormal range. Each result is within the usual tolerance, or
  // (below the normal range) between 0 and the least normal float.
  std::vector<float> x;
  for (float arg = -120.0f; arg >= -150.0f; arg -= 0.0625f) x.push_back(arg);
  const std::vector<float> args = x;
  Exp2Shifted(x.data(), static_cast<int64_t>(x.size()), 0.0f);
  for (size_t i = 0; i < x.size(); ++i) {
    const double expected = std::exp2(static_cast<double>(args[i]));
    EXPECT_GE(x[i], 0.0f) << "x - m = " << args[i];
    if (expected >= kFloatMin) {
      EXPECT_NEAR(x[i], expected, RelativeTolerance(args[i]) * expected) << "x - m = " << args[i];
    } else {
      EXPECT_LE(x[i], kFloatMin) << "x - m = " << args[i];
    }
  }
}

// A +Inf logit (an overflowed q k^T) is reported, whether it comes in a row's first tile or
// later, in any lane position, and whichever the output.
TEST_P(OnlineSoftmaxIsaTest, APlusInfLogitIsReported) {
  for (bool bf16 : {false, true}) {
    for (int64_t n : {1, 16, 33, 70}) {
      for (int64_t at : {int64_t{0}, n / 2, n - 1}) {
        SCOPED_TRACE(std::string(bf16 ? "bf16" : "f32") + " n " + std::to_string(n) + " at " + std::to_string(at));
        std::vector<float> first(n, 1.0f), second(n, 2.0f);
        std::vector<uint16_t> p16(n);
        float m = -kInf, l = 0, a = 0;
        const int64_t visible = n;
        uint16_t* out16 = bf16 ? p16.data() : nullptr;
        // The second tile, after a finite first one.
        OnlineSoftmaxTile tile1{first.data(), n, 1, n, &visible, &m, &l, &a, out16, n};
        ASSERT_TRUE(UpdateOnlineSoftmax(tile1));
        second[at] = kInf;
        OnlineSoftmaxTile tile2{second.data(), n, 1, n, &visible, &m, &l, &a, out16, n};
        EXPECT_FALSE(UpdateOnlineSoftmax(tile2));
        // The first tile of a fresh row.
        std::vector<float> fresh(n, 0.5f);
        fresh[at] = kInf;
        float m2 = -kInf, l2 = 0, a2 = 0;
        OnlineSoftmaxTile tile3{fresh.data(), n, 1, n, &visible, &m2, &l2, &a2, out16, n};
        EXPECT_FALSE(UpdateOnlineSoftmax(tile3));
      }
    }
  }
}

// A NaN logit (an overflowed q.k meeting a -Inf bias) is reported like +Inf, wherever it sits
// and whatever surrounds it: finite logits, -Inf masks (the maximum is then -Inf), or +Inf.
TEST_P(OnlineSoftmaxIsaTest, ANaNLogitIsReported) {
  const float kNaN = std::numeric_limits<float>::quiet_NaN();
  for (bool bf16 : {false, true}) {
    for (int64_t n : {1, 16, 33, 70}) {
      for (int64_t at : {int64_t{0}, n / 2, n - 1}) {
        for (float others : {0.5f, -kInf, kInf}) {
          SCOPED_TRACE(std::string(bf16 ? "bf16" : "f32") + " n " + std::to_string(n) + " at " + std::to_string(at) +
                       " others " + std::to_string(others));
          std::vector<uint16_t> p16(n);
          uint16_t* out16 = bf16 ? p16.data() : nullptr;
          const int64_t visible = n;
          // The first tile of a fresh row.
          std::vector<float> fresh(n, others);
          fresh[at] = kNaN;
          float m = -kInf, l = 0, a = 0;
          OnlineSoftmaxTile tile1{fresh.data(), n, 1, n, &visible, &m, &l, &a, out16, n};
          EXPECT_FALSE(UpdateOnlineSoftmax(tile1));
          // A later tile, against a finite reference: inside the headroom or above it.
          for (float later : {1.0f, 30.0f}) {
            std::vector<float> first(n, 1.0f), second(n, others == 0.5f ? later : others);
            float m2 = -kInf, l2 = 0, a2 = 0;
            OnlineSoftmaxTile tile2{first.data(), n, 1, n, &visible, &m2, &l2, &a2, out16, n};
            ASSERT_TRUE(UpdateOnlineSoftmax(tile2));
            second[at] = kNaN;
            OnlineSoftmaxTile tile3{second.data(), n, 1, n, &visible, &m2, &l2, &a2, out16, n};
            EXPECT_FALSE(UpdateOnlineSoftmax(tile3));
          }
        }
      }
    }
  }
}

// Where floats are 16 apart (|m| in [2^27, 2^28)), m + kHeadroom rounds to m or m + 16: a logit
// at m + 16 must move the reference (p = 1), not pass as p = 2^16.
TEST_P(OnlineSoftmaxIsaTest, HeadroomHoldsWhereFloatsAreSparse) {
  const float m0 = 134217776.0f;  // 2^27 + 48: m0 + 8 is a tie that rounds up to m0 + 16.
  ASSERT_EQ(m0 + kHeadroom, m0 + 16.0f);
  for (bool bf16 : {false, true}) {
    SCOPED_TRACE(bf16 ? "bf16" : "f32");
    const int64_t n = 40, visible = n;
    std::vector<uint16_t> p16(n);
    uint16_t* out16 = bf16 ? p16.data() : nullptr;
    std::vector<float> first(n, m0), second(n, m0);
    second[35] = m0 + 16.0f;
    // The row sum takes the float32 p: exact in F32 mode; in BF16 mode on avx512_bf16 the
    // degree-4 polynomial's 2^0 is 1 - 7.2e-7 (its relative error bound is 2.7e-6).
    const float sum_tol = bf16 ? 3e-6f : 0.0f;
    float m = -kInf, l = 0, a = 0;
    OnlineSoftmaxTile tile1{first.data(), n, 1, n, &visible, &m, &l, &a, out16, n};
    ASSERT_TRUE(UpdateOnlineSoftmax(tile1));
    EXPECT_EQ(m, m0);
    EXPECT_NEAR(l, static_cast<float>(n), n * sum_tol);
    OnlineSoftmaxTile tile2{second.data(), n, 1, n, &visible, &m, &l, &a, out16, n};
    ASSERT_TRUE(UpdateOnlineSoftmax(tile2));
    EXPECT_EQ(m, m0 + 16.0f);
    EXPECT_EQ(a, std::exp2(-16.0f));
    // 2^-16 per key of the first tile, 39 x 2^-16 + 1 in the second.
    const float expected_l = (n + n - 1) * std::exp2(-16.0f) + 1.0f;
    if (bf16) {
      EXPECT_NEAR(l, expected_l, expected_l * sum_tol);
    } else {
      EXPECT_FLOAT_EQ(l, expected_l);
    }
    for (int64_t j = 0; j < n; ++j) {
      const float p = bf16 ? FromBf16(p16[j]) : second[j];
      EXPECT_LE(p, 1.0f) << j;
      EXPECT_FLOAT_EQ(p, j == 35 ? 1.0f : std::exp2(-16.0f)) << j;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EveryIsa, OnlineSoftmaxIsaTest,
                         testing::Values(SoftmaxIsa::kPortable, SoftmaxIsa::kAvx2, SoftmaxIsa::kAvx512),
                         [](const testing::TestParamInfo<SoftmaxIsa>& info) { return std::string(Name(info.param)); });

}  // namespace
}  // namespace attention_internal
}  // namespace primserve
