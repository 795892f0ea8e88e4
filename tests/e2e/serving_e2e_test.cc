// The server's execution model and observability, end to end: the bounded compute stage
// (queue full -> RESOURCE_EXHAUSTED at once), deadlines abandoning work, the Prometheus
// /metrics endpoint, request ids and the per-request log line, --drain_seconds, and the pooled
// messages of the large-tensor methods (server/message_pool.h).
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "primserve/client/attention.h"
#include "primserve/client/channel.h"
#include "primserve/client/diagnostics.h"
#include "primserve/client/health.h"
#include "primserve/client/position_encoding.h"
#include "primserve/v1/attention.pb.h"
#include "primserve/v1/diagnostics.pb.h"
#include "primserve/v1/discriminator.pb.h"
#include "primserve/v1/logistic_regression.pb.h"
#include "primserve/v1/models.pb.h"
#include "primserve/v1/position_encoding.grpc.pb.h"
#include "primserve/v1/toolkit.pb.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/generic/generic_stub.h"
#include "tests/e2e/generic_call.h"
#include "tests/e2e/metrics_scrape.h"
#include "tests/e2e/server_channel.h"
#include "tests/e2e/server_process.h"

namespace primserve {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::FreePort;
using testing::HttpGet;
using testing::RequestsSeries;
using testing::Sample;
using testing::ServerBinary;
using testing::ServerProcess;

using testing::Channel;

// Softmax attention with head_dim 1: cheap to send (12 bytes per position), costly to compute
// (one exp per query-key pair), so that its duration is the kernel's, not the transport's.
client::Tensor Column(int64_t length) { return {{1, 1, length, 1}, std::vector<float>(length, 0.5f)}; }

absl::Duration TimeAttend(client::AttentionClient& attention, int64_t length, absl::Duration timeout,
                          absl::StatusCode* code) {
  client::CallOptions call;
  call.timeout = timeout;
  const client::Tensor column = Column(length);
  const absl::Time start = absl::Now();
  *code = attention.Attend(column, column, column, {}, call).status().code();
  return absl::Now() - start;
}

// The flood's job must take much longer than a refusal (a connection's round trip, tens of
// milliseconds on a loaded machine or under ASan), whatever the kernel's speed: its length doubles
// from 4096 until one call takes at least 400 ms (the first call of each length warms it up).
int64_t CalibrateJobLength(client::AttentionClient& attention, absl::Duration* job) {
  int64_t length = 4096;
  for (;; length *= 2) {
    absl::StatusCode code;
    TimeAttend(attention, length, absl::Seconds(60), &code);
    EXPECT_EQ(code, absl::StatusCode::kOk);
    *job = TimeAttend(attention, length, absl::Seconds(60), &code);
    EXPECT_EQ(code, absl::StatusCode::kOk);
    if (code != absl::StatusCode::kOk || *job >= absl::Milliseconds(400) || length >= 262144) return length;
  }
}

TEST(ComputeStage, AFloodBeyondTheQueueIsRefusedAtOnceAndTheRestSucceeds) {
  const int metrics_port = FreePort();
  absl::StatusOr<ServerProcess> server = ServerProcess::Start(
      ServerBinary(), {"--compute_workers=1", "--compute_threads=1", "--max_queue=2",
                       absl::StrCat("--metrics_address=127.0.0.1:", metrics_port)});
  ASSERT_TRUE(server.ok()) << server.status();
  client::AttentionClient attention(Channel(*server));
  absl::StatusCode code;
  // Warm-up (primitives created), the job's length and duration.
  absl::Duration job;
  const int64_t length = CalibrateJobLength(attention, &job);
  ASSERT_FALSE(::testing::Test::HasFailure());

  constexpr int kRounds = 3;
  constexpr int kClients = 16;
  int ok = 0, refused = 0;
  absl::Duration slowest_refusal;
  // One round of 16 calls at once, each from its own fresh connection.
  auto flood = [&] {
    std::vector<absl::StatusCode> codes(kClients);
    std::vector<absl::Duration> latencies(kClients);
    std::vector<std::string> messages(kClients);
    // Every client connects first, so that the latencies below are the calls' own.
    std::vector<std::shared_ptr<grpc::Channel>> channels;
    for (int i = 0; i < kClients; ++i) {
      channels.push_back(Channel(*server));
      ASSERT_TRUE(channels.back()->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(10))));
    }
    std::vector<std::thread> clients;
    for (int i = 0; i < kClients; ++i) {
      clients.emplace_back([&, i] {
        client::AttentionClient own(channels[i]);
        client::CallOptions call;
        call.timeout = absl::Seconds(60);
        const client::Tensor column = Column(length);
        const absl::Time start = absl::Now();
        absl::Status status = own.Attend(column, column, column, {}, call).status();
        latencies[i] = absl::Now() - start;
        codes[i] = status.code();
        messages[i] = std::string(status.message());
      });
    }
    for (std::thread& t : clients) t.join();
    for (int i = 0; i < kClients; ++i) {
      if (codes[i] == absl::StatusCode::kOk) {
        ++ok;
      } else {
        ASSERT_EQ(codes[i], absl::StatusCode::kResourceExhausted) << messages[i];
        EXPECT_THAT(messages[i], HasSubstr("queue full: 2 waiting"));
        ++refused;
        slowest_refusal = std::max(slowest_refusal, latencies[i]);
      }
    }
  };
  // A first flood grows the server's threads (gRPC keeps them as pollers) and the allocator's
  // per-thread caches to what 16 connections need; the memory baseline is taken after it.
  flood();
  ASSERT_FALSE(::testing::Test::HasFailure());
  const std::string baseline = HttpGet(metrics_port, "/metrics");
  const double baseline_rss = Sample(baseline, "process_resident_memory_bytes");
  const double baseline_heap = Sample(baseline, "primserve_heap_allocated_bytes");
  ASSERT_GT(baseline_rss, 0);
  ASSERT_GT(baseline_heap, 0);
  const double ok_before = Sample(baseline, RequestsSeries("Attention/Attend", "OK"));
  const double refused_before = Sample(baseline, RequestsSeries("Attention/Attend", "RESOURCE_EXHAUSTED"));
  ok = refused = 0;
  slowest_refusal = absl::ZeroDuration();
  for (int round = 0; round < kRounds; ++round) {
    flood();
    ASSERT_FALSE(::testing::Test::HasFailure());
  }
  // 16 calls at once against 1 worker + 2 queue places: most are refused, and at once (well
  // within one job's time, which a queued call would have had to wait).
  std::printf("flood: %d rounds x %d clients: %d ok, %d refused; job (length %lld) %s, slowest refusal %s\n", kRounds,
              kClients, ok, refused, static_cast<long long>(length), absl::FormatDuration(job).c_str(),
              absl::FormatDuration(slowest_refusal).c_str());
  EXPECT_GE(ok, kRounds * 3);
  EXPECT_GE(refused, kRounds * kClients / 2);
  EXPECT_LT(slowest_refusal, job);

  client::HealthClient health(Channel(*server));
  absl::StatusOr<client::ServingStatus> serving = health.Check();
  ASSERT_TRUE(serving.ok()) << serving.status();
  EXPECT_EQ(*serving, grpc::health::v1::HealthCheckResponse::SERVING);
  TimeAttend(attention, length, absl::Seconds(60), &code);
  EXPECT_EQ(code, absl::StatusCode::kOk);

  const std::string metrics = HttpGet(metrics_port, "/metrics");
  // Leaks show in the live heap; the resident set also holds what the allocator keeps cached
  // for reuse (16 connections' buffers, per-thread arenas), so it only gets a bound on runaway growth.
  const double rss = Sample(metrics, "process_resident_memory_bytes");
  const double heap = Sample(metrics, "primserve_heap_allocated_bytes");
  std::printf("live heap: %.1f MiB after the first flood, %.1f MiB after 3 more; resident memory: %.1f MiB, %.1f MiB\n",
              baseline_heap / 1048576, heap / 1048576, baseline_rss / 1048576, rss / 1048576);
  // The live heap moves by several MiB between floods without any trend (gRPC's pollers and
  // per-thread caches): on one 2-core machine, runs read 7.8, 13.5, 14.3 and 18.1 MiB after three
  // floods from an 8.6-10.0 MiB baseline, and 18.1 failed an 8 MiB slack. A leak of one request
  // (3 x 128 KiB) per call adds 18 MiB over the 48 calls, above this bound; smaller leaks are the
  // soak test's to find (Soak.ThirtyTwoClients..., 60k calls).
  EXPECT_LT(heap, baseline_heap * 1.10 + 16 * 1048576);
  if (!testing::kAddressSanitizer) {  // ASan's quarantine and shadow memory swell the resident set.
    EXPECT_LT(rss, baseline_rss * 1.5);
  }
  // The server counted what the clients saw (+1: the check after).
  EXPECT_EQ(Sample(metrics, RequestsSeries("Attention/Attend", "OK")), ok_before + ok + 1);
  EXPECT_EQ(Sample(metrics, RequestsSeries("Attention/Attend", "RESOURCE_EXHAUSTED")), refused_before + refused);
  EXPECT_EQ(Sample(metrics, "primserve_compute_queue_depth"), 0);
  EXPECT_EQ(Sample(metrics, "primserve_in_flight_requests"), 0);
}

