// Tests for client/cli/npy.h: round trips, files laid out exactly as numpy writes them (header
// bytes crafted by hand, versions 1.0 / 2.0 / 3.0), '<f8' conversion, and a table of malformed
// files, each with its status code and a message naming the file and the problem.
#include "client/cli/npy.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace primserve {
namespace cli {
namespace {

using ::testing::ContainsRegex;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A .npy file as numpy lays it out: magic, version, little-endian header length (2 bytes for
// 1.0, 4 for 2.0 / 3.0), the dict padded with spaces and ended by '\n' so the data starts at a
// multiple of 64, then the data.
std::string MakeNpy(int major, const std::string& dict, const std::string& data) {
  const size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  const int length_bytes = major == 1 ? 2 : 4;
  for (int i = 0; i < length_bytes; ++i) out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + data;
}

template <typename T>
std::string LittleEndianBytes(const std::vector<T>& values) {
  // The build hosts (x86-64, arm64) are little-endian, so the in-memory bytes are the file bytes.
  std::string bytes(values.size() * sizeof(T), '\0');
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

std::string F4Dict(const std::string& shape) {
  return absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': ", shape, ", }");
}

// Bitwise equality, so that NaN payloads and -0.0 count.
void ExpectSameBits(const std::vector<float>& actual, const std::vector<float>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    uint32_t a, e;
    std::memcpy(&a, &actual[i], 4);
    std::memcpy(&e, &expected[i], 4);
    EXPECT_EQ(a, e) << "element " << i;
  }
}

std::string TempPath(const std::string& name) { return absl::StrCat(::testing::TempDir(), "/", name); }

// ---------------------------------------------------------------------------------------------
// Round trips

TEST(NpyRoundTripTest, SerializeThenParseKeepsShapeAndBits) {
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    const char* name;
    client::Tensor tensor;
  };
  const std::vector<Case> cases = {
      {"scalar", {{}, {3.5f}}},
      {"empty vector", {{0}, {}}},
      {"zero among extents", {{2, 0, 3}, {}}},
      {"vector", {{3}, {1.0f, -2.0f, 0.1f}}},
      {"matrix", {{2, 3}, {1, 2, 3, 4, 5, 6}}},
      {"rank 4 with ones", {{1, 2, 1, 2}, {0.25f, -0.5f, 1e-30f, 1e30f}}},
      {"special values",
       {{5}, {-0.0f, std::numeric_limits<float>::denorm_min(), inf, -inf, std::nanf("")}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const absl::StatusOr<std::string> bytes = SerializeNpy(c.tensor);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    const absl::StatusOr<client::Tensor> parsed = ParseNpy(*bytes, "memory.npy");
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->shape, c.tensor.shape);
    ExpectSameBits(parsed->values, c.tensor.values);
  }
}

TEST(NpyRoundTripTest, HeaderIsWhatNumpyWrites) {
  const absl::StatusOr<std::string> bytes = SerializeNpy({{2, 3}, {1, 2, 3, 4, 5, 6}});
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  // Version 1.0, data 64-byte aligned, header ended by '\n', Python reprs of the values.
  EXPECT_EQ(bytes->substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_length = static_cast<unsigned char>((*bytes)[8]) | static_cast<unsigned char>((*bytes)[9]) << 8;
  EXPECT_EQ((10 + header_length) % 64, 0u);
  EXPECT_EQ(bytes->size(), 10 + header_length + 6 * 4);
  const std::string header = bytes->substr(10, header_length);
  EXPECT_THAT(header, StartsWith("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
  EXPECT_EQ(header.back(), '\n');

  const absl::StatusOr<std::string> vector = SerializeNpy({{3}, {1, 2, 3}});
  ASSERT_TRUE(vector.ok());
  EXPECT_THAT(*vector, HasSubstr("'shape': (3,), }"));  // One-element tuples keep their comma.
  const absl::StatusOr<std::string> scalar = SerializeNpy({{}, {1}});
  ASSERT_TRUE(scalar.ok());
  EXPECT_THAT(*scalar, HasSubstr("'shape': (), }"));
}

TEST(NpyRoundTripTest, HeaderTooLongForVersion1UsesVersion2) {
  // 30000 extents of 1 make a header of ~90 KB, past version 1.0's 65535-byte limit.
  client::Tensor tensor{std::vector<int64_t>(30000, 1), {42.0f}};
  const absl::StatusOr<std::string> bytes = SerializeNpy(tensor);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ((*bytes)[6], 2);
  const absl::StatusOr<client::Tensor> parsed = ParseNpy(*bytes, "long.npy");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->shape, tensor.shape);
  EXPECT_THAT(parsed->values, ElementsAre(42.0f));
}

TEST(NpyRoundTripTest, WriteThenReadFile) {
  const std::string path = TempPath("round_trip.npy");
  const client::Tensor tensor{{2, 2}, {1.5f, -2.5f, 3.25f, 0.0f}};
  ASSERT_TRUE(WriteNpy(path, tensor).ok());
  const absl::StatusOr<client::Tensor> read = ReadNpy(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->shape, tensor.shape);
  EXPECT_EQ(read->values, tensor.values);
  std::remove(path.c_str());
}

TEST(NpyRoundTripTest, SerializeRejectsInconsistentTensors) {
  const absl::StatusOr<std::string> short_values = SerializeNpy({{2, 3}, {1, 2}});
  EXPECT_EQ(short_values.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(short_values.status().message(), HasSubstr("needs 6 values, got 2"));
  const absl::StatusOr<std::string> negative = SerializeNpy({{-1}, {}});
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  const absl::Status written = WriteNpy(TempPath("bad.npy"), {{3}, {1}});
  EXPECT_EQ(written.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(written.message(), HasSubstr("bad.npy: "));
}

// ---------------------------------------------------------------------------------------------
// Files as numpy writes them

TEST(NpyReadTest, ReadsNumpyLayouts) {
  const std::string data = LittleEndianBytes<float>({1, 2, 3, 4});
  struct Case {
    const char* name;
    std::string bytes;
    std::vector<int64_t> shape;
  };
  const std::vector<Case> cases = {
      {"version 1.0", MakeNpy(1, F4Dict("(2, 2)"), data), {2, 2}},
      {"version 2.0", MakeNpy(2, F4Dict("(2, 2)"), data), {2, 2}},
      {"version 3.0", MakeNpy(3, F4Dict("(4,)"), data), {4}},
      {"rank 3", MakeNpy(1, F4Dict("(1, 2, 2)"), data), {1, 2, 2}},
      {"double quotes, other key order, no trailing comma",
       MakeNpy(1, "{\"shape\": (4, 1), \"fortran_order\": False, \"descr\": \"<f4\"}", data),
       {4, 1}},
      {"Python 2 long extents", MakeNpy(1, F4Dict("(2L, 2L)"), data), {2, 2}},
      {"no padding, no newline",
       std::string("\x93NUMPY\x01\x00", 8) + std::string(1, static_cast<char>(F4Dict("(4,)").size())) +
           std::string(1, '\0') + F4Dict("(4,)") + data,
       {4}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const absl::StatusOr<client::Tensor> tensor = ParseNpy(c.bytes, "x.npy");
    ASSERT_TRUE(tensor.ok()) << tensor.status();
    EXPECT_EQ(tensor->shape, c.shape);
    EXPECT_THAT(tensor->values, ElementsAre(1, 2, 3, 4));
  }
}

TEST(NpyReadTest, ScalarAndEmptyShapes) {
  const absl::StatusOr<client::Tensor> scalar =
      ParseNpy(MakeNpy(1, F4Dict("()"), LittleEndianBytes<float>({7.0f})), "scalar.npy");
  ASSERT_TRUE(scalar.ok()) << scalar.status();
  EXPECT_TRUE(scalar->shape.empty());
  EXPECT_THAT(scalar->values, ElementsAre(7.0f));

  // A zero extent: no data, whatever the other extents claim.
  const absl::StatusOr<client::Tensor> empty =
      ParseNpy(MakeNpy(1, F4Dict("(0, 9223372036854775807)"), ""), "empty.npy");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_THAT(empty->shape, ElementsAre(0, std::numeric_limits<int64_t>::max()));
  EXPECT_TRUE(empty->values.empty());
}

TEST(NpyReadTest, Float64IsConvertedToFloat32) {
  const std::vector<double> doubles = {1.5, -2.25, 1e-3, 3.141592653589793, 1e300, -0.0};
  const std::string bytes =
      MakeNpy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", LittleEndianBytes(doubles));
  const absl::StatusOr<client::Tensor> tensor = ParseNpy(bytes, "f8.npy");
  ASSERT_TRUE(tensor.ok()) << tensor.status();
  EXPECT_THAT(tensor->shape, ElementsAre(2, 3));
  std::vector<float> expected;
  for (double value : doubles) expected.push_back(static_cast<float>(value));  // 1e300 -> inf.
  ExpectSameBits(tensor->values, expected);
  EXPECT_TRUE(std::isinf(tensor->values[4]));
}

// ---------------------------------------------------------------------------------------------
// Malformed files

TEST(NpyReadTest, MalformedFilesGivePreciseErrors) {
  const std::string four_floats = LittleEndianBytes<float>({1, 2, 3, 4});
  const std::string huge_header = std::string("\x93NUMPY\x02\x00\xff\xff\xff\xff", 12) + "{}";
  struct Case {
    const char* name;
    std::string bytes;
    std::string message_regex;  // Follows "bad.npy: ".
  };
  const std::vector<Case> cases = {
      {"empty file", "", "bad magic"},
      {"bad magic", "PK\x03\x04 a zip file, not an npy file", "bad magic"},
      {"magic only", "\x93NUMPY", "truncated header"},
      {"unsupported version", MakeNpy(4, F4Dict("(4,)"), four_floats), "unsupported .npy format version 4.0"},
      {"preamble cut", std::string("\x93NUMPY\x02\x00\x10", 9), "truncated header"},
      {"header length overflow", huge_header, "header length 4294967295 is more than the 1048576 bytes accepted"},
      {"header longer than the file", std::string("\x93NUMPY\x01\x00\xe8\x03", 10) + "{}",
       "header length 1000 exceeds the file \\(2 bytes"},
      {"fortran order", MakeNpy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", four_floats),
       "fortran_order is True"},
      {"big-endian float32", MakeNpy(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", four_floats),
       "unsupported dtype '>f4' \\(big-endian\\); supported: '<f4'"},
      {"int32", MakeNpy(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }", four_floats),
       "unsupported dtype '<i4'"},
      {"float16", MakeNpy(1, "{'descr': '<f2', 'fortran_order': False, 'shape': (8,), }", four_floats),
       "unsupported dtype '<f2'"},
      {"structured", MakeNpy(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,), }", four_floats),
       "structured arrays"},
      {"truncated data", MakeNpy(1, F4Dict("(2, 3)"), four_floats),
       "truncated data: shape \\(2, 3\\) of '<f4' needs 24 bytes, 16 follow the header"},
      {"trailing bytes", MakeNpy(1, F4Dict("(3,)"), four_floats),
       "data size mismatch: shape \\(3,\\) of '<f4' needs 12 bytes, 16 follow"},
      {"huge extents, small file", MakeNpy(1, F4Dict("(1000000000, 1000000000)"), four_floats),
       "truncated data: .* needs 4000000000000000000 bytes, 16 follow"},
      {"element count overflows", MakeNpy(1, F4Dict("(4294967296, 4294967296)"), four_floats), "is too large"},
      {"bytes overflow", MakeNpy(1, F4Dict("(4611686018427387904,)"), four_floats), "is too large"},
      {"extent overflows int64", MakeNpy(1, F4Dict("(99999999999999999999,)"), four_floats),
       "extent overflows int64"},
      {"negative extent", MakeNpy(1, F4Dict("(-1, 4)"), four_floats), "non-negative integer extent"},
      {"missing shape", MakeNpy(1, "{'descr': '<f4', 'fortran_order': False}", four_floats), "missing key 'shape'"},
      {"unknown key", MakeNpy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}", four_floats),
       "unexpected key 'x'"},
      {"duplicate key", MakeNpy(1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (4,)}", four_floats),
       "duplicate key 'descr'"},
      {"not a dict", MakeNpy(1, "descr=<f4", four_floats), "malformed header: expected '\\{'"},
      {"unterminated string", MakeNpy(1, "{'descr", ""), "unterminated string"},
      {"text after dict", MakeNpy(1, F4Dict("(4,)") + " junk", four_floats), "unexpected text after"},
      {"bad bool", MakeNpy(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (4,), }", four_floats),
       "expected True or False"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const absl::StatusOr<client::Tensor> tensor = ParseNpy(c.bytes, "bad.npy");
    ASSERT_FALSE(tensor.ok());
    EXPECT_EQ(tensor.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(tensor.status().message()), StartsWith("bad.npy: "));
    EXPECT_THAT(std::string(tensor.status().message()), ContainsRegex(c.message_regex));
  }
}

// Every prefix of a valid file is an error, never a crash (a poor man's fuzz of the parser).
TEST(NpyReadTest, EveryTruncationIsAnError) {
  const absl::StatusOr<std::string> bytes = SerializeNpy({{2, 3}, {1, 2, 3, 4, 5, 6}});
  ASSERT_TRUE(bytes.ok());
  for (size_t length = 0; length < bytes->size(); ++length) {
    EXPECT_FALSE(ParseNpy(bytes->substr(0, length), "cut.npy").ok()) << "length " << length;
  }
}

// Random byte corruptions (fixed seed) parse or fail cleanly; run under ASan/UBSan to see it.
TEST(NpyReadTest, CorruptedBytesNeverCrash) {
  const absl::StatusOr<std::string> valid = SerializeNpy({{2, 3}, {1, 2, 3, 4, 5, 6}});
  ASSERT_TRUE(valid.ok());
  std::mt19937 random(20210101);
  std::uniform_int_distribution<size_t> position(0, valid->size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int trial = 0; trial < 20000; ++trial) {
    std::string bytes = *valid;
    for (int flips = 1 + trial % 4; flips > 0; --flips) bytes[position(random)] = static_cast<char>(byte(random));
    const absl::StatusOr<client::Tensor> tensor = ParseNpy(bytes, "fuzz.npy");
    if (tensor.ok()) {
      int64_t count = 1;
      for (int64_t extent : tensor->shape) count *= extent;
      EXPECT_EQ(static_cast<size_t>(count), tensor->values.size());
    } else {
      EXPECT_EQ(tensor.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

TEST(NpyReadTest, FileErrorsNameThePath) {
  const absl::StatusOr<client::Tensor> missing = ReadNpy(TempPath("does_not_exist.npy"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("does_not_exist.npy: cannot open"));

  const std::string path = TempPath("not_numpy.npy");
  std::ofstream(path) << "hello";
  const absl::StatusOr<client::Tensor> text = ReadNpy(path);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(text.status().message()), StartsWith(path + ": bad magic"));
  std::remove(path.c_str());

  const absl::Status unwritable = WriteNpy(TempPath("no_such_dir/out.npy"), {{1}, {1}});
  EXPECT_EQ(unwritable.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(unwritable.message()), HasSubstr("out.npy: cannot open for writing"));
}

// The reader asks for the preamble, then the header, then the data the header announces: never
// for more than that plus what it counts (and drops) after the data.
TEST(NpyReadTest, ReadsOnlyWhatTheHeaderAnnounces) {
  const std::string file = MakeNpy(1, F4Dict("(2, 2)"), LittleEndianBytes<float>({1, 2, 3, 4}));
  struct Source {
    std::string bytes;
    uint64_t trailing = 0;  // Virtual bytes after `bytes`, handed out but never stored.
    size_t position = 0;
    size_t largest_request = 0;
  };
  auto make_input = [](Source& source) {
    return [&source](size_t max_bytes, std::string* out) {
      source.largest_request = std::max(source.largest_request, max_bytes);
      const size_t real = std::min(max_bytes, source.bytes.size() - source.position);
      out->append(source.bytes, source.position, real);
      source.position += real;
      const size_t extra = static_cast<size_t>(std::min<uint64_t>(max_bytes - real, source.trailing));
      out->append(extra, 'x');
      source.trailing -= extra;
      return absl::OkStatus();
    };
  };
  auto accept_f4 = [](const NpyHeader&) -> absl::StatusOr<int> { return 4; };

  Source exact{file};
  absl::StatusOr<NpyData> read = ReadNpyData(make_input(exact), "exact.npy", accept_f4);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->data, LittleEndianBytes<float>({1, 2, 3, 4}));
  EXPECT_EQ(read->count, 4);

  // 256 MiB after the data: counted in 64 KiB pieces, none kept.
  Source trailing{file, uint64_t{1} << 28};
  read = ReadNpyData(make_input(trailing), "trailing.npy", accept_f4);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(read.status().message()),
              HasSubstr("trailing.npy: data size mismatch: shape (2, 2) of '<f4' needs 16 bytes, 268435472 follow"));
  EXPECT_LE(trailing.largest_request, size_t{1} << 16);

  // A header announcing 4 GB over 16 real bytes: the reader asks for them, gets 16, and says so.
  Source lying{MakeNpy(1, F4Dict("(1000000000,)"), LittleEndianBytes<float>({1, 2, 3, 4}))};
  read = ReadNpyData(make_input(lying), "lying.npy", accept_f4);
  EXPECT_THAT(std::string(read.status().message()),
              HasSubstr("lying.npy: truncated data: shape (1000000000,) of '<f4' needs 4000000000 bytes, 16 follow"));

  // A file that is no .npy: refused after its first 12 bytes.
  Source other{std::string(1 << 20, '\0')};
  read = ReadNpyData(make_input(other), "other.npy", accept_f4);
  EXPECT_THAT(std::string(read.status().message()), HasSubstr("other.npy: bad magic"));
  EXPECT_EQ(other.position, 12u);
}

// A device that never ends (here /dev/zero, through a .npy name) is refused by its first bytes.
TEST(NpyReadTest, AnEndlessDeviceIsRefusedByItsMagic) {
  const std::string path = TempPath("endless.npy");
  std::remove(path.c_str());
  ASSERT_EQ(::symlink("/dev/zero", path.c_str()), 0);
  const absl::StatusOr<client::Tensor> tensor = ReadNpy(path);
  EXPECT_EQ(tensor.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(tensor.status().message()), StartsWith(path + ": bad magic"));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace cli
}  // namespace primserve
