// End to end over real gRPC: primserve-server as a child process on a free loopback port,
// called through the C++ client library.
#include <signal.h>
#include <stdlib.h>

#include <cstdio>
#include <cstring>
#include <future>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/attention.h"
#include "core/position_encoding.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "primserve/client/attention.h"
#include "primserve/client/channel.h"
#include "primserve/client/health.h"
#include "primserve/client/position_encoding.h"
#include "tests/e2e/metrics_scrape.h"
#include "tests/e2e/reflection_client.h"
#include "tests/e2e/server_channel.h"
#include "tests/e2e/server_process.h"

namespace primserve {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using testing::ServerBinary;
using testing::ServerProcess;
using HealthStatus = grpc::health::v1::HealthCheckResponse;

using testing::Channel;

class ServerE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<ServerProcess> server = ServerProcess::Start(ServerBinary(), {});
    ASSERT_TRUE(server.ok()) << server.status();
    server_.emplace(std::move(*server));
  }
  std::optional<ServerProcess> server_;
};

TEST_F(ServerE2ETest, HealthIsServingForTheServerAndEachService) {
  client::HealthClient health(Channel(*server_));
  for (const std::string service : {"", "primserve.v1.PositionEncoding", "primserve.v1.Attention"}) {
    SCOPED_TRACE(service);
    absl::StatusOr<client::ServingStatus> status = health.Check(service);
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_EQ(*status, HealthStatus::SERVING);
  }
  EXPECT_EQ(health.Check("no.such.Service").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ServerE2ETest, ReflectionListsTheServices) {
  absl::StatusOr<std::vector<std::string>> names = testing::ListedServices(Channel(*server_));
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_THAT(*names, Contains("primserve.v1.PositionEncoding"));
  EXPECT_THAT(*names, Contains("primserve.v1.Attention"));
  EXPECT_THAT(*names, Contains("grpc.health.v1.Health"));
}

TEST_F(ServerE2ETest, GoldensOverTheWire) {
  client::PositionEncodingClient rope(Channel(*server_));
  absl::StatusOr<client::Tensor> table = rope.Sinusoidal(2, 4);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->shape, (std::vector<int64_t>{2, 4}));
  const double p[] = {0, 1, 0, 1, 0.8414709848, 0.5403023059, 0.0099998333, 0.9999500004};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(table->values[i], p[i], 1e-7);

  client::Tensor q{{1, 4}, {1, 2, 3, 4}};
  v1::ApplyRopeRequest options;
  options.add_positions(1.0);
  options.set_pairing(v1::ROPE_PAIRING_HALF_SPLIT);
  absl::StatusOr<client::Tensor> rotated = rope.ApplyRope(q, options);
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  const double want[] = {-1.9841106486, 1.9599006675, 2.4623779024, 4.0197996683};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(rotated->values[i], want[i], 2e-6);
}

TEST_F(ServerE2ETest, LargeRopeIsBitIdenticalToTheCore) {
  // Odd shape, rank 4, partial rotary, multi-threaded path: the wire must not change a bit.
  Tensor input;
  input.shape = {3, 5, 257, 130};
  input.values.resize(3 * 5 * 257 * 130);
  std::mt19937 rng(11);
  std::normal_distribution<float> dist;
  for (float& v : input.values) v = dist(rng);
  RopeSpec spec;
  spec.pairing = RopePairing::kHalfSplit;
  spec.rotary_dim = 64;
  spec.base = 500;
  absl::StatusOr<Tensor> local = ApplyRope(input, spec);
  ASSERT_TRUE(local.ok());

  client::PositionEncodingClient rope(Channel(*server_));
  v1::ApplyRopeRequest options;
  options.set_pairing(v1::ROPE_PAIRING_HALF_SPLIT);
  options.set_rotary_dim(64);
  options.set_base(500);
  absl::StatusOr<client::Tensor> remote = rope.ApplyRope(client::Tensor{input.shape, input.values}, options);
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_EQ(remote->shape, input.shape);
  ASSERT_EQ(remote->values.size(), local->values.size());
  EXPECT_EQ(std::memcmp(remote->values.data(), local->values.data(), local->values.size() * 4), 0);
}

