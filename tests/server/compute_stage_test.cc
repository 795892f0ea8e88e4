#include "server/compute_stage.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics.h"

namespace primserve {
namespace {

using ::testing::HasSubstr;

TEST(ComputeStage, GrantsUpToWorkersAtOnceAndRefusesBeyondTheQueue) {
  ComputeStage stage(/*workers=*/2, /*max_queue=*/0);
  ComputeStage::Slot a, b, c;
  ASSERT_TRUE(stage.Acquire(absl::InfiniteFuture(), nullptr, &a).ok());
  ASSERT_TRUE(stage.Acquire(absl::InfiniteFuture(), nullptr, &b).ok());
  EXPECT_EQ(stage.running(), 2);
  const absl::Status full = stage.Acquire(absl::InfiniteFuture(), nullptr, &c);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.message(), HasSubstr("queue full: 0 waiting"));
  EXPECT_THAT(full.message(), HasSubstr("--max_queue=0"));
  EXPECT_FALSE(c.held());
  a.Release();
  EXPECT_EQ(stage.running(), 1);
  EXPECT_TRUE(stage.Acquire(absl::InfiniteFuture(), nullptr, &c).ok());
}

TEST(ComputeStage, WaitersAreServedInArrivalOrder) {
  ComputeStage stage(/*workers=*/1, /*max_queue=*/8);
  ComputeStage::Slot first;
  ASSERT_TRUE(stage.Acquire(absl::InfiniteFuture(), nullptr, &first).ok());
  std::vector<int> order;
  absl::Mutex order_mu;
  std::vector<std::thread> waiters;
  for (int i = 0; i < 4; ++i) {
    waiters.emplace_back([&, i] {
      ComputeStage::Slot slot;
      ASSERT_TRUE(stage.Acquire(absl::InfiniteFuture(), nullptr, &slot).ok());
      absl::MutexLock lock(&order_mu);
      order.push_back(i);
    });
    // Each waiter is queued before the next one starts.
    while (stage.waiting() != i + 1) absl::SleepFor(absl::Milliseconds(1));
  }
  first.Release();
  for (std::thread& t : waiters) t.join();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(stage.running(), 0);
  EXPECT_EQ(stage.waiting(), 0);
}

TEST(ComputeStage, AWaiterGivesUpAtItsDeadlineAndLeavesTheQueue) {
  ComputeStage stage(/*workers=*/1, /*max_queue=*/1);
  ComputeStage::Slot busy, waiter;
  ASSERT_TRUE(stage.Acquire(absl::InfiniteFuture(), nullptr, &busy).ok());
  const absl::Time start = absl::Now();
  const absl::Status late = stage.Acquire(start + absl::Milliseconds(50), nullptr, &waiter);
  EXPECT_EQ(late.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(late.message(), HasSubstr("did not start"));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(50));
  EXPECT_EQ(stage.waiting(), 0);
  busy.Release();
  EXPECT_TRUE(stage.Acquire(absl::InfiniteFuture(), nullptr, &waiter).ok());
}

TEST(ComputeStage, AWaiterStopsWhenCancelled) {
  ComputeStage stage(/*workers=*/1, /*max_queue=*/1);
  ComputeStage::Slot busy, waiter;
  ASSERT_TRUE(stage.Acquire(absl::InfiniteFuture(), nullptr, &busy).ok());
  std::atomic<bool> cancel{false};
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(30));
    cancel = true;
  });
  const absl::Status status = stage.Acquire(absl::InfiniteFuture(), [&] { return cancel.load(); }, &waiter);
  canceller.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(stage.waiting(), 0);
  EXPECT_EQ(stage.running(), 1);
}

TEST(ComputeStage, ObserverSeesEveryChangeAndEndsAtZero) {
  std::atomic<int64_t> running{-1}, waiting{-1};
  std::atomic<int> calls{0};
  ComputeStage stage(/*workers=*/1, /*max_queue=*/4, [&](int64_t r, int64_t w) {
    running = r;
    waiting = w;
    ++calls;
  });
  {
    ComputeStage::Slot busy;
    ASSERT_TRUE(stage.Acquire(absl::InfiniteFuture(), nullptr, &busy).ok());
    EXPECT_EQ(running, 1);
    std::thread waiter([&] {
      ComputeStage::Slot slot;
      EXPECT_TRUE(stage.Acquire(absl::InfiniteFuture(), nullptr, &slot).ok());
    });
    while (waiting.load() != 1) absl::SleepFor(absl::Milliseconds(1));
    busy.Release();
    waiter.join();
  }
  EXPECT_EQ(running, 0);
  EXPECT_EQ(waiting, 0);
  EXPECT_GE(calls, 4);
}

TEST(ComputeStage, SlotsMoveAndReleaseOnce) {
  ComputeStage stage(/*workers=*/1, /*max_queue=*/0);
  ComputeStage::Slot a;
  ASSERT_TRUE(stage.Acquire(absl::InfiniteFuture(), nullptr, &a).ok());
  ComputeStage::Slot b = std::move(a);
  EXPECT_FALSE(a.held());
  EXPECT_TRUE(b.held());
  a.Release();
  EXPECT_EQ(stage.running(), 1);
  b.Release();
  b.Release();
  EXPECT_EQ(stage.running(), 0);
}

TEST(Metrics, CountsByMethodAndCodeInTheTextFormat) {
  Metrics metrics;
  Metrics::Call call;
  call.method = "primserve.v1.Attention/Attend";
  call.received_bytes = 100;
  call.sent_bytes = 40;
  call.compute_seconds = 0.002;
  metrics.Record(call);
  metrics.Record(call);
  call.code = grpc::StatusCode::INVALID_ARGUMENT;
  metrics.Record(call);
  const std::string text = metrics.Text();
  EXPECT_THAT(text, HasSubstr("primserve_requests_total{code=\"OK\",method=\"primserve.v1.Attention/Attend\"} 2"));
  EXPECT_THAT(text, HasSubstr(
                        "primserve_requests_total{code=\"INVALID_ARGUMENT\",method=\"primserve.v1.Attention/Attend\"} 1"));
  EXPECT_THAT(text, HasSubstr("primserve_request_received_bytes_total{method=\"primserve.v1.Attention/Attend\"} 300"));
  EXPECT_THAT(text, HasSubstr("primserve_request_sent_bytes_total{method=\"primserve.v1.Attention/Attend\"} 120"));
  EXPECT_THAT(text, HasSubstr("primserve_request_compute_seconds_count{method=\"primserve.v1.Attention/Attend\"} 3"));
  EXPECT_THAT(text, HasSubstr(
                        "primserve_request_compute_seconds_bucket{method=\"primserve.v1.Attention/Attend\",le=\"0.0025\"} 3"));
  EXPECT_THAT(text, HasSubstr("primserve_request_compute_seconds_bucket{method=\"primserve.v1.Attention/Attend\",le=\"0.001\"} 0"));
  EXPECT_THAT(text, HasSubstr("primserve_build_info{"));
}

}  // namespace
}  // namespace primserve
