// Scale-out end to end: three replicas on loopback behind one client channel with the static
// target "ipv4:a,b,c" and the client library's default service config (round_robin with health
// checking, retries on UNAVAILABLE). Calls spread over all three replicas, and a replica that is
// SIGKILLed (connection reset under calls in flight) or SIGTERMed (drain) mid-run costs no call.
//
// Which replica answered a call: ClientContext::peer() after the call ("ipv4:127.0.0.1:<port>").
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "primserve/client/channel.h"
#include "primserve/v1/position_encoding.grpc.pb.h"
#include "tests/e2e/server_process.h"

namespace primserve {
namespace {

using ::testing::HasSubstr;
using testing::ServerBinary;
using testing::ServerProcess;

constexpr int kReplicas = 3;
constexpr int kThreads = 4;
constexpr int kCallsPerThread = 400;
// Per call. Generous: a 2-core CI machine runs three servers and four client threads at once;
// a retried call spends at most ~0.05 + 0.1 + 0.2 + 0.4 s in backoff.
constexpr absl::Duration kCallTimeout = absl::Seconds(5);

struct Fleet {
  std::vector<ServerProcess> servers;
  std::string target;  // "ipv4:127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3"

  // The replica a peer string names, or -1.
  int IndexOf(const std::string& peer) const {
    for (size_t i = 0; i < servers.size(); ++i) {
      if (peer == absl::StrCat("ipv4:", servers[i].address())) return static_cast<int>(i);
    }
    return -1;
  }
};

absl::StatusOr<Fleet> StartFleet() {
  Fleet fleet;
  std::vector<std::string> addresses;
  for (int i = 0; i < kReplicas; ++i) {
    // One compute thread each: three replicas share the machine's cores.
    absl::StatusOr<ServerProcess> server = ServerProcess::Start(ServerBinary(), {"--compute_threads=1"});
    if (!server.ok()) return server.status();
    addresses.push_back(server->address());
    fleet.servers.push_back(*std::move(server));
  }
  fleet.target = absl::StrCat("ipv4:", absl::StrJoin(addresses, ","));
  return fleet;
}

struct CallResult {
  grpc::Status status;
  std::string peer;
};

// One small Sinusoidal call ([length, 16] table) through the raw stub, so the context's peer()
// is visible; a wrong-shaped answer counts as a failure.
CallResult SmallCall(v1::PositionEncoding::Stub& stub, int64_t length) {
  grpc::ClientContext context;
  client::CallOptions call;
  call.timeout = kCallTimeout;
  client::ConfigureContext(call, &context);
  v1::SinusoidalRequest request;
  request.set_length(length);
  request.set_dim(16);
  v1::SinusoidalResponse response;
  CallResult result{stub.Sinusoidal(&context, request, &response), context.peer()};
  if (result.status.ok() && (response.output().shape_size() != 2 || response.output().shape(0) != length ||
                             response.output().shape(1) != 16)) {
    result.status = grpc::Status(grpc::StatusCode::INTERNAL, "unexpected output shape");
  }
  return result;
}

// round_robin only picks READY subchannels and connects them concurrently: call until every
// replica has answered one (bounded), so the counts below measure balancing, not start-up.
void WarmUp(const Fleet& fleet, v1::PositionEncoding::Stub& stub) {
  std::vector<int> seen(kReplicas, 0);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline && std::count(seen.begin(), seen.end(), 0) > 0) {
    CallResult result = SmallCall(stub, 4);
    ASSERT_TRUE(result.status.ok()) << result.status.error_message();
    const int index = fleet.IndexOf(result.peer);
    ASSERT_GE(index, 0) << "unknown peer " << result.peer;
    ++seen[static_cast<size_t>(index)];
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(std::count(seen.begin(), seen.end(), 0), 0)
      << "not every replica answered within 20 s: " << absl::StrJoin(seen, ",");
}

struct RunCounts {
  // Successful calls per replica, split by whether the call started before or after the signal.
  std::vector<int> before = std::vector<int>(kReplicas, 0);
  std::vector<int> after = std::vector<int>(kReplicas, 0);
  int total = 0;
  int failures = 0;
  std::vector<std::string> failure_messages;  // The first few.
  absl::Duration slowest;
};

// kThreads threads make kCallsPerThread calls each over `stub`; once a third of them are done,
// `victim` gets `signal_number`.
RunCounts RunAndSignal(const Fleet& fleet, v1::PositionEncoding::Stub& stub, int victim, int signal_number) {
  RunCounts counts;
  absl::Mutex mu;
  std::atomic<int> completed{0};
  std::atomic<bool> signalled{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < kCallsPerThread; ++k) {
        const bool after = signalled.load();
        const absl::Time start = absl::Now();
        CallResult result = SmallCall(stub, 1 + (t + k) % 7);
        const absl::Duration elapsed = absl::Now() - start;
        const int index = fleet.IndexOf(result.peer);
        {
          absl::MutexLock lock(&mu);
          ++counts.total;
          counts.slowest = std::max(counts.slowest, elapsed);
          if (!result.status.ok() || index < 0) {
            ++counts.failures;
            if (counts.failure_messages.size() < 5) {
              counts.failure_messages.push_back(absl::StrCat("code ", result.status.error_code(), ": ",
                                                             result.status.error_message(), " (peer ",
                                                             result.peer, ")"));
            }
          } else {
            ++(after ? counts.after : counts.before)[static_cast<size_t>(index)];
          }
        }
        completed.fetch_add(1);
      }
    });
  }
  const int total = kThreads * kCallsPerThread;
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (completed.load() < total / 3 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(1));
  fleet.servers[static_cast<size_t>(victim)].Signal(signal_number);
  signalled.store(true);
  const int completed_at_signal = completed.load();
  for (std::thread& thread : threads) thread.join();
  std::printf("signal %d to replica %d after %d of %d calls\n", signal_number, victim, completed_at_signal, total);
  return counts;
}