Tensor RandomTensor(Shape shape, uint32_t seed) {
  Tensor t;
  t.shape = shape;
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  t.values.resize(static_cast<size_t>(n));
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  for (float& v : t.values) v = dist(rng);
  return t;
}

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST_F(ServerE2ETest, AttendIsBitIdenticalToTheCore) {
  // Odd sizes everywhere, grouped-query (6 heads over 3), q_len != k_len, padding, RoPE.
  const Tensor query = RandomTensor({2, 6, 37, 72}, 1);
  const Tensor key = RandomTensor({2, 3, 131, 72}, 2);
  const Tensor value = RandomTensor({2, 3, 131, 40}, 3);
  client::AttentionClient attention(Channel(*server_));
  for (const bool linear : {false, true}) {
    SCOPED_TRACE(linear ? "linear" : "softmax");
    AttentionOptions options;
    options.kind = linear ? AttentionKind::kLinear : AttentionKind::kSoftmax;
    options.causal = true;
    options.key_lengths = {131, 90};
    options.return_weights = !linear;
    AttentionRope rope;
    rope.pairing = RopePairing::kHalfSplit;
    rope.rotary_dim = 32;
    options.rope = rope;
    absl::StatusOr<AttentionResult> local = Attend(query, key, value, options);
    ASSERT_TRUE(local.ok()) << local.status();

    v1::AttendRequest request;
    request.set_kind(linear ? v1::ATTENTION_KIND_LINEAR : v1::ATTENTION_KIND_SOFTMAX);
    request.set_causal(true);
    request.add_key_lengths(131);
    request.add_key_lengths(90);
    request.set_return_weights(!linear);
    request.mutable_rope()->set_pairing(v1::ROPE_PAIRING_HALF_SPLIT);
    request.mutable_rope()->set_rotary_dim(32);
    absl::StatusOr<client::AttendResult> remote =
        attention.Attend(client::Tensor{query.shape, query.values}, client::Tensor{key.shape, key.values},
                         client::Tensor{value.shape, value.values}, request);
    ASSERT_TRUE(remote.ok()) << remote.status();
    EXPECT_EQ(remote->output.shape, (std::vector<int64_t>{2, 6, 37, 40}));
    EXPECT_TRUE(BitEqual(remote->output.values, local->output.values));
    ASSERT_EQ(remote->weights.has_value(), !linear);
    if (!linear) {
      EXPECT_EQ(remote->weights->shape, (std::vector<int64_t>{2, 6, 37, 131}));
      EXPECT_TRUE(BitEqual(remote->weights->values, local->weights->values));
    }
  }
}

TEST_F(ServerE2ETest, EstimateCostGoldens) {
  client::AttentionClient attention(Channel(*server_));
  absl::StatusOr<v1::EstimateCostResponse> cost = attention.EstimateCost(512, 64, 12);
  ASSERT_TRUE(cost.ok()) << cost.status();
  EXPECT_EQ(cost->self_attention(), 1610612736.0);
  EXPECT_EQ(cost->ffn(), 2415919104.0);
  EXPECT_EQ(cost->attention_exceeds_ffn_length(), 1536.0);
  EXPECT_EQ(cost->quadratic_dominates_length(), 4608.0);
  EXPECT_EQ(cost->linear_attention_wins_length(), 1024.0);
  absl::StatusOr<v1::EstimateCostResponse> bad = attention.EstimateCost(512, 0, 12);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("head_size"));
}

TEST_F(ServerE2ETest, BadRequestsGetPreciseStatusesAndTheServerStaysHealthy) {
  client::PositionEncodingClient rope(Channel(*server_));
  absl::StatusOr<client::Tensor> odd = rope.Sinusoidal(4, 3);
  EXPECT_EQ(odd.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(odd.status().message()), HasSubstr("dim"));

  v1::ApplyRopeRequest lying;  // Claims [1e6, 1e6] with 4 bytes of data.
  lying.mutable_input()->add_shape(1000000);
  lying.mutable_input()->add_shape(1000000);
  lying.mutable_input()->set_data("abcd");
  absl::StatusOr<client::Tensor> huge = rope.ApplyRope(lying);
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted) << huge.status();

  client::AttentionClient attention(Channel(*server_));
  v1::AttendRequest no_value;
  *no_value.mutable_query() = client::ToProto(client::Tensor{{1, 1, 1, 4}, {1, 2, 3, 4}});
  *no_value.mutable_key() = no_value.query();
  absl::StatusOr<client::AttendResult> missing = attention.Attend(no_value);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("value"));

  client::HealthClient health(Channel(*server_));
  absl::StatusOr<client::ServingStatus> status = health.Check();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(*status, HealthStatus::SERVING);
}

