// Tests for client/cli/file_io.h and the token file reader on top of it: reads stop at their
// bound for regular files, pipes and devices alike, and errors carry errno-derived codes.
#include "client/cli/file_io.h"

#include <sys/stat.h>

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/cli/auth_token.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace primserve {
namespace cli {
namespace {

using ::testing::HasSubstr;

std::string TempPath(const std::string& name) { return absl::StrCat(::testing::TempDir(), "/file_io_", name); }

std::string WriteTemp(const std::string& name, const std::string& bytes) {
  const std::string path = TempPath(name);
  EXPECT_TRUE(WriteFileBytes(path, bytes).ok());
  return path;
}

TEST(InputFileTest, ReadsInTheRequestedAmounts) {
  const std::string path = WriteTemp("abc", std::string(200000, 'a') + "bc");
  absl::StatusOr<InputFile> file = InputFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->RegularFileSize(), uint64_t{200002});
  std::string out;
  ASSERT_TRUE(file->Read(199999, &out).ok());
  EXPECT_EQ(out.size(), 199999u);  // Several 64 KiB chunks, stopping inside the last one.
  ASSERT_TRUE(file->Read(10, &out).ok());
  EXPECT_EQ(out.size(), 200002u);  // Fewer at the end of the file.
  EXPECT_EQ(out.substr(199999), "abc");
  ASSERT_TRUE(file->Read(10, &out).ok());
  EXPECT_EQ(out.size(), 200002u);
}

TEST(InputFileTest, ErrorsCarryErrnoCodes) {
  EXPECT_EQ(InputFile::Open(TempPath("missing")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(InputFile::Open(TempPath("missing")).status().message()), HasSubstr("file_io_missing"));
  // A directory opens; reading it is the error (EISDIR).
  absl::StatusOr<InputFile> directory = InputFile::Open(::testing::TempDir());
  ASSERT_TRUE(directory.ok()) << directory.status();
  EXPECT_EQ(directory->RegularFileSize(), std::nullopt);
  std::string out;
  EXPECT_EQ(directory->Read(10, &out).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(WriteFileBytes(TempPath("no/such/dir"), "x").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(WriteFileBytes("/dev/full", "x").code(), absl::StatusCode::kResourceExhausted);
}

TEST(ReadTextFileTest, TheBoundHoldsForFilesAndDevices) {
  const std::string path = WriteTemp("text", "0123456789");
  absl::StatusOr<std::string> exact = ReadTextFile(path, 10);
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(*exact, "0123456789");
  absl::StatusOr<std::string> over = ReadTextFile(path, 9);  // Refused by its size, unread.
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(over.status().message()), HasSubstr("larger than 9 bytes"));
  // An endless device has no size: the read stops one byte past the bound.
  absl::StatusOr<std::string> zero = ReadTextFile("/dev/zero", 1 << 20);
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReadTextFile(::testing::TempDir(), 10).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(AuthTokenFileTest, FirstTokenLineWithinItsBound) {
  absl::StatusOr<std::string> token = ReadAuthToken(WriteTemp("token", "# comment\n\n  secret-1 \nsecond\n"));
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "secret-1");
  EXPECT_EQ(ReadAuthToken(WriteTemp("no_token", "# only\n\n")).status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::string> missing = ReadAuthToken(TempPath("missing_token"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("--auth_token_file " + TempPath("missing_token")));
  // /dev/zero given by mistake is refused after 64 KiB (it used to be read without end).
  EXPECT_EQ(ReadAuthToken("/dev/zero").status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReadAuthToken(::testing::TempDir()).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace cli
}  // namespace primserve