void PrintAndCheck(const RunCounts& counts, int victim) {
  std::printf("calls per replica, started before the signal: %s; after: %s\n",
              absl::StrJoin(counts.before, " / ").c_str(), absl::StrJoin(counts.after, " / ").c_str());
  std::printf("total calls %d, failures %d, slowest call %s\n", counts.total, counts.failures,
              absl::FormatDuration(counts.slowest).c_str());
  EXPECT_EQ(counts.total, kThreads * kCallsPerThread);
  EXPECT_EQ(counts.failures, 0) << absl::StrJoin(counts.failure_messages, "\n");
  // round_robin over three READY replicas gives each about a third; 15% leaves room for the
  // victim's share shrinking around the signal and for scheduling noise.
  int before_total = 0;
  for (int n : counts.before) before_total += n;
  int after_total = 0;
  for (int n : counts.after) after_total += n;
  for (int i = 0; i < kReplicas; ++i) {
    SCOPED_TRACE(absl::StrCat("replica ", i));
    EXPECT_GE(counts.before[static_cast<size_t>(i)], before_total * 15 / 100) << "calls did not spread";
    // The survivors carry the rest of the run between them.
    if (i != victim) {
      EXPECT_GE(counts.after[static_cast<size_t>(i)], after_total * 30 / 100);
    }
  }
}

std::shared_ptr<grpc::Channel> BalancedChannel(const Fleet& fleet) {
  client::ChannelOptions options;
  options.address = fleet.target;
  return client::CreateChannel(options);
}

TEST(ScaleOutE2E, ChannelCarriesTheDefaultServiceConfig) {
  const std::string json = client::DefaultServiceConfig(client::ChannelOptions());
  EXPECT_THAT(json, HasSubstr("\"round_robin\""));
  EXPECT_THAT(json, HasSubstr("\"healthCheckConfig\": {\"serviceName\": \"\"}"));
  EXPECT_THAT(json, HasSubstr("\"maxAttempts\": 5"));
  EXPECT_THAT(json, HasSubstr("\"retryableStatusCodes\": [\"UNAVAILABLE\"]"));
  EXPECT_THAT(json, HasSubstr("{\"service\": \"primserve.v1.PositionEncoding\"}"));
  EXPECT_THAT(json, HasSubstr("{\"service\": \"grpc.health.v1.Health\"}"));
  client::ChannelOptions no_retries;
  no_retries.max_attempts = 1;
  EXPECT_THAT(client::DefaultServiceConfig(no_retries), ::testing::Not(HasSubstr("retryPolicy")));
  client::ChannelOptions unchecked;
  unchecked.health_checked_balancing = false;
  EXPECT_THAT(client::DefaultServiceConfig(unchecked), ::testing::Not(HasSubstr("healthCheckConfig")));
  client::ChannelOptions many;
  many.max_attempts = 9;
  EXPECT_THAT(client::DefaultServiceConfig(many), HasSubstr("\"maxAttempts\": 5"));

  // gRPC parsed and applied it (an invalid config would leave the channel failing every call).
  absl::StatusOr<ServerProcess> server = ServerProcess::Start(ServerBinary(), {"--compute_threads=1"});
  ASSERT_TRUE(server.ok()) << server.status();
  client::ChannelOptions options;
  options.address = server->address();
  std::shared_ptr<grpc::Channel> channel = client::CreateChannel(options);
  v1::PositionEncoding::Stub stub(channel);
  ASSERT_TRUE(SmallCall(stub, 3).status.ok());
  EXPECT_THAT(channel->GetServiceConfigJSON(), HasSubstr("retryPolicy"));
  EXPECT_EQ(channel->GetLoadBalancingPolicyName(), "round_robin");
}

TEST(ScaleOutE2E, SigkillOfOneReplicaMidRunLosesNoCall) {
  absl::StatusOr<Fleet> fleet = StartFleet();
  ASSERT_TRUE(fleet.ok()) << fleet.status();
  std::shared_ptr<grpc::Channel> channel = BalancedChannel(*fleet);
  v1::PositionEncoding::Stub stub(channel);
  ASSERT_NO_FATAL_FAILURE(WarmUp(*fleet, stub));

  constexpr int kVictim = 1;
  const RunCounts counts = RunAndSignal(*fleet, stub, kVictim, SIGKILL);
  PrintAndCheck(counts, kVictim);
  absl::StatusOr<int> exit = fleet->servers[kVictim].WaitForExit(absl::Seconds(10));
  EXPECT_THAT(exit.status().message(), HasSubstr("signal 9"));
}

TEST(ScaleOutE2E, SigtermDrainOfOneReplicaMidRunLosesNoCall) {
  absl::StatusOr<Fleet> fleet = StartFleet();
  ASSERT_TRUE(fleet.ok()) << fleet.status();
  std::shared_ptr<grpc::Channel> channel = BalancedChannel(*fleet);
  v1::PositionEncoding::Stub stub(channel);
  ASSERT_NO_FATAL_FAILURE(WarmUp(*fleet, stub));

  constexpr int kVictim = 2;
  const RunCounts counts = RunAndSignal(*fleet, stub, kVictim, SIGTERM);
  PrintAndCheck(counts, kVictim);
  absl::StatusOr<int> exit = fleet->servers[kVictim].WaitForExit(absl::Seconds(30));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(*exit, 0) << fleet->servers[kVictim].Log();
}

}  // namespace
}  // namespace primserve