TEST(ComputeStage, ADeadlineAbandonsALongJobAndFreesTheWorker) {
  absl::StatusOr<ServerProcess> server =
      ServerProcess::Start(ServerBinary(), {"--compute_workers=1", "--compute_threads=1"});
  ASSERT_TRUE(server.ok()) << server.status();
  client::AttentionClient attention(Channel(*server));
  client::PositionEncodingClient rope(Channel(*server));
  absl::StatusCode code;
  // 65536^2 exps: seconds of work on one thread.
  const absl::Duration job_timeout_10ms = TimeAttend(attention, 65536, absl::Milliseconds(10), &code);
  EXPECT_EQ(code, absl::StatusCode::kDeadlineExceeded);
  // The one worker is free again at once: a small call is not stuck behind the abandoned job.
  const absl::Time start = absl::Now();
  client::CallOptions call;
  call.timeout = absl::Seconds(5);
  ASSERT_TRUE(rope.Sinusoidal(16, 64, call).ok());
  const absl::Duration small_after_10ms = absl::Now() - start;

  // Once more with a deadline the call surely reaches the kernel in, to see the kernel stop.
  const absl::Duration job_timeout_300ms = TimeAttend(attention, 65536, absl::Milliseconds(300), &code);
  EXPECT_EQ(code, absl::StatusCode::kDeadlineExceeded);
  const absl::Time start2 = absl::Now();
  ASSERT_TRUE(rope.Sinusoidal(16, 64, call).ok());
  const absl::Duration small_after_300ms = absl::Now() - start2;
  std::printf("10 ms deadline: DEADLINE_EXCEEDED after %s, next call %s; 300 ms: after %s, next call %s\n",
              absl::FormatDuration(job_timeout_10ms).c_str(), absl::FormatDuration(small_after_10ms).c_str(),
              absl::FormatDuration(job_timeout_300ms).c_str(), absl::FormatDuration(small_after_300ms).c_str());
  EXPECT_LT(small_after_10ms, absl::Milliseconds(500));
  EXPECT_LT(small_after_300ms, absl::Milliseconds(500));
  // The server's own record: the abandoned Attend ended within a fraction of the job.
  absl::SleepFor(absl::Milliseconds(200));  // Log lines are written after the response.
  const std::string log = server->Log();
  std::smatch match;
  const std::regex line(R"(rpc primserve\.v1\.Attention/Attend DEADLINE_EXCEEDED ([0-9.]+) ms)");
  int abandoned = 0;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator(); ++it) {
    EXPECT_LT(std::stod((*it)[1]), 600.0) << log;
    ++abandoned;
  }
  // The 300 ms call always reached the kernel; the 10 ms one may expire in transport (786 KB
  // upload) before gRPC hands it to the server, and then it leaves no line.
  EXPECT_GE(abandoned, 1) << log;
}

