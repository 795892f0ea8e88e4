// EstimateAttentionCost: the MATH.md section 6 goldens, the crossovers being crossovers (both
// sides equal at the length, ordered on either side of it), and the bad-input table.
#include "core/attention_cost.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace primserve {
namespace {

using ::testing::HasSubstr;

AttentionCostInput Input(int64_t seq_len, int64_t head_size = 64, int64_t num_heads = 12, double ffn = 4,
                         double linear = 4) {
  AttentionCostInput input;
  input.seq_len = seq_len;
  input.head_size = head_size;
  input.num_heads = num_heads;
  input.ffn_multiplier = ffn;
  input.linear_head_multiplier = linear;
  return input;
}

TEST(EstimateAttentionCost, MathGoldens) {
  // MATH.md section 6: h = 12, d = 64, n = 512. Every count is an exact integer below 2^53,
  // so the comparisons are exact.
  absl::StatusOr<AttentionCost> cost = EstimateAttentionCost(Input(512));
  ASSERT_TRUE(cost.ok()) << cost.status();
  EXPECT_EQ(cost->projections, 1207959552.0);          // 4 * 512 * 768^2
  EXPECT_EQ(cost->attention_quadratic, 402653184.0);   // 2 * 512^2 * 768
  EXPECT_EQ(cost->self_attention, 1610612736.0);
  EXPECT_EQ(cost->ffn, 2415919104.0);                  // 8 * 512 * 768^2
  EXPECT_EQ(cost->linear_attention, 805306368.0);      // 12 * 2 * 512 * 256^2
  EXPECT_EQ(cost->attention_exceeds_ffn_length, 1536.0);  // 2 h d
  EXPECT_EQ(cost->quadratic_dominates_length, 4608.0);    // 6 h d
  EXPECT_EQ(cost->linear_attention_wins_length, 1024.0);  // 16 d
}

TEST(EstimateAttentionCost, CrossoversAreWhereTheCostsMeet) {
  struct Row {
    int64_t head_size, num_heads;
    double ffn, linear;
  };
  const std::vector<Row> rows = {{64, 12, 4, 4}, {128, 8, 16.0 / 3.0, 2}, {7, 3, 2.5, 3}, {1, 1, 3, 1}};
  for (const Row& row : rows) {
    SCOPED_TRACE(testing::Message() << "d=" << row.head_size << " h=" << row.num_heads << " f=" << row.ffn
                                    << " m=" << row.linear);
    absl::StatusOr<AttentionCost> base = EstimateAttentionCost(Input(1, row.head_size, row.num_heads, row.ffn, row.linear));
    ASSERT_TRUE(base.ok()) << base.status();
    // The crossover lengths are independent of seq_len; evaluate each part at its crossover
    // (a real length is fine for the formulas) and one step either side.
    auto at = [&](double n) {
      AttentionCost c;
      const double d = static_cast<double>(row.head_size), h = static_cast<double>(row.num_heads);
      c.projections = 4 * n * h * h * d * d;
      c.attention_quadratic = 2 * n * n * h * d;
      c.self_attention = c.projections + c.attention_quadratic;
      c.ffn = 2 * row.ffn * n * h * h * d * d;
      c.linear_attention = h * 2 * n * row.linear * row.linear * d * d;
      return c;
    };
    const double rel = 1e-12;
    {
      const double n = base->attention_exceeds_ffn_length;
      ASSERT_GT(n, 0);
      EXPECT_NEAR(at(n).self_attention / at(n).ffn, 1.0, rel);
      EXPECT_LT(at(n * 0.9).self_attention, at(n * 0.9).ffn);
      EXPECT_GT(at(n * 1.1).self_attention, at(n * 1.1).ffn);
    }
    {
      const double n = base->quadratic_dominates_length;
      const auto rest = [&](double len) { return at(len).projections + at(len).ffn; };
      EXPECT_NEAR(at(n).attention_quadratic / rest(n), 1.0, rel);
      EXPECT_LT(at(n * 0.9).attention_quadratic, rest(n * 0.9));
      EXPECT_GT(at(n * 1.1).attention_quadratic, rest(n * 1.1));
    }
    {
      const double n = base->linear_attention_wins_length;
      EXPECT_NEAR(at(n).attention_quadratic / at(n).linear_attention, 1.0, rel);
      EXPECT_GT(at(n * 0.9).linear_attention, at(n * 0.9).attention_quadratic);
      EXPECT_LT(at(n * 1.1).linear_attention, at(n * 1.1).attention_quadratic);
    }
  }
}

TEST(EstimateAttentionCost, CountsAtTheCrossoverLengthsThroughTheFunction) {
  // The same check through EstimateAttentionCost itself, at integer crossover lengths.
  absl::StatusOr<AttentionCost> at_ffn = EstimateAttentionCost(Input(1536));
  ASSERT_TRUE(at_ffn.ok());
  EXPECT_EQ(at_ffn->self_attention, at_ffn->ffn);
  absl::StatusOr<AttentionCost> at_quadratic = EstimateAttentionCost(Input(4608));
  ASSERT_TRUE(at_quadratic.ok());
  EXPECT_EQ(at_quadratic->attention_quadratic, at_quadratic->projections + at_quadratic->ffn);
  absl::StatusOr<AttentionCost> at_linear = EstimateAttentionCost(Input(1024));
  ASSERT_TRUE(at_linear.ok());
  EXPECT_EQ(at_linear->attention_quadratic, at_linear->linear_attention);
}

TEST(EstimateAttentionCost, SmallFfnMeansAttentionAlwaysExceedsIt) {
  // f <= 2: 4 n h^2 d^2 + 2 n^2 h d > 2 f n h^2 d^2 for every n > 0, reported as length 0.
  for (double f : {0.5, 2.0}) {
    SCOPED_TRACE(f);
    absl::StatusOr<AttentionCost> cost = EstimateAttentionCost(Input(1, 64, 12, f));
    ASSERT_TRUE(cost.ok()) << cost.status();
    EXPECT_EQ(cost->attention_exceeds_ffn_length, 0.0);
    EXPECT_GT(cost->self_attention, cost->ffn);
    EXPECT_EQ(cost->quadratic_dominates_length, (2 + f) * 768);
  }
}

TEST(EstimateAttentionCost, BadInputTable) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  struct Row {
    std::string name;
    AttentionCostInput input;
    std::string field;
  };
  const std::vector<Row> rows = {
      {"zero seq_len", Input(0), "seq_len: expected an integer >= 1, got 0"},
      {"negative seq_len", Input(-5), "seq_len"},
      {"zero head_size", Input(512, 0), "head_size"},
      {"negative num_heads", Input(512, 64, -1), "num_heads"},
      {"zero ffn_multiplier", Input(512, 64, 12, 0), "ffn_multiplier"},
      {"negative ffn_multiplier", Input(512, 64, 12, -4), "ffn_multiplier: expected a finite number > 0, got -4"},
      {"NaN ffn_multiplier", Input(512, 64, 12, nan), "ffn_multiplier"},
      {"Inf linear_head_multiplier", Input(512, 64, 12, 4, inf), "linear_head_multiplier"},
      {"zero linear_head_multiplier", Input(512, 64, 12, 4, 0), "linear_head_multiplier"},
      // Finite multipliers whose counts pass double's maximum (found by probing the server).
      {"overflowing multipliers", Input(512, 64, 12, 1e308, 1e308), "the counts overflow double for (512, 64, 12"},
      {"overflowing linear count", Input(512, 64, 12, 4, 1e160), "linear_head_multiplier: the counts overflow"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    absl::StatusOr<AttentionCost> cost = EstimateAttentionCost(row.input);
    EXPECT_EQ(cost.status().code(), absl::StatusCode::kInvalidArgument) << cost.status();
    EXPECT_THAT(std::string(cost.status().message()), HasSubstr(row.field));
  }
}

TEST(EstimateAttentionCost, HugeSizesStayFinite) {
  // Counted in double: int64 extremes give ~4 * (9.2e18)^5 ~ 2.6e95, far below DBL_MAX.
  const int64_t big = std::numeric_limits<int64_t>::max();
  absl::StatusOr<AttentionCost> cost = EstimateAttentionCost(Input(big, big, big, 1e6, 1e6));
  ASSERT_TRUE(cost.ok());
  for (double part : {cost->projections, cost->attention_quadratic, cost->self_attention, cost->ffn,
                      cost->linear_attention, cost->attention_exceeds_ffn_length}) {
    EXPECT_TRUE(std::isfinite(part)) << part;
  }
  EXPECT_GT(cost->self_attention, 1e95);
}

}  // namespace
}  // namespace primserve
