// Fault tests: clients that go away mid-stream and mid-call, a model directory that is full or
// read-only, and SIGKILL during model writes. The server must stay healthy, report precise
// errors, leave nothing half-written and, after a crash, serve the old or the new model, never
// a corrupt one.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "primserve/client/attention.h"
#include "primserve/client/channel.h"
#include "primserve/client/discriminator.h"
#include "primserve/client/health.h"
#include "primserve/client/logistic_regression.h"
#include "primserve/client/models.h"
#include "primserve/client/position_encoding.h"
#include "primserve/v1/logistic_regression.grpc.pb.h"
#include "tests/e2e/metrics_scrape.h"
#include "tests/e2e/server_channel.h"
#include "tests/e2e/server_process.h"
#include "tests/server/model_dir_files.h"

namespace primserve {
namespace {

using ::testing::HasSubstr;
using client::Tensor;
using testing::FreePort;
using testing::HttpGet;
using testing::Sample;
using testing::ServerBinary;
using testing::ServerProcess;

using testing::Channel;

Tensor Features(int64_t n, int64_t d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  Tensor x{{n, d}, std::vector<float>(static_cast<size_t>(n * d))};
  for (float& v : x.values) v = normal(rng);
  return x;
}

std::vector<int64_t> Labels(int64_t n, int64_t k) {
  std::vector<int64_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[static_cast<size_t>(i)] = i % k;
  return y;
}

// A logistic fit stored under `name` (d features, k classes: a model file of about 4 d k bytes).
absl::Status FitAndStore(client::LogisticRegressionClient& logistic, const std::string& name, int64_t d,
                         int64_t k) {
  v1::FitRequest options;
  options.set_model_name(name);
  options.set_ridge(0.5);
  return logistic.Fit(Features(4 * k, d, 3), Labels(4 * k, k), options).status();
}

// An executable shell script of `lines` that starts the server ($PRIMSERVE_REAL_SERVER).
std::string Wrapper(const std::string& name, const std::string& lines) {
  setenv("PRIMSERVE_REAL_SERVER", ServerBinary().c_str(), 1);
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << "#!/bin/sh\n" << lines << "\n";
  chmod(path.c_str(), 0755);
  return path;
}

TEST(Faults, ClientsThatDisconnectMidStreamOrMidCallLeaveNothingBehind) {
  const int metrics_port = FreePort();
  absl::StatusOr<ServerProcess> server = ServerProcess::Start(
      ServerBinary(), {"--compute_workers=1", absl::StrCat("--metrics_address=127.0.0.1:", metrics_port)});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::LogisticRegression::NewStub(Channel(*server));
  for (int round = 0; round < 5; ++round) {
    // A stream that sends two chunks of a fit to be stored, then goes away without WritesDone.
    grpc::ClientContext context;
    v1::FitResponse response;
    std::unique_ptr<grpc::ClientWriter<v1::FitRequest>> writer = stub->FitStream(&context, &response);
    v1::FitRequest chunk;
    chunk.set_model_name("never-stored");
    const Tensor x = Features(500, 8, round);
    chunk.mutable_features()->add_shape(500);
    chunk.mutable_features()->add_shape(8);
    chunk.mutable_features()->set_data(std::string(reinterpret_cast<const char*>(x.values.data()), x.values.size() * 4));
    for (int64_t label : Labels(500, 3)) chunk.add_labels(label);
    ASSERT_TRUE(writer->Write(chunk));
    chunk.clear_model_name();
    ASSERT_TRUE(writer->Write(chunk));
    context.TryCancel();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  // A long attention call whose client cancels after 200 ms.
  client::AttentionClient attention(Channel(*server));
  for (int round = 0; round < 3; ++round) {
    std::thread canceller;
    grpc::ClientContext context;
    v1::AttendRequest request;
    for (v1::Tensor* t : {request.mutable_query(), request.mutable_key(), request.mutable_value()}) {
      for (int64_t extent : {1, 1, 65536, 1}) t->add_shape(extent);
      t->set_data(std::string(65536 * 4, '\0'));
    }
    auto attention_stub = v1::Attention::NewStub(Channel(*server));
    canceller = std::thread([&] {
      absl::SleepFor(absl::Milliseconds(200));
      context.TryCancel();
    });
    v1::AttendResponse response;
    const absl::Time start = absl::Now();
    EXPECT_EQ(attention_stub->Attend(&context, request, &response).error_code(), grpc::StatusCode::CANCELLED);
    canceller.join();
    EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  }
  // The worker is free at once, nothing is stored, nothing is in flight, the server is healthy.
  client::PositionEncodingClient rope(Channel(*server));
  const absl::Time start = absl::Now();
  ASSERT_TRUE(rope.Sinusoidal(16, 64).ok());
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  absl::SleepFor(absl::Milliseconds(300));
  const std::string metrics = HttpGet(metrics_port, "/metrics");
  EXPECT_EQ(Sample(metrics, "primserve_in_flight_requests"), 0);
  EXPECT_EQ(Sample(metrics, "primserve_compute_running"), 0);
  EXPECT_EQ(Sample(metrics, testing::RequestsSeries("LogisticRegression/FitStream", "CANCELLED")), 5);
  EXPECT_EQ(Sample(metrics, testing::RequestsSeries("Attention/Attend", "CANCELLED")), 3);
  EXPECT_THAT(ModelDirFiles(server->model_dir()), ::testing::IsEmpty());
  client::HealthClient health(Channel(*server));
  EXPECT_EQ(*health.Check(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST(Faults, AFullModelDirectoryFailsTheWriteCleanlyAndKeepsServing) {
  // RLIMIT_FSIZE (ulimit -f, 512-byte blocks) makes writes past 64 KiB fail with EFBIG, as a
  // full disk would; the server ignores SIGXFSZ, so the write fails instead of killing it.
  const std::string wrapper =
      Wrapper("fsize-limited-server.sh", "ulimit -f 128\nexec \"$PRIMSERVE_REAL_SERVER\" \"$@\"");
  absl::StatusOr<ServerProcess> server = ServerProcess::Start(wrapper, {});
  ASSERT_TRUE(server.ok()) << server.status();
  client::LogisticRegressionClient logistic(Channel(*server));
  ASSERT_TRUE(FitAndStore(logistic, "small", 8, 3).ok());  // ~100 bytes of weights.
  const absl::Status big = FitAndStore(logistic, "big", 400, 60);  // ~96 KiB of weights.
  EXPECT_EQ(big.code(), absl::StatusCode::kResourceExhausted) << big;
  EXPECT_THAT(std::string(big.message()), HasSubstr("full"));
  // Nothing half-written: only the small model's file is there.
  EXPECT_EQ(ModelDirFiles(server->model_dir()).size(), 1u) << ::testing::PrintToString(ModelDirFiles(server->model_dir()));
  // The stored model is still served, and small writes still succeed.
  client::LogisticRegressionClient again(Channel(*server));
  EXPECT_TRUE(again.Predict(Features(2, 8, 5), "small").ok());
  EXPECT_EQ(client::ModelsClient(Channel(*server)).Get("big").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(FitAndStore(logistic, "small2", 8, 3).ok());
  std::printf("full directory: %s\n", std::string(big.message()).c_str());
}

TEST(Faults, AReadOnlyModelDirectoryFailsWritesAndServesWhatItHas) {
  // Store a model, then restart the server on the same directory made read-only. Root ignores
  // permissions, so as root the server runs as nobody (setpriv, util-linux).
  absl::StatusOr<ServerProcess> first = ServerProcess::Start(ServerBinary(), {});
  ASSERT_TRUE(first.ok()) << first.status();
  {
    client::LogisticRegressionClient logistic(Channel(*first));
    ASSERT_TRUE(FitAndStore(logistic, "kept", 8, 3).ok());
  }
  first->Signal(SIGTERM);
  ASSERT_TRUE(first->WaitForExit(absl::Seconds(20)).ok());
  const std::string models = first->model_dir();
  const std::string parent = std::filesystem::path(models).parent_path();
  ASSERT_EQ(chmod(parent.c_str(), 0755), 0);
  for (const std::string& file : ModelDirFiles(models)) chmod((models + "/" + file).c_str(), 0444);
  ASSERT_EQ(chmod(models.c_str(), 0555), 0);
  std::string binary = ServerBinary();
  if (geteuid() == 0) {
    if (system("command -v setpriv >/dev/null 2>&1") != 0) GTEST_SKIP() << "running as root without setpriv";
    binary = Wrapper("unprivileged-server.sh",
                     "exec setpriv --reuid=65534 --regid=65534 --clear-groups \"$PRIMSERVE_REAL_SERVER\" \"$@\"");
  }
  absl::StatusOr<ServerProcess> server = ServerProcess::Start(binary, {"--model_dir=" + models});
  ASSERT_TRUE(server.ok()) << server.status();
  client::LogisticRegressionClient logistic(Channel(*server));
  const absl::Status write = FitAndStore(logistic, "new", 8, 3);
  EXPECT_EQ(write.code(), absl::StatusCode::kFailedPrecondition) << write;
  EXPECT_THAT(std::string(write.message()), HasSubstr("not writable"));
  EXPECT_EQ(client::ModelsClient(Channel(*server)).Delete("kept").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(logistic.Predict(Features(2, 8, 5), "kept").ok());
  EXPECT_EQ(ModelDirFiles(models).size(), 1u);
  chmod(models.c_str(), 0755);
  std::printf("read-only directory: %s\n", std::string(write.message()).c_str());
}

TEST(Faults, SigkillDuringModelWritesNeverLeavesACorruptModel) {
  // Two versions of a 16 MiB discriminator that score differently; each round starts writing
  // one over the other and kills the server at a random moment, then restarts on the same
  // directory: the model must load and be exactly one of the two versions.
  auto network = [](float bias) {
    v1::Network net;
    net.add_input_shape(16384);
    *net.add_layers() = client::MakeDense(Tensor{{256, 16384}, std::vector<float>(256 * 16384, 1e-4f)},
                                          Tensor{{256}, std::vector<float>(256, 0.0f)});
    *net.add_layers() = client::MakeDense(Tensor{{1, 256}, std::vector<float>(256, 1.0f)}, Tensor{{1}, {bias}});
    return net;
  };
  const v1::Network versions[2] = {network(0.0f), network(100.0f)};
  const Tensor input{{1, 16384}, std::vector<float>(16384, 1.0f)};
  client::DiscriminatorScoreOptions raw;
  raw.normalization = v1::NORMALIZATION_NONE;

  absl::StatusOr<ServerProcess> first = ServerProcess::Start(ServerBinary(), {});
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string models = first->model_dir();  // Lives as long as `first`.
  ServerProcess* server = &*first;  // The running one; restarts go to `restarts`.
  std::optional<ServerProcess> restarts;
  double expected[2];
  {
    client::DiscriminatorClient d(Channel(*server));
    for (int v = 0; v < 2; ++v) {
      absl::StatusOr<client::DiscriminatorScores> s = d.Score(input, versions[v], raw);
      ASSERT_TRUE(s.ok()) << s.status();
      expected[v] = s->scores.values[0];
    }
    ASSERT_TRUE(d.Register("big", versions[0]).ok());
  }
  std::mt19937 rng(5);
  int old_version = 0, new_version = 0;
  constexpr int kRounds = 6;
  for (int round = 0; round < kRounds; ++round) {
    std::thread writer([&, round] {
      client::DiscriminatorClient d(Channel(*server));
      client::CallOptions call;
      call.timeout = absl::Seconds(10);
      (void)d.Register("big", versions[(round + 1) % 2], call);
    });
    // Kill while the file is being written: once its temporary file exists, after 0-300 ms (about what the write and its fsync take).
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    bool writing = false;
    while (!writing && absl::Now() < give_up) {
      for (const std::string& file : ModelDirFiles(models)) writing = writing || absl::EndsWith(file, ".tmp");
      if (!writing) absl::SleepFor(absl::Microseconds(200));
    }
    EXPECT_TRUE(writing) << "round " << round << ": the write never started";
    absl::SleepFor(absl::Milliseconds(std::uniform_int_distribution<int>(0, 300)(rng)));
    server->Signal(SIGKILL);
    (void)server->WaitForExit(absl::Seconds(10));
    writer.join();
    std::vector<std::string> args = {"--model_dir=" + models};
    absl::StatusOr<ServerProcess> restarted = ServerProcess::Start(ServerBinary(), args);
    ASSERT_TRUE(restarted.ok()) << restarted.status();
    restarts.reset();
    restarts.emplace(std::move(*restarted));
    server = &*restarts;
    EXPECT_THAT(server->Log(), ::testing::Not(HasSubstr("unreadable"))) << server->Log();
    client::DiscriminatorClient d(Channel(*server));
    absl::StatusOr<client::DiscriminatorScores> s = d.Score(input, "big", raw);
    ASSERT_TRUE(s.ok()) << "round " << round << ": " << s.status() << "\n" << server->Log();
    const double got = s->scores.values[0];
    const bool is_old = got == expected[round % 2];
    const bool is_new = got == expected[(round + 1) % 2];
    EXPECT_TRUE(is_old || is_new) << "round " << round << ": score " << got;
    old_version += is_old;
    new_version += is_new;
    // No temporary file survives a restart.
    for (const std::string& file : ModelDirFiles(models)) EXPECT_FALSE(absl::EndsWith(file, ".tmp")) << file;
    // Continue from whichever version is stored now.
    if (is_old) {
      ASSERT_TRUE(d.Register("big", versions[(round + 1) % 2]).ok());
    }
  }
  std::printf("SIGKILL during writes: %d rounds, old version served %d times, new %d times, never corrupt\n", kRounds,
              old_version, new_version);
}

}  // namespace
}  // namespace primserve
