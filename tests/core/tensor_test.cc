// Tests for core/tensor.h: shape arithmetic (ElementCount, CheckedElementCount, ShapeToString)
// and the finiteness scan every service runs on its inputs.
#include "core/tensor.h"

#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/number_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace primserve {
namespace {

using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------------
// ElementCount

TEST(ElementCountTest, ProductOfValidShapes) {
  struct Case {
    const char* name;
    Shape shape;
    int64_t expected;
  };
  const std::vector<Case> cases = {
      {"empty shape is a scalar", {}, 1},
      {"rank 1", {7}, 7},
      {"rank 3", {8, 2048, 64}, int64_t{8} * 2048 * 64},
      {"ones", {1, 1, 1, 1}, 1},
      {"odd sizes", {13, 257, 3}, int64_t{13} * 257 * 3},
      // 2^62 fits in int64 (max is 2^63 - 1): the largest power of two the check must accept.
      {"2^62 fits", {int64_t{1} << 31, int64_t{1} << 31}, int64_t{1} << 62},
      {"int64 max itself", {std::numeric_limits<int64_t>::max()}, std::numeric_limits<int64_t>::max()},
      {"zero extent", {0}, 0},
      {"zero extent among others", {5, 0, 7}, 0},
      // A zero makes the product zero however large the other extents are: no overflow error.
      {"zero with huge extents",
       {std::numeric_limits<int64_t>::max(), 0, std::numeric_limits<int64_t>::max()},
       0},
      {"zero last after overflowing prefix", {int64_t{1} << 40, int64_t{1} << 40, 0}, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const absl::StatusOr<int64_t> count = ElementCount(c.shape, "input.shape");
    ASSERT_TRUE(count.ok()) << count.status();
    EXPECT_EQ(*count, c.expected);
  }
}

TEST(ElementCountTest, NegativeExtentNamesFieldAndIndex) {
  struct Case {
    const char* name;
    Shape shape;
    std::string field_and_index;
  };
  const std::vector<Case> cases = {
      {"first axis", {-1, 4}, "input.shape[0]"},
      {"middle axis", {3, -5, 4}, "input.shape[1]"},
      {"last axis", {3, 4, -2}, "input.shape[2]"},
      // The negative extent must be reported even when another extent is zero.
      {"negative beside zero", {0, -3}, "input.shape[1]"},
      {"int64 min", {2, std::numeric_limits<int64_t>::min()}, "input.shape[1]"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const absl::StatusOr<int64_t> count = ElementCount(c.shape, "input.shape");
    ASSERT_FALSE(count.ok());
    EXPECT_EQ(count.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(count.status().message()), HasSubstr(c.field_and_index));
  }
}

TEST(ElementCountTest, OverflowIsInvalidArgument) {
  struct Case {
    const char* name;
    Shape shape;
  };
  const std::vector<Case> cases = {
      {"2^40 * 2^40", {int64_t{1} << 40, int64_t{1} << 40}},
      {"2^63 exactly", {int64_t{1} << 32, int64_t{1} << 31}},
      {"max * 2", {std::numeric_limits<int64_t>::max(), 2}},
      {"many moderate extents", {1 << 16, 1 << 16, 1 << 16, 1 << 16}},
      // Products that wrap around to a small positive number if computed modulo 2^64.
      {"wraps to 2^64 -> 0 mod 2^64", {int64_t{1} << 32, int64_t{1} << 32}},
      {"3 * 2^62", {3, int64_t{1} << 62}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const absl::StatusOr<int64_t> count = ElementCount(c.shape, "output");
    ASSERT_FALSE(count.ok()) << "got " << *count;
    EXPECT_EQ(count.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(count.status().message()), HasSubstr("output"));
  }
}

// ---------------------------------------------------------------------------------------------
// CheckedElementCount

TEST(CheckedElementCountTest, CapIsInclusive) {
  const absl::StatusOr<int64_t> at_cap = CheckedElementCount({4, 25}, "output", 100);
  ASSERT_TRUE(at_cap.ok()) << at_cap.status();
  EXPECT_EQ(*at_cap, 100);

  const absl::StatusOr<int64_t> zero = CheckedElementCount({0, int64_t{1} << 50}, "output", 100);
  ASSERT_TRUE(zero.ok()) << zero.status();
  EXPECT_EQ(*zero, 0);
}

TEST(CheckedElementCountTest, OverTheCapIsResourceExhausted) {
  struct Case {
    const char* name;
    Shape shape;
    int64_t max_elements;
  };
  const std::vector<Case> cases = {
      {"one above", {101}, 100},
      {"rank 3", {8, 2048, 64}, 1000},
      {"default cap + 1", {kDefaultMaxElements + 1}, kDefaultMaxElements},
      {"cap 0", {1}, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const absl::StatusOr<int64_t> count = CheckedElementCount(c.shape, "output", c.max_elements);
    ASSERT_FALSE(count.ok());
    EXPECT_EQ(count.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(std::string(count.status().message()), HasSubstr("output"));
  }
}

TEST(CheckedElementCountTest, ShapeErrorsStayInvalidArgument) {
  // A malformed shape is the caller's error, not a resource problem, whatever the cap.
  const absl::StatusOr<int64_t> negative = CheckedElementCount({3, -1}, "input.shape", 100);
  ASSERT_FALSE(negative.ok());
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(negative.status().message()), HasSubstr("input.shape[1]"));

  const absl::StatusOr<int64_t> overflow =
      CheckedElementCount({int64_t{1} << 40, int64_t{1} << 40}, "input.shape", 100);
  ASSERT_FALSE(overflow.ok());
  EXPECT_EQ(overflow.status().code(), absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// ShapeToString

TEST(ShapeToStringTest, Formats) {
  struct Case {
    Shape shape;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{}, "[]"},
      {{7}, "[7]"},
      {{8, 2048, 64}, "[8, 2048, 64]"},
      {{0, -3}, "[0, -3]"},
      {{std::numeric_limits<int64_t>::max()}, "[9223372036854775807]"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.expected);
    EXPECT_EQ(ShapeToString(c.shape), c.expected);
  }
}

// ---------------------------------------------------------------------------------------------
// CheckFinite

template <typename T>
class CheckFiniteTest : public ::testing::Test {};
using FloatTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(CheckFiniteTest, FloatTypes);

TYPED_TEST(CheckFiniteTest, FiniteValuesPass) {
  using T = TypeParam;
  const std::vector<std::vector<T>> cases = {
      {},
      {T(0)},
      {T(-0.0), T(1), T(-1)},
      {std::numeric_limits<T>::max(), std::numeric_limits<T>::lowest(),
       std::numeric_limits<T>::min(), std::numeric_limits<T>::denorm_min(),
       -std::numeric_limits<T>::denorm_min()},
      std::vector<T>(1000, T(3.5)),
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_TRUE(CheckFinite(absl::Span<const T>(cases[i]), "input").ok());
  }
}

TYPED_TEST(CheckFiniteTest, NonFiniteDetectedWithIndex) {
  using T = TypeParam;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const T inf = std::numeric_limits<T>::infinity();
  struct Case {
    const char* name;
    size_t size;
    size_t bad_index;
    T bad_value;
  };
  const std::vector<Case> cases = {
      {"NaN alone", 1, 0, nan},
      {"+Inf alone", 1, 0, inf},
      {"-Inf alone", 1, 0, -inf},
      {"NaN in the middle", 9, 4, nan},
      {"-NaN", 5, 2, -nan},
      {"signalling NaN", 5, 3, std::numeric_limits<T>::signaling_NaN()},
      // Long arrays exercise any vectorised fast scan; the bad value sits in the tail that a
      // block-wise loop might skip.
      {"NaN at the end of a long array", 100003, 100002, nan},
      {"+Inf at the end of a long array", 65536, 65535, inf},
      {"-Inf at the end of a long array", 4097, 4096, -inf},
      {"+Inf at the start of a long array", 4097, 0, inf},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<T> values(c.size);
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<T>(i % 17) - T(8.25);
    values[c.bad_index] = c.bad_value;
    const absl::Status status = CheckFinite(absl::Span<const T>(values), "input");
    ASSERT_FALSE(status.ok());
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()),
                HasSubstr("input[" + std::to_string(c.bad_index) + "]"));
  }
}

TYPED_TEST(CheckFiniteTest, ReportsTheFirstOffendingIndex) {
  using T = TypeParam;
  std::vector<T> values(1000, T(1));
  values[700] = std::numeric_limits<T>::infinity();
  values[123] = std::numeric_limits<T>::quiet_NaN();
  values[999] = -std::numeric_limits<T>::infinity();
  const absl::Status status = CheckFinite(absl::Span<const T>(values), "positions");
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("positions[123]"));
}

TYPED_TEST(CheckFiniteTest, MessageSaysWhichNonFinite) {
  using T = TypeParam;
  struct Case {
    T value;
    const char* word;
  };
  const std::vector<Case> cases = {
      {std::numeric_limits<T>::quiet_NaN(), "NaN"},
      {std::numeric_limits<T>::infinity(), "+Inf"},
      {-std::numeric_limits<T>::infinity(), "-Inf"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.word);
    const std::vector<T> values = {T(1), c.value};
    const absl::Status status = CheckFinite(absl::Span<const T>(values), "x");
    ASSERT_FALSE(status.ok());
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.word));
  }
}

// ---------------------------------------------------------------------------------------------
// Tensor::Zeros

TEST(TensorTest, ZerosHasShapeAndZeroValues) {
  const Tensor t = Tensor::Zeros({2, 3, 5});
  EXPECT_EQ(t.shape, (Shape{2, 3, 5}));
  EXPECT_EQ(t.rank(), 3);
  EXPECT_EQ(t.dim(1), 3);
  ASSERT_EQ(t.values.size(), 30u);
  for (float v : t.values) EXPECT_EQ(v, 0.0f);

  const Tensor empty = Tensor::Zeros({4, 0});
  EXPECT_TRUE(empty.values.empty());
}

// Error messages quote refused numbers exactly: the shortest text that reads back as the value.
TEST(NumberToString, ShortestTextThatReadsBackExactly) {
  EXPECT_EQ(NumberToString(1.0000001), "1.0000001");
  EXPECT_EQ(NumberToString(0.1), "0.1");
  EXPECT_EQ(NumberToString(-0.25), "-0.25");
  EXPECT_EQ(NumberToString(0.0), "0");
  EXPECT_EQ(NumberToString(4294967296.0), "4294967296");
  EXPECT_EQ(NumberToString(1e39), "1e+39");
  EXPECT_EQ(NumberToString(2e7), "20000000");  // Whole numbers below 2^53 in full.
  EXPECT_EQ(NumberToString(-9007199254740991.0), "-9007199254740991");
  EXPECT_EQ(NumberToString(9007199254740992.0), "9007199254740992");  // 2^53: shortest form.
  EXPECT_EQ(NumberToString(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(NumberToString(std::nan("")), "nan");
  for (double x : {1.0 / 3.0, 3.4028234663852886e38, 5e-324, -2.2250738585072014e-308, 1.8446744073709552e19}) {
    const std::string text = NumberToString(x);
    EXPECT_EQ(std::strtod(text.c_str(), nullptr), x) << text;
  }
}

}  // namespace
}  // namespace primserve
