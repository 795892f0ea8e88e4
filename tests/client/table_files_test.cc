// Tests for client/cli/table_files.h: the CSV / text parsers (headers, delimiters, bad values
// named by line) and the label .npy dtypes.
#include "client/cli/table_files.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace primserve {
namespace cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(CsvFeaturesTest, AHeaderIsALineWithoutNumbers) {
  absl::StatusOr<client::Tensor> x = ParseCsvFeatures("x1, x2 ,label\n1,2,3\n4,5,6\n", "x.csv");
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_THAT(x->shape, ElementsAre(2, 3));
  EXPECT_THAT(x->values, ElementsAre(1, 2, 3, 4, 5, 6));

  // A first row with a bad value among numbers is data: reported, not skipped as a header.
  absl::StatusOr<client::Tensor> na = ParseCsvFeatures("1.0,NA,3.0\n0.5,0.2,0.1\n", "na.csv");
  EXPECT_EQ(na.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(na.status().message()), HasSubstr("na.csv: line 1: \"NA\" is not a number"));
  // The same value further down is named by its line.
  na = ParseCsvFeatures("1,2,3\n0.5,NA,0.1\n", "na.csv");
  EXPECT_THAT(std::string(na.status().message()), HasSubstr("na.csv: line 2: \"NA\" is not a number"));
}

TEST(CsvFeaturesTest, SpaceSeparatedRowsAsNumpySavetxtWrites) {
  absl::StatusOr<client::Tensor> x = ParseCsvFeatures(
      "1.000000000000000000e+00 2.500000000000000000e+00\n-3.0\t4\r\n\n5 6\n", "x.txt");
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_THAT(x->shape, ElementsAre(3, 2));
  EXPECT_THAT(x->values, ElementsAre(1, 2.5, -3, 4, 5, 6));

  absl::StatusOr<client::Tensor> ragged = ParseCsvFeatures("1 2\n3 4 5\n", "x.txt");
  EXPECT_THAT(std::string(ragged.status().message()), HasSubstr("line 2: expected 2"));
}

TEST(TextLabelsTest, IntegersOrFloatsHoldingIntegers) {
  absl::StatusOr<std::vector<int64_t>> y =
      ParseTextLabels("label\n0\n2.000000000000000000e+00\n1, 3\n", "y.txt");
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_THAT(*y, ElementsAre(0, 2, 1, 3));

  for (const char* bad : {"0\n1.5\n", "0\nx\n", "0\n1e30\n"}) {
    absl::StatusOr<std::vector<int64_t>> refused = ParseTextLabels(bad, "y.txt");
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(refused.status().message()), HasSubstr("line 2: ")) << bad;
  }
  // A first line with a bad label among numbers is data.
  EXPECT_THAT(std::string(ParseTextLabels("0, x\n1\n", "y.txt").status().message()),
              HasSubstr("line 1: \"x\" is not an integer label"));
}

std::string NpyOf(const std::string& descr, const std::string& shape, const std::string& data) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + data;
}

TEST(NpyLabelsTest, IntegerBoolAndIntegralFloatDtypes) {
  const int64_t i8[3] = {0, 5, -1};
  absl::StatusOr<std::vector<int64_t>> y =
      ParseNpyLabels(NpyOf("<i8", "(3,)", std::string(reinterpret_cast<const char*>(i8), sizeof i8)), "y.npy");
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_THAT(*y, ElementsAre(0, 5, -1));

  y = ParseNpyLabels(NpyOf("|b1", "(4,)", std::string("\x01\x00\x00\x01", 4)), "y.npy");
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_THAT(*y, ElementsAre(1, 0, 0, 1));

  const double f8[2] = {3.0, 0.5};
  absl::StatusOr<std::vector<int64_t>> half =
      ParseNpyLabels(NpyOf("<f8", "(2,)", std::string(reinterpret_cast<const char*>(f8), sizeof f8)), "y.npy");
  EXPECT_THAT(std::string(half.status().message()), HasSubstr("label [1] = 0.5 is not an integer"));

  const uint64_t u8[1] = {uint64_t{1} << 63};
  absl::StatusOr<std::vector<int64_t>> wide =
      ParseNpyLabels(NpyOf("<u8", "(1,)", std::string(reinterpret_cast<const char*>(u8), sizeof u8)), "y.npy");
  EXPECT_THAT(std::string(wide.status().message()), HasSubstr("does not fit in int64"));

  absl::StatusOr<std::vector<int64_t>> text = ParseNpyLabels(NpyOf("<U3", "(1,)", "abcabcabcabc"), "y.npy");
  EXPECT_THAT(std::string(text.status().message()), HasSubstr("y.npy: unsupported label dtype '<U3'"));
  absl::StatusOr<std::vector<int64_t>> cut = ParseNpyLabels(NpyOf("<i8", "(3,)", "1234"), "y.npy");
  EXPECT_THAT(std::string(cut.status().message()), HasSubstr("y.npy: truncated data"));
}

}  // namespace
}  // namespace cli
}  // namespace primserve