TEST_F(ServerE2ETest, DeadlinesAreHonoured) {
  client::PositionEncodingClient rope(Channel(*server_));
  client::CallOptions call;
  call.timeout = absl::Microseconds(1);
  EXPECT_EQ(rope.Sinusoidal(100000, 64, call).status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(ServerLifecycle, EnvironmentOverridesFlags) {
  // PRIMSERVE_MAX_MESSAGE_BYTES=4096: an 8 KiB request is refused by gRPC's own size check.
  setenv("PRIMSERVE_MAX_MESSAGE_BYTES", "4096", 1);
  absl::StatusOr<ServerProcess> server = ServerProcess::Start(ServerBinary(), {});
  unsetenv("PRIMSERVE_MAX_MESSAGE_BYTES");
  ASSERT_TRUE(server.ok()) << server.status();
  client::PositionEncodingClient rope(Channel(*server));
  client::Tensor big{{16, 128}, std::vector<float>(16 * 128, 1.0f)};
  EXPECT_EQ(rope.ApplyRope(big).status().code(), absl::StatusCode::kResourceExhausted);
  client::Tensor small{{2, 4}, std::vector<float>(8, 1.0f)};
  EXPECT_TRUE(rope.ApplyRope(small).ok());
}

TEST(ServerLifecycle, MaxAttentionWeightsCapsReturnedWeights) {
  // Weights [1, 2, 3, 5] are 30 elements: refused above --max_attention_weights=29, before any
  // compute; the output alone is still served.
  absl::StatusOr<ServerProcess> server = ServerProcess::Start(ServerBinary(), {"--max_attention_weights=29"});
  ASSERT_TRUE(server.ok()) << server.status();
  client::AttentionClient attention(Channel(*server));
  const client::Tensor query{{1, 2, 3, 4}, std::vector<float>(24, 0.5f)};
  const client::Tensor key{{1, 2, 5, 4}, std::vector<float>(40, 0.25f)};
  v1::AttendRequest options;
  options.set_return_weights(true);
  absl::StatusOr<client::AttendResult> refused = attention.Attend(query, key, key, options);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  options.set_return_weights(false);
  absl::StatusOr<client::AttendResult> served = attention.Attend(query, key, key, options);
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_FALSE(served->weights.has_value());
}

TEST(ServerLifecycle, AttendPastItsDeadlineStopsComputing) {
  // ~1.1 TFLOP of softmax attention (k_len 131072, head_dim 16): many seconds even at the peak
  // of one core. Only a kernel that notices the passed deadline lets SIGTERM's drain end before
  // its 10 s grace period (the exit then takes the ~2 s flush window: see PrimServer::Shutdown).
  absl::StatusOr<ServerProcess> server = ServerProcess::Start(ServerBinary(), {"--compute_threads=1"});
  ASSERT_TRUE(server.ok()) << server.status();
  client::AttentionClient attention(Channel(*server));
  const client::Tensor big{{1, 1, 131072, 16}, std::vector<float>(131072 * 16, 0.125f)};
  client::CallOptions call;
  call.timeout = absl::Milliseconds(300);
  EXPECT_EQ(attention.Attend(big, big, big, {}, call).status().code(), absl::StatusCode::kDeadlineExceeded);
  server->Signal(SIGTERM);
  absl::StatusOr<int> code = server->WaitForExit(absl::Seconds(7));
  ASSERT_TRUE(code.ok()) << code.status() << "\n" << server->Log();
  EXPECT_EQ(*code, 0);
  EXPECT_THAT(server->Log(), ::testing::Not(HasSubstr("grace period over")));
}

TEST(ServerLifecycle, BadFlagsFailFast) {
  absl::StatusOr<ServerProcess> server = ServerProcess::Start(ServerBinary(), {"--max_message_bytes=10"},
                                                              absl::Seconds(5));
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("max_message_bytes"));
  absl::StatusOr<ServerProcess> negative =
      ServerProcess::Start(ServerBinary(), {"--max_attention_weights=-1"}, absl::Seconds(5));
  ASSERT_FALSE(negative.ok());
  EXPECT_THAT(std::string(negative.status().message()), HasSubstr("max_attention_weights"));
  absl::StatusOr<ServerProcess> idle =
      ServerProcess::Start(ServerBinary(), {"--max_idle_workspace_bytes=-1"}, absl::Seconds(5));
  ASSERT_FALSE(idle.ok());
  EXPECT_THAT(std::string(idle.status().message()), HasSubstr("max_idle_workspace_bytes: expected >= 0"));
  for (const char* drain : {"--drain_seconds=nan", "--drain_seconds=-5", "--drain_seconds=inf"}) {
    absl::StatusOr<ServerProcess> refused = ServerProcess::Start(ServerBinary(), {drain}, absl::Seconds(5));
    ASSERT_FALSE(refused.ok()) << drain;
    EXPECT_THAT(std::string(refused.status().message()), HasSubstr("drain_seconds: expected a finite number >= 0"));
    // Refused before the server listens: it never takes a call it would then drop.
    EXPECT_THAT(std::string(refused.status().message()), ::testing::Not(HasSubstr("listening"))) << drain;
  }
}

TEST(ServerLifecycle, HelpListsTheFlags) {
  // absl's --help matches flags to files named after the program: it printed "No flags matched".
  FILE* pipe = popen((ServerBinary() + " --help 2>&1").c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string help;
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof buffer, pipe)) > 0;) help.append(buffer, n);
  pclose(pipe);
  EXPECT_THAT(help, ::testing::Not(HasSubstr("No flags matched")));
  for (const char* flag : {"--address", "--admin_address", "--model_dir", "--max_message_bytes", "--compute_threads",
                           "--tls_cert", "--auth_token_file", "--log_level", "PRIMSERVE_"}) {
    EXPECT_THAT(help, HasSubstr(flag));
  }
}

