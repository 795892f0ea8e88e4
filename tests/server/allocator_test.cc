// HeapAllocatedBytes: the live-heap count the soak test's leak check reads from /metrics. These
// tests run on glibc's malloc (or a sanitizer's); the jemalloc branch runs in the e2e tests,
// against primserve-server.
#include "server/allocator.h"

#include <cstdlib>
#include <cstring>
#include <optional>

#include "gtest/gtest.h"

namespace primserve {
namespace {

constexpr double kMiB = 1 << 20;

TEST(HeapAllocatedBytes, RisesByALiveBlockAndFallsWhenItIsFreed) {
  const std::optional<double> before = HeapAllocatedBytes();
  ASSERT_TRUE(before.has_value());
  EXPECT_GT(*before, 0);
  constexpr size_t kBlock = 64 << 20;
  void* block = std::malloc(kBlock);
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, kBlock);  // Also keeps the compiler from eliding the allocation.
  const std::optional<double> held = HeapAllocatedBytes();
  ASSERT_TRUE(held.has_value());
  EXPECT_GE(*held - *before, 64 * kMiB);
  EXPECT_LT(*held - *before, 65 * kMiB);
  std::free(block);
  const std::optional<double> after = HeapAllocatedBytes();
  ASSERT_TRUE(after.has_value());
  EXPECT_LT(*after - *before, 1 * kMiB);
}

TEST(DescribeAllocator, NamesGlibcWhereJemallocIsNotLinked) {
  // Test binaries never link jemalloc (only primserve-server and primserve-load do).
  EXPECT_EQ(DescribeAllocator(), "glibc malloc");
}

}  // namespace
}  // namespace primserve
