// The online-softmax row pass of the SOFTMAX attention kernel, on every instruction set this CPU
// has (portable, AVX2 + FMA, AVX-512), against a double-precision reference: row lengths around
// each vector width (tails), masked columns, -Inf and huge-negative logits, the running max and
// sum across two key tiles, and the bfloat16 output.
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

// exp(arg) in float, for arg = x - m already rounded to float: the rounding of arg * log2(e) costs
// up to about |arg| * 1.2e-7 relative, the polynomial and the last multiplications a few 6e-8.
double RelativeTolerance(float arg) { return 3e-7 + 1.2e-7 * std::abs(static_cast<double>(arg)); }

float FromBf16(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float x;
  std::memcpy(&x, &wide, sizeof x);
  return x;
}

// One tile of `rows` rows; row r has cols = 1 + r columns of which the first visible(r) count.
// Two tiles in a row: the second one's logits are shifted up by 3 so the maximum moves.
TEST_P(OnlineSoftmaxIsaTest, MatchesDoubleReferenceOnEveryTailLengthAcrossTwoTiles) {
  constexpr int64_t kRows = 70, kLd = 72;  // Row lengths 1 .. 70 cover tails of 8 and 16 lanes.
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::vector<float> tile1(kRows * kLd), tile2(kRows * kLd);
  std::vector<int64_t> visible(kRows);
  for (int64_t r = 0; r < kRows; ++r) {
    visible[r] = (r + 1) - r % 3;  // Some rows mask their last columns.
    for (int64_t c = 0; c < kLd; ++c) {
      tile1[r * kLd + c] = normal(rng);
      tile2[r * kLd + c] = normal(rng) + 3.0f;
    }
    tile1[r * kLd] = -kInf;  // A -Inf logit (a bias mask) in each row of the first tile.
    if (r % 5 == 0) tile2[r * kLd + (r / 2)] = -1e30f;  // Far below: exp underflows to 0.
  }
  const std::vector<float> logits1 = tile1, logits2 = tile2;
  std::vector<float> row_max(kRows, -kInf), row_sum(kRows, 0.0f), alpha(kRows);
  double worst_p = 0, worst_sum = 0;
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<float>& scores = pass == 0 ? tile1 : tile2;
    const std::vector<float>& logits = pass == 0 ? logits1 : logits2;
    std::vector<float> max_before = row_max;
    for (int64_t r0 = 0; r0 < kRows; ++r0) {
      // One row per call, so each row has its own width (cols = r0 + 1).
      OnlineSoftmaxTile tile{scores.data() + r0 * kLd, kLd, 1, r0 + 1, &visible[r0], &row_max[r0], &row_sum[r0],
                             &alpha[r0], nullptr, 0};
      UpdateOnlineSoftmax(tile);
    }
    for (int64_t r = 0; r < kRows; ++r) {
      const int64_t cols = r + 1;
      double m = max_before[r];
      for (int64_t c = 0; c < visible[r]; ++c) m = std::max(m, static_cast<double>(logits[r * kLd + c]));
      EXPECT_EQ(row_max[r], static_cast<float>(m)) << "row " << r;
      if (std::isinf(m)) {  // Nothing visible yet: alpha 1, and every p exactly 0.
        EXPECT_EQ(alpha[r], 1.0f) << "row " << r;
      } else if (std::isinf(max_before[r])) {  // The first visible keys: the accumulator is empty.
        EXPECT_EQ(alpha[r], 0.0f) << "row " << r;
      } else {
        const float arg = max_before[r] - row_max[r];
        EXPECT_NEAR(alpha[r], std::exp(static_cast<double>(arg)), RelativeTolerance(arg) * std::exp(arg))
            << "row " << r;
      }
      for (int64_t c = 0; c < cols; ++c) {
        const float arg = logits[r * kLd + c] - row_max[r];
        const double expected = c < visible[r] && !std::isinf(m) ? std::exp(static_cast<double>(arg)) : 0.0;
        const double got = scores[r * kLd + c];
        if (expected == 0.0) {  // Masked, -Inf, or -1e30 (exp underflows in double too): exactly 0.
          EXPECT_EQ(got, 0.0) << "row " << r << " column " << c;
        } else if (expected < kFloatMin) {  // Below float's normal range: 0 or about right.
          EXPECT_LE(got, kFloatMin) << "row " << r << " column " << c;
        } else {
          EXPECT_NEAR(got, expected, RelativeTolerance(arg) * expected) << "row " << r << " column " << c;
          worst_p = std::max(worst_p, std::abs(got - expected) / expected);
        }
      }
    }
    // The running sum against the reference over every tile seen so far.
    for (int64_t r = 0; r < kRows; ++r) {
      double m = -INFINITY, sum = 0;
      for (int t = 0; t <= pass; ++t) {
        const std::vector<float>& l = t == 0 ? logits1 : logits2;
        for (int64_t c = 0; c < visible[r]; ++c) m = std::max(m, static_cast<double>(l[r * kLd + c]));
      }
      if (std::isinf(m)) {  // Nothing visible in any tile so far.
        EXPECT_EQ(row_sum[r], 0.0f) << "row " << r;
        continue;
      }
      for (int t = 0; t <= pass; ++t) {
        const std::vector<float>& l = t == 0 ? logits1 : logits2;
        for (int64_t c = 0; c < visible[r]; ++c) sum += std::exp(static_cast<double>(l[r * kLd + c]) - m);
      }
      EXPECT_NEAR(row_sum[r], sum, 2e-6 * sum) << "row " << r << " after tile " << pass + 1;
      worst_sum = std::max(worst_sum, std::abs(row_sum[r] - sum) / sum);
    }
  }
  std::printf("%s: max relative error of p %.3g, of the running sum %.3g\n", Name(GetParam()), worst_p, worst_sum);
}