TEST(ServerLifecycle, ASecondServerOnATakenPortFails) {
  // gRPC's default SO_REUSEPORT let a second server bind the same port and take a share of its
  // connections (a probe saw plaintext calls meant for a TLS server answered by another one).
  absl::StatusOr<ServerProcess> first = ServerProcess::Start(ServerBinary(), {});
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<ServerProcess> second =
      ServerProcess::Start(ServerBinary(), {"--address=" + first->address()}, absl::Seconds(10));
  ASSERT_FALSE(second.ok()) << "a second server started on " << first->address();
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("in use"));
}

TEST(ServerLifecycle, SigtermDrainsInFlightCallsAndExitsZero) {
  // One compute thread makes the call long (a 1e6 x 16 table: 64 MB of sin/cos).
  const int metrics_port = testing::FreePort();
  absl::StatusOr<ServerProcess> server = ServerProcess::Start(
      ServerBinary(), {"--compute_threads=1", absl::StrCat("--metrics_address=127.0.0.1:", metrics_port)});
  ASSERT_TRUE(server.ok()) << server.status();
  client::PositionEncodingClient rope(Channel(*server));
  std::future<absl::StatusOr<client::Tensor>> in_flight =
      std::async(std::launch::async, [&] { return rope.Sinusoidal(1000000, 16); });
  // The signal goes once the call runs on the server (not after a fixed time: under
  // ThreadSanitizer the call once arrived after the signal and was refused).
  const absl::Time started_by = absl::Now() + absl::Seconds(10);
  while (testing::Sample(testing::HttpGet(metrics_port, "/metrics"), "primserve_in_flight_requests") < 1 &&
         absl::Now() < started_by) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  server->Signal(SIGTERM);
  // Health turns NOT_SERVING once new calls are refused (server.cc); wait for it rather than a
  // fixed time (under ThreadSanitizer, 50 ms after the signal was once not enough).
  client::HealthClient health(Channel(*server));
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  for (absl::StatusOr<client::ServingStatus> status = health.Check();
       status.ok() && *status == grpc::health::v1::HealthCheckResponse::SERVING && absl::Now() < give_up;
       status = health.Check()) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  // While it drains, the server refuses new work with UNAVAILABLE (clients retry elsewhere).
  bool checked_refusal = false;
  if (in_flight.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    client::PositionEncodingClient second(Channel(*server));
    EXPECT_EQ(second.Sinusoidal(2, 4).status().code(), absl::StatusCode::kUnavailable);
    checked_refusal = true;
  }
  absl::StatusOr<client::Tensor> result = in_flight.get();
  ASSERT_TRUE(result.ok()) << result.status() << "\n" << server->Log();
  EXPECT_EQ(result->values.size(), 16000000u);
  absl::StatusOr<int> code = server->WaitForExit(absl::Seconds(20));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << server->Log();
  EXPECT_THAT(server->Log(), HasSubstr("SIGTERM"));
  if (!checked_refusal) std::printf("note: the in-flight call finished before the refusal check\n");
  std::printf("%s", server->Log().c_str());
  // Gone: a new call is UNAVAILABLE.
  client::CallOptions call;
  call.timeout = absl::Seconds(2);
  EXPECT_EQ(client::PositionEncodingClient(Channel(*server)).Sinusoidal(2, 4, call).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(ServerLifecycle, SigintAlsoExitsZero) {
  absl::StatusOr<ServerProcess> server = ServerProcess::Start(ServerBinary(), {});
  ASSERT_TRUE(server.ok()) << server.status();
  server->Signal(SIGINT);
  absl::StatusOr<int> code = server->WaitForExit(absl::Seconds(20));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

}  // namespace
}  // namespace primserve
