#include "server/status_mapping.h"

#include <string>

#include "gtest/gtest.h"

namespace primserve {
namespace {

TEST(StatusMapping, EveryCodeKeepsItsNumberAndMessage) {
  for (int code = 1; code <= 16; ++code) {
    SCOPED_TRACE(code);
    const absl::Status status(static_cast<absl::StatusCode>(code), "field: expected 1, got 2");
    const grpc::Status mapped = ToGrpcStatus(status);
    EXPECT_EQ(static_cast<int>(mapped.error_code()), code);
    EXPECT_EQ(mapped.error_message(), "field: expected 1, got 2");
  }
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

TEST(StatusMapping, TruncatesLongMessagesTo1KiB) {
  const grpc::Status mapped = ToGrpcStatus(absl::InvalidArgumentError(std::string(5000, 'x')));
  EXPECT_EQ(mapped.error_message().size(), kMaxStatusMessageBytes);
  EXPECT_EQ(mapped.error_message().substr(kMaxStatusMessageBytes - 3), "...");
}

}  // namespace
}  // namespace primserve