TEST_P(OnlineSoftmaxIsaTest, AFullyMaskedRowStaysEmptyAndZeroed) {
  std::vector<float> row(37, 1.0f);
  row[3] = -kInf;
  const int64_t visible = 0;
  float m = -kInf, l = 0, a = -1;
  OnlineSoftmaxTile tile{row.data(), 37, 1, 37, &visible, &m, &l, &a, nullptr, 0};
  UpdateOnlineSoftmax(tile);
  EXPECT_EQ(m, -kInf);
  EXPECT_EQ(l, 0.0f);
  EXPECT_EQ(a, 1.0f);
  for (float p : row) EXPECT_EQ(p, 0.0f);
  std::vector<float> all_minus_inf(21, -kInf);
  const int64_t all = 21;
  OnlineSoftmaxTile masked{all_minus_inf.data(), 21, 1, 21, &all, &m, &l, &a, nullptr, 0};
  UpdateOnlineSoftmax(masked);  // Every bias -Inf: still nothing visible.
  EXPECT_EQ(m, -kInf);
  for (float p : all_minus_inf) EXPECT_EQ(p, 0.0f);
}

// (The bfloat16 output has AVX-512 passes; below AVX-512 it is the portable one, whatever the cap.)
TEST_P(OnlineSoftmaxIsaTest, ExpShiftedAndBf16OutputMatchTheReference) {
  for (int64_t n : {1, 7, 8, 9, 15, 16, 17, 31, 33, 513}) {
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i) x[i] = -0.37f * static_cast<float>(i % 97) + 2.0f;
    const std::vector<float> logits = x;
    ExpShifted(x.data(), n, 2.0f);
    for (int64_t i = 0; i < n; ++i) {
      const float arg = logits[i] - 2.0f;
      const double expected = std::exp(static_cast<double>(arg));
      EXPECT_NEAR(x[i], expected, RelativeTolerance(arg) * expected) << "n " << n << " i " << i;
    }
    // The bfloat16 probabilities: p rounded to nearest even, within half a bf16 ulp: 8 significant
    // bits, so at most 2^-8 of the value.
    std::vector<float> s = logits;
    std::vector<uint16_t> p16(static_cast<size_t>(n) + 3, 0xffff);
    const int64_t visible = n;
    float m = -kInf, l = 0, a = 0;
    OnlineSoftmaxTile tile{s.data(), n, 1, n, &visible, &m, &l, &a, p16.data(), n + 3};
    UpdateOnlineSoftmax(tile);
    for (int64_t i = 0; i < n; ++i) {
      const double expected = std::exp(static_cast<double>(logits[i] - m));
      EXPECT_NEAR(FromBf16(p16[i]), expected, expected * (1.0 / 256) * 1.0001) << "n " << n << " i " << i;
    }
    EXPECT_EQ(p16[n], 0xffff) << "wrote past the row";
  }
}

TEST_P(OnlineSoftmaxIsaTest, TheUnderflowEdgeIsZeroOrAboutRightNeverGarbage) {
  // exp(x - m) for x - m from -80 to -130 in steps of 1/16: across float's normal range
  // (-87.34), the AVX2 clamp (t = -127, x - m = -88.03) and the subnormal range. Each result is
  // within the usual tolerance, or (below the normal range) between 0 and the least normal float.
  std::vector<float> x;
  for (float arg = -80.0f; arg >= -130.0f; arg -= 0.0625f) x.push_back(arg);
  const std::vector<float> args = x;
  ExpShifted(x.data(), static_cast<int64_t>(x.size()), 0.0f);
  for (size_t i = 0; i < x.size(); ++i) {
    const double expected = std::exp(static_cast<double>(args[i]));
    EXPECT_GE(x[i], 0.0f) << "x - m = " << args[i];
    if (expected >= kFloatMin) {
      EXPECT_NEAR(x[i], expected, RelativeTolerance(args[i]) * expected) << "x - m = " << args[i];
    } else {
      EXPECT_LE(x[i], kFloatMin) << "x - m = " << args[i];
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EveryIsa, OnlineSoftmaxIsaTest,
                         testing::Values(SoftmaxIsa::kPortable, SoftmaxIsa::kAvx2, SoftmaxIsa::kAvx512),
                         [](const testing::TestParamInfo<SoftmaxIsa>& info) { return std::string(Name(info.param)); });

}  // namespace
}  // namespace attention_internal
}  // namespace primserve