TEST(Observability, MetricsCountGoodAndBadCallsPerCode) {
  const int metrics_port = FreePort();
  absl::StatusOr<ServerProcess> server =
      ServerProcess::Start(ServerBinary(), {absl::StrCat("--metrics_address=127.0.0.1:", metrics_port)});
  ASSERT_TRUE(server.ok()) << server.status();
  client::PositionEncodingClient rope(Channel(*server));
  client::AttentionClient attention(Channel(*server));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(rope.Sinusoidal(16, 64).ok());
  for (int i = 0; i < 2; ++i) EXPECT_EQ(rope.Sinusoidal(16, 63).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(attention.EstimateCost(0, 64, 12).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(attention.EstimateCost(512, 64, 12).ok());
  const client::Tensor q{{1, 2, 3, 4}, std::vector<float>(24, 1.0f)};
  const client::Tensor k{{1, 3, 3, 4}, std::vector<float>(36, 1.0f)};  // 2 % 3 != 0
  EXPECT_EQ(attention.Attend(q, k, k).status().code(), absl::StatusCode::kInvalidArgument);

  const std::string response = HttpGet(metrics_port, "/metrics");
  ASSERT_THAT(response, HasSubstr("200 OK"));
  EXPECT_EQ(Sample(response, RequestsSeries("PositionEncoding/Sinusoidal", "OK")), 3);
  EXPECT_EQ(Sample(response, RequestsSeries("PositionEncoding/Sinusoidal", "INVALID_ARGUMENT")), 2);
  EXPECT_EQ(Sample(response, RequestsSeries("Attention/EstimateCost", "OK")), 1);
  EXPECT_EQ(Sample(response, RequestsSeries("Attention/EstimateCost", "INVALID_ARGUMENT")), 1);
  EXPECT_EQ(Sample(response, RequestsSeries("Attention/Attend", "INVALID_ARGUMENT")), 1);
  EXPECT_EQ(Sample(response, RequestsSeries("Attention/Attend", "OK")), -1);  // Never called with success.
  const std::string sinusoidal = "{method=\"primserve.v1.PositionEncoding/Sinusoidal\"}";
  EXPECT_EQ(Sample(response, "primserve_request_compute_seconds_count" + sinusoidal), 5);
  EXPECT_EQ(Sample(response, "primserve_request_queue_seconds_count" + sinusoidal), 5);
  // Each good response carries the 16 x 64 table: 4096 bytes of floats plus framing.
  EXPECT_GE(Sample(response, "primserve_request_sent_bytes_total" + sinusoidal), 3 * 4096);
  EXPECT_GT(Sample(response, "primserve_request_received_bytes_total" + sinusoidal), 0);
  EXPECT_THAT(response, HasSubstr("primserve_build_info{isa=\""));
  EXPECT_GT(Sample(response, "process_open_fds"), 0);
  EXPECT_GT(Sample(response, "primserve_heap_allocated_bytes"), 0);
  EXPECT_THAT(HttpGet(metrics_port, "/nothing"), HasSubstr("404"));
}

TEST(Observability, UnparseableAndOversizedRequestsAreRefusedCountedAndLogged) {
  // gRPC's generated handlers answered bytes that do not parse with INTERNAL and no message, and
  // neither those calls nor requests over --max_message_bytes reached the metrics or the log.
  const int metrics_port = FreePort();
  absl::StatusOr<ServerProcess> server = ServerProcess::Start(
      ServerBinary(), {absl::StrCat("--metrics_address=127.0.0.1:", metrics_port), "--max_message_bytes=65536"});
  ASSERT_TRUE(server.ok()) << server.status();
  grpc::GenericStub stub(Channel(*server));
  const std::string garbage = "\xff\xff\xff";
  int methods = 0;
  // One message of each proto file: its descriptor names the file's service.
  for (const google::protobuf::Descriptor* message :
       {v1::SinusoidalRequest::descriptor(), v1::AttendRequest::descriptor(), v1::FitRequest::descriptor(),
        v1::ListRequest::descriptor(), v1::ScoreRequest::descriptor(), v1::EmbeddingDimensionRequest::descriptor(),
        v1::EchoRequest::descriptor()}) {
    ASSERT_EQ(message->file()->service_count(), 1) << message->file()->name();
    const google::protobuf::ServiceDescriptor* service = message->file()->service(0);
    for (int i = 0; i < service->method_count(); ++i) {
      const google::protobuf::MethodDescriptor* method = service->method(i);
      if (method->client_streaming()) continue;  // FitStream: the Python client test sends it bad messages.
      SCOPED_TRACE(method->full_name());
      ++methods;
      const std::string path = absl::StrCat("/", service->full_name(), "/", method->name());
      const grpc::Status unparsed = testing::GenericCall(stub, path, garbage);
      EXPECT_EQ(unparsed.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
      EXPECT_EQ(unparsed.error_message(), absl::StrCat("the request's 3 bytes do not parse as a ",
                                                       method->input_type()->full_name(), " message"));
      EXPECT_EQ(testing::GenericCall(stub, path, std::string(100000, 'x')).error_code(),
                grpc::StatusCode::RESOURCE_EXHAUSTED);
    }
  }
  EXPECT_EQ(methods, 18);
  const std::string metrics = HttpGet(metrics_port, "/metrics");
  for (const char* method : {"PositionEncoding/ApplyRope", "Attention/Attend", "LogisticRegression/Predict",
                             "Models/Get", "Discriminator/Score", "Toolkit/ChildTuningMask", "Diagnostics/Echo"}) {
    EXPECT_EQ(Sample(metrics, RequestsSeries(method, "INVALID_ARGUMENT")), 1) << method;
    EXPECT_EQ(Sample(metrics, RequestsSeries(method, "RESOURCE_EXHAUSTED")), 1) << method;
  }
  absl::SleepFor(absl::Milliseconds(100));
  const std::string log = server->Log();
  EXPECT_THAT(log, HasSubstr("rpc primserve.v1.Attention/Attend INVALID_ARGUMENT"));
  EXPECT_THAT(log, HasSubstr("the request's 3 bytes do not parse as a primserve.v1.AttendRequest message"));
  EXPECT_THAT(log, HasSubstr("rpc primserve.v1.Toolkit/EmbeddingDimension RESOURCE_EXHAUSTED"));
  EXPECT_THAT(log, HasSubstr("the request message was not received: larger than --max_message_bytes"));
  // The server still serves.
  client::PositionEncodingClient rope(Channel(*server));
  EXPECT_TRUE(rope.Sinusoidal(2, 4).ok());
}

TEST(Observability, EveryCallHasALogLineWithItsRequestId) {
  absl::StatusOr<ServerProcess> server = ServerProcess::Start(ServerBinary(), {});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::PositionEncoding::NewStub(Channel(*server));
  v1::SinusoidalRequest request;
  request.set_length(4);
  request.set_dim(8);
  v1::SinusoidalResponse response;
  grpc::ClientContext with_id;
  with_id.AddMetadata("x-request-id", "trace-42");
  ASSERT_TRUE(stub->Sinusoidal(&with_id, request, &response).ok());
  // The id comes back as initial metadata.
  const auto echoed = with_id.GetServerInitialMetadata().find("x-request-id");
  ASSERT_NE(echoed, with_id.GetServerInitialMetadata().end());
  EXPECT_EQ(std::string(echoed->second.data(), echoed->second.size()), "trace-42");

  grpc::ClientContext without_id;
  request.set_dim(7);
  ASSERT_EQ(stub->Sinusoidal(&without_id, request, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  const auto generated = without_id.GetServerInitialMetadata().find("x-request-id");
  ASSERT_NE(generated, without_id.GetServerInitialMetadata().end());
  const std::string id(generated->second.data(), generated->second.size());
  EXPECT_EQ(id.size(), 16u);

  absl::SleepFor(absl::Milliseconds(100));  // The log line is written after the response.
  const std::string log = server->Log();
  EXPECT_TRUE(std::regex_search(log, std::regex(R"(rpc primserve\.v1\.PositionEncoding/Sinusoidal OK [0-9.]+ ms .*id=trace-42)")))
      << log;
  EXPECT_TRUE(std::regex_search(
      log, std::regex("rpc primserve\\.v1\\.PositionEncoding/Sinusoidal INVALID_ARGUMENT [0-9.]+ ms .*id=" + id +
                      ".*dim: expected an even number")))
      << log;
}

// A server (--compute_threads=1, --drain_seconds=`drain_seconds`) running one long Attend (many
// seconds), sent SIGTERM while the call runs: where the drain tests start.
class DrainingServer {
 public:
  explicit DrainingServer(int drain_seconds)
      : server_(ServerProcess::Start(ServerBinary(),
                                     {"--compute_threads=1", absl::StrCat("--drain_seconds=", drain_seconds)})) {
    if (!server_.ok()) return;
    attention_ = std::make_unique<client::AttentionClient>(Channel(*server_));
    in_flight_ = std::thread([this] { TimeAttend(*attention_, 65536, absl::Seconds(60), &code_); });
    absl::SleepFor(absl::Milliseconds(300));
    signalled_ = absl::Now();
    server_->Signal(SIGTERM);
  }
  ~DrainingServer() {
    server_ = absl::CancelledError("test over");  // Kills a server still running: the call ends.
    if (in_flight_.joinable()) in_flight_.join();
  }
  DrainingServer(const DrainingServer&) = delete;
  DrainingServer& operator=(const DrainingServer&) = delete;

  const absl::Status& start_status() const { return server_.status(); }
  ServerProcess& server() { return *server_; }
  absl::Time signalled() const { return signalled_; }
  // How the in-flight call ended (waits for it).
  absl::StatusCode CallCode() {
    if (in_flight_.joinable()) in_flight_.join();
    return code_;
  }

 private:
  absl::StatusOr<ServerProcess> server_;
  std::unique_ptr<client::AttentionClient> attention_;
  absl::StatusCode code_ = absl::StatusCode::kOk;
  std::thread in_flight_;
  absl::Time signalled_;
};

TEST(Lifecycle, DrainSecondsBoundsHowLongInFlightCallsMayRun) {
  DrainingServer draining(/*drain_seconds=*/1);
  ASSERT_TRUE(draining.start_status().ok()) << draining.start_status();
  ServerProcess& server = draining.server();
  absl::StatusOr<int> exit_code = server.WaitForExit(absl::Seconds(15));
  const absl::Duration exit_after = absl::Now() - draining.signalled();
  const absl::StatusCode code = draining.CallCode();
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0) << server.Log();
  // The job needs many seconds; after 1 s of drain it is cancelled, then a <= 2 s flush window.
  std::printf("exit %s after SIGTERM; the in-flight call ended with %s\n", absl::FormatDuration(exit_after).c_str(),
              absl::StatusCodeToString(code).c_str());
  EXPECT_LT(exit_after, absl::Seconds(6));
  EXPECT_NE(code, absl::StatusCode::kOk);
  EXPECT_THAT(server.Log(), HasSubstr("grace period over: cancelling 1 unfinished call(s)"));
  // The call's log line blames the drain, not the caller.
  EXPECT_TRUE(std::regex_search(server.Log(),
                                std::regex(R"(rpc primserve\.v1\.Attention/Attend CANCELLED .*: the server shut down: )"
                                           R"(its drain period \(--drain_seconds\) ended)")))
      << server.Log();
  EXPECT_THAT(server.Log(), Not(HasSubstr("cancelled by the caller")));
}

// An operator's second Ctrl-C (or SIGTERM) during a long drain stops the process at once.
TEST(Lifecycle, ASecondSignalDuringTheDrainStopsAtOnce) {
  for (int second : {SIGTERM, SIGINT}) {
    DrainingServer draining(/*drain_seconds=*/60);
    ASSERT_TRUE(draining.start_status().ok()) << draining.start_status();
    ServerProcess& server = draining.server();
    absl::SleepFor(absl::Milliseconds(500));
    const absl::Time signalled = absl::Now();
    server.Signal(second);
    absl::StatusOr<int> exit_code = server.WaitForExit(absl::Seconds(20));
    const absl::Duration exit_after = absl::Now() - signalled;
    const absl::StatusCode code = draining.CallCode();
    ASSERT_TRUE(exit_code.ok()) << exit_code.status() << server.Log();
    std::printf("second signal %d: exit %d after %s\n", second, *exit_code, absl::FormatDuration(exit_after).c_str());
    EXPECT_EQ(*exit_code, 128 + second) << server.Log();
    EXPECT_LT(exit_after, absl::Seconds(5));  // Not the 60 s drain nor the ~10 s job.
    EXPECT_NE(code, absl::StatusCode::kOk);
    EXPECT_THAT(server.Log(), HasSubstr("received a second signal"));
  }
}

client::Tensor Ramp(std::vector<int64_t> shape) {
  client::Tensor t{std::move(shape), {}};
  int64_t n = 1;
  for (int64_t e : t.shape) n *= e;
  t.values.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t.values[static_cast<size_t>(i)] = static_cast<float>((i * 7919) % 1000) / 1000.0f - 0.5f;
  return t;
}

// Echo and ApplyRope reuse their request and response messages across calls: calls of
// alternating sizes must each get exactly their own answer (no stale bytes, no stale shape), and
// a refused call must not spoil the pool.
TEST(PooledMessages, CallsOfEverySizeGetTheirOwnAnswer) {
  absl::StatusOr<ServerProcess> server = ServerProcess::Start(ServerBinary(), {"--max_message_bytes=4194304"});
  ASSERT_TRUE(server.ok()) << server.status();
  client::ChannelOptions options;
  options.address = server->address();
  options.max_message_bytes = 16 << 20;  // The server's limit is the one under test.
  std::shared_ptr<grpc::Channel> channel = client::CreateChannel(options);
  client::DiagnosticsClient diagnostics(channel);
  client::PositionEncodingClient rope(channel);
  v1::ApplyRopeRequest inverse;
  inverse.set_inverse(true);
  const std::vector<std::vector<int64_t>> shapes = {{2, 3, 1000, 64}, {1, 1, 3, 4}, {5, 1, 129, 8}, {1, 1, 1, 2}, {2, 3, 1000, 64}};
  for (const std::vector<int64_t>& shape : shapes) {
    const client::Tensor input = Ramp(shape);
    absl::StatusOr<client::Tensor> echoed = diagnostics.Echo(input);
    ASSERT_TRUE(echoed.ok()) << echoed.status();
    EXPECT_EQ(echoed->shape, input.shape);
    EXPECT_EQ(echoed->values, input.values);
    absl::StatusOr<client::Tensor> rotated = rope.ApplyRope(input);
    ASSERT_TRUE(rotated.ok()) << rotated.status();
    ASSERT_EQ(rotated->shape, input.shape);
    absl::StatusOr<client::Tensor> back = rope.ApplyRope(*rotated, inverse);
    ASSERT_TRUE(back.ok()) << back.status();
    ASSERT_EQ(back->values.size(), input.values.size());
    for (size_t i = 0; i < input.values.size(); ++i) {
      ASSERT_NEAR(back->values[i], input.values[i], 1e-5) << "element " << i << " of a tensor of " << input.values.size();
    }
  }
  // Above the server's 4 MiB message limit: refused by gRPC before the handler, as for every method.
  const client::Tensor too_big = Ramp({1, 1, 20000, 64});  // 5.1 MB
  EXPECT_EQ(diagnostics.Echo(too_big).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(rope.ApplyRope(too_big).status().code(), absl::StatusCode::kResourceExhausted);
  const client::Tensor small = Ramp({1, 1, 3, 4});
  absl::StatusOr<client::Tensor> after = diagnostics.Echo(small);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->values, small.values);
}

}  // namespace
}  // namespace primserve
