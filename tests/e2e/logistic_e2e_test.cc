// LogisticRegression and Models end to end over real gRPC, through the C++ client library:
// persistence across a restart (Predict by name bit-identical), a truncated model file that does
// not stop the server, path-traversal names, FitStream == Fit, FitFromStatistics over three
// shards == Fit, and the sharded client fit across three local servers == a single Fit.
#include <signal.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "primserve/client/channel.h"
#include "primserve/client/health.h"
#include "primserve/client/logistic_regression.h"
#include "primserve/client/models.h"
#include "server/crc32c.h"
#include "server/model_store.h"  // kHeaderBytes only.
#include "tests/e2e/reflection_client.h"
#include "tests/e2e/server_process.h"
#include "tests/server/model_dir_files.h"

namespace primserve {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using testing::ServerBinary;
using testing::ServerProcess;
using HealthStatus = grpc::health::v1::HealthCheckResponse;

std::shared_ptr<grpc::Channel> Channel(const std::string& address) {
  client::ChannelOptions options;
  options.address = address;
  return client::CreateChannel(options);
}

// N samples of K Gaussian classes in d dimensions, offset from the origin.
struct Data {
  client::Tensor features;
  std::vector<int64_t> labels;
};

Data Gaussians(int64_t n, int64_t d, int64_t k, uint32_t seed) {
  Data data;
  data.features.shape = {n, d};
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> means(static_cast<size_t>(k * d));
  for (float& m : means) m = 1.5f * normal(rng);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t label = (i * 7) % k;
    data.labels.push_back(label);
    for (int64_t j = 0; j < d; ++j) data.features.values.push_back(means[label * d + j] + normal(rng) + 10.0f);
  }
  return data;
}

double MaxAbsDiff(const client::Tensor& a, const client::Tensor& b) {
  EXPECT_EQ(a.shape, b.shape);
  if (a.values.size() != b.values.size()) return 1e9;
  double worst = 0;
  for (size_t i = 0; i < a.values.size(); ++i) worst = std::max(worst, std::abs(double{a.values[i]} - b.values[i]));
  return worst;
}

bool BitEqual(const client::Tensor& a, const client::Tensor& b) {
  return a.shape == b.shape && a.values.size() == b.values.size() &&
         std::memcmp(a.values.data(), b.values.data(), a.values.size() * sizeof(float)) == 0;
}

absl::StatusOr<ServerProcess> StartServer(std::vector<std::string> args = {}) {
  return ServerProcess::Start(ServerBinary(), args);
}

// Stops `server` with SIGTERM and expects exit status 0.
void Stop(ServerProcess& server) {
  server.Signal(SIGTERM);
  absl::StatusOr<int> code = server.WaitForExit(absl::Seconds(30));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

std::vector<std::string> ModelNames(client::ModelsClient& models) {
  absl::StatusOr<v1::ListResponse> list = models.List();
  EXPECT_TRUE(list.ok()) << list.status();
  std::vector<std::string> names;
  if (list.ok()) {
    for (const v1::ModelInfo& info : list->models()) names.push_back(info.name());
  }
  return names;
}

TEST(LogisticE2E, HealthAndReflectionNameTheNewServices) {
  absl::StatusOr<ServerProcess> server = StartServer();
  ASSERT_TRUE(server.ok()) << server.status();
  client::HealthClient health(Channel(server->address()));
  for (const char* service : {"primserve.v1.LogisticRegression", "primserve.v1.Models"}) {
    SCOPED_TRACE(service);
    absl::StatusOr<client::ServingStatus> status = health.Check(service);
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_EQ(*status, HealthStatus::SERVING);
  }
  absl::StatusOr<std::vector<std::string>> names = testing::ListedServices(Channel(server->address()));
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_THAT(*names, Contains("primserve.v1.LogisticRegression"));
  EXPECT_THAT(*names, Contains("primserve.v1.Models"));
}

TEST(LogisticE2E, GoldenAndBadInputsOverTheWire) {
  absl::StatusOr<ServerProcess> server = StartServer();
  ASSERT_TRUE(server.ok()) << server.status();
  client::LogisticRegressionClient logistic(Channel(server->address()));
  const client::Tensor x{{6, 2}, {1, 2, 2, 0.5f, 0, 1, 3, 3, 2.5f, 1, 1.5f, 2.5f}};
  const std::vector<int64_t> y = {0, 0, 0, 1, 1, 1};
  absl::StatusOr<client::FitResult> fit = logistic.Fit(x, y);
  ASSERT_TRUE(fit.ok()) << fit.status();
  absl::StatusOr<client::PredictResult> p = logistic.Predict(client::Tensor{{1, 2}, {2, 2}}, fit->model);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_NEAR(p->probabilities.values[1], 0.8393651028, 2e-6);  // MATH.md section 5.
  EXPECT_EQ(p->labels, std::vector<int64_t>{1});
  EXPECT_EQ(fit->report.samples(), 6);

  client::Tensor nan = x;
  nan.values[3] = std::nanf("");
  EXPECT_EQ(logistic.Fit(nan, y).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(logistic.Fit(x, {0, 0, 0, 1, 1, 5}, [] {
                         v1::FitRequest r;
                         r.set_num_classes(2);
                         return r;
                       }()).status().code(),
            absl::StatusCode::kInvalidArgument);
  const absl::Status singular = logistic.Fit(client::Tensor{{4, 2}, {1, 3, 2, 3, 3, 3, 4, 3}}, {0, 1, 0, 1}).status();
  EXPECT_EQ(singular.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(singular.message()), HasSubstr("ridge"));
  EXPECT_EQ(logistic.Predict(x, "no_such_model").status().code(), absl::StatusCode::kNotFound);
}

TEST(LogisticE2E, AStoredModelSurvivesARestartAndPredictsIdentically) {
  const Data data = Gaussians(600, 9, 4, 1);
  const client::Tensor probe{{5, 9}, std::vector<float>(data.features.values.begin(), data.features.values.begin() + 45)};
  absl::StatusOr<ServerProcess> first = StartServer();
  ASSERT_TRUE(first.ok()) << first.status();
  client::PredictResult before;
  {
    client::LogisticRegressionClient logistic(Channel(first->address()));
    v1::FitRequest options;
    options.set_model_name("gauss-4.v1");
    ASSERT_TRUE(logistic.Fit(data.features, data.labels, options).ok());
    absl::StatusOr<client::PredictResult> p = logistic.Predict(probe, "gauss-4.v1");
    ASSERT_TRUE(p.ok()) << p.status();
    before = *p;
  }
  Stop(*first);
  EXPECT_TRUE(fs::exists(fs::path(first->model_dir()) / "gauss-4.v1.model"));

  absl::StatusOr<ServerProcess> second = StartServer({absl::StrCat("--model_dir=", first->model_dir())});
  ASSERT_TRUE(second.ok()) << second.status();
  client::ModelsClient models(Channel(second->address()));
  EXPECT_EQ(ModelNames(models), std::vector<std::string>{"gauss-4.v1"});
  absl::StatusOr<v1::GetResponse> got = models.Get("gauss-4.v1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->info().kind(), v1::MODEL_KIND_LOGISTIC);
  EXPECT_EQ(got->info().num_classes(), 4);
  EXPECT_EQ(got->info().num_features(), 9);
  client::LogisticRegressionClient logistic(Channel(second->address()));
  absl::StatusOr<client::PredictResult> after = logistic.Predict(probe, "gauss-4.v1");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(BitEqual(after->probabilities, before.probabilities));
  EXPECT_EQ(after->labels, before.labels);

  ASSERT_TRUE(models.Delete("gauss-4.v1").ok());
  EXPECT_EQ(logistic.Predict(probe, "gauss-4.v1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(fs::path(first->model_dir()) / "gauss-4.v1.model"));
}

// Two replicas on one model directory (the Kubernetes ReadWriteMany volume): a model fitted
// through one is served by the other at once, a refit is seen, and a delete too.
TEST(LogisticE2E, ReplicasSharingAModelDirectoryServeEachOthersModelsLive) {
  const Data data = Gaussians(600, 9, 4, 1);
  const client::Tensor probe{{5, 9}, std::vector<float>(data.features.values.begin(), data.features.values.begin() + 45)};
  absl::StatusOr<ServerProcess> a = StartServer();
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<ServerProcess> b = StartServer({absl::StrCat("--model_dir=", a->model_dir())});
  ASSERT_TRUE(b.ok()) << b.status();
  client::LogisticRegressionClient on_a(Channel(a->address()));
  client::LogisticRegressionClient on_b(Channel(b->address()));
  v1::FitRequest options;
  options.set_model_name("shared");
  ASSERT_TRUE(on_a.Fit(data.features, data.labels, options).ok());
  absl::StatusOr<client::PredictResult> from_a = on_a.Predict(probe, "shared");
  absl::StatusOr<client::PredictResult> from_b = on_b.Predict(probe, "shared");
  ASSERT_TRUE(from_a.ok()) << from_a.status();
  ASSERT_TRUE(from_b.ok()) << from_b.status();
  EXPECT_TRUE(BitEqual(from_b->probabilities, from_a->probabilities));

  const Data other = Gaussians(600, 9, 4, 2);  // Refit through B: A serves the new model.
  ASSERT_TRUE(on_b.Fit(other.features, other.labels, options).ok());
  absl::StatusOr<client::PredictResult> refit_b = on_b.Predict(probe, "shared");
  absl::StatusOr<client::PredictResult> refit_a = on_a.Predict(probe, "shared");
  ASSERT_TRUE(refit_a.ok() && refit_b.ok());
  EXPECT_TRUE(BitEqual(refit_a->probabilities, refit_b->probabilities));
  EXPECT_FALSE(BitEqual(refit_a->probabilities, from_a->probabilities));

  client::ModelsClient models_b(Channel(b->address()));
  ASSERT_TRUE(models_b.Delete("shared").ok());
  EXPECT_EQ(on_a.Predict(probe, "shared").status().code(), absl::StatusCode::kNotFound);
  client::ModelsClient models_a(Channel(a->address()));
  EXPECT_EQ(ModelNames(models_a), std::vector<std::string>{});
}

// Models.List of `server` shows the model "good" and one unreadable file, `file`, whose reason
// matches `reason`.
void ExpectGoodAndOneUnreadable(const ServerProcess& server, const std::string& file,
                                const ::testing::Matcher<std::string>& reason) {
  client::ModelsClient models(Channel(server.address()));
  absl::StatusOr<v1::ListResponse> list = models.List();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->models_size(), 1);
  EXPECT_EQ(list->models(0).name(), "good");
  ASSERT_EQ(list->unreadable_size(), 1);
  EXPECT_EQ(list->unreadable(0).file(), file);
  EXPECT_THAT(list->unreadable(0).reason(), reason);
}

TEST(LogisticE2E, ATruncatedModelFileDoesNotStopTheServer) {
  const Data data = Gaussians(200, 3, 2, 2);
  absl::StatusOr<ServerProcess> first = StartServer();
  ASSERT_TRUE(first.ok()) << first.status();
  {
    client::LogisticRegressionClient logistic(Channel(first->address()));
    for (const char* name : {"good", "broken"}) {
      v1::FitRequest options;
      options.set_model_name(name);
      ASSERT_TRUE(logistic.Fit(data.features, data.labels, options).ok());
    }
  }
  Stop(*first);
  const fs::path broken = fs::path(first->model_dir()) / "broken.model";
  fs::resize_file(broken, fs::file_size(broken) / 2);

  absl::StatusOr<ServerProcess> second = StartServer({absl::StrCat("--model_dir=", first->model_dir())});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_THAT(second->Log(), HasSubstr("skipping"));
  EXPECT_THAT(second->Log(), HasSubstr("broken.model"));
  ExpectGoodAndOneUnreadable(*second, "broken.model", HasSubstr("truncated"));
  client::LogisticRegressionClient logistic(Channel(second->address()));
  EXPECT_TRUE(logistic.Predict(data.features, "good").ok());
  const absl::Status unloadable = logistic.Predict(data.features, "broken").status();
  EXPECT_EQ(unloadable.code(), absl::StatusCode::kFailedPrecondition);  // Present, but cannot be loaded.
  EXPECT_THAT(std::string(unloadable.message()), HasSubstr("\"broken.model\" cannot be loaded"));
  // A new fit under the broken name replaces the file.
  v1::FitRequest options;
  options.set_model_name("broken");
  ASSERT_TRUE(logistic.Fit(data.features, data.labels, options).ok());
  EXPECT_TRUE(logistic.Predict(data.features, "broken").ok());
}

// A file with a sound header and checksum whose model Predict would refuse (4 biases for 3
// classes: written by hand or by another build) is listed as unreadable with the reason, not as a
// healthy model, and Predict by its name says the same.
TEST(LogisticE2E, AModelFileWithAValidChecksumButAnInvalidModelIsListedUnreadable) {
  const Data data = Gaussians(200, 3, 3, 4);
  absl::StatusOr<ServerProcess> first = StartServer();
  ASSERT_TRUE(first.ok()) << first.status();
  {
    client::LogisticRegressionClient logistic(Channel(first->address()));
    v1::FitRequest options;
    options.set_model_name("good");
    ASSERT_TRUE(logistic.Fit(data.features, data.labels, options).ok());
  }
  Stop(*first);
  const fs::path dir(first->model_dir());
  std::ifstream in(dir / "good.model", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), ModelStore::kHeaderBytes);
  v1::StoredModel stored_model;
  ASSERT_TRUE(stored_model.ParseFromString(bytes.substr(ModelStore::kHeaderBytes)));
  v1::StoredModel* stored = &stored_model;
  v1::Tensor* bias = stored->mutable_logistic()->mutable_bias();
  ASSERT_EQ(bias->shape_size(), 1);
  ASSERT_EQ(bias->shape(0), 3);
  ASSERT_EQ(bias->data().size(), 3 * sizeof(float));
  bias->set_shape(0, 4);  // A well-formed tensor of 4 biases for 3 classes.
  bias->mutable_data()->append(sizeof(float), '\0');
  // Re-encoded by hand (the server library is not linked here: its reflection protos would clash
  // with the test's): the header's payload size (bytes 16-23, little-endian) and CRC-32C of
  // header[0, 24) + payload (bytes 24-27) updated.
  const std::string payload = stored->SerializeAsString();
  std::string header = bytes.substr(0, ModelStore::kHeaderBytes);
  const uint64_t payload_bytes = payload.size();
  std::memcpy(header.data() + 16, &payload_bytes, sizeof payload_bytes);
  const uint32_t crc = Crc32cExtend(Crc32c(absl::string_view(header).substr(0, 24)), payload);
  std::memcpy(header.data() + 24, &crc, sizeof crc);
  std::ofstream(dir / "skewed.model", std::ios::binary) << header << payload;

  absl::StatusOr<ServerProcess> second = StartServer({absl::StrCat("--model_dir=", first->model_dir())});
  ASSERT_TRUE(second.ok()) << second.status();
  ExpectGoodAndOneUnreadable(*second, "skewed.model", AllOf(HasSubstr("invalid model"), HasSubstr("bias")));
  EXPECT_EQ(client::ModelsClient(Channel(second->address())).Get("skewed").status().code(),
            absl::StatusCode::kFailedPrecondition);
  client::LogisticRegressionClient logistic(Channel(second->address()));
  EXPECT_TRUE(logistic.Predict(data.features, "good").ok());
  const absl::Status refused = logistic.Predict(data.features, "skewed").status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.message()), AllOf(HasSubstr("skewed.model"), HasSubstr("bias")));
}

TEST(LogisticE2E, PathTraversalNamesAreRejected) {
  absl::StatusOr<ServerProcess> server = StartServer();
  ASSERT_TRUE(server.ok()) << server.status();
  const Data data = Gaussians(50, 2, 2, 3);
  client::LogisticRegressionClient logistic(Channel(server->address()));
  client::ModelsClient models(Channel(server->address()));
  const std::vector<std::string> names = {"../x", "..", "a/b", "/tmp/x", std::string(129, 'n')};
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    v1::FitRequest options;
    options.set_model_name(name);
    const absl::Status fit = logistic.Fit(data.features, data.labels, options).status();
    EXPECT_EQ(fit.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(fit.message()), HasSubstr("model_name"));
    EXPECT_EQ(logistic.FitStream(data.features, data.labels, 10, options).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(logistic.Predict(data.features, name).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(models.Get(name).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(models.Delete(name).code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_THAT(ModelDirFiles(server->model_dir()), ::testing::IsEmpty());
  EXPECT_FALSE(fs::exists(fs::path(server->model_dir()) / ".." / "x.model"));
}

TEST(LogisticE2E, FitStreamAndFitFromThreeShardsEqualFit) {
  absl::StatusOr<ServerProcess> server = StartServer();
  ASSERT_TRUE(server.ok()) << server.status();
  const Data data = Gaussians(3001, 13, 5, 4);
  client::LogisticRegressionClient logistic(Channel(server->address()));
  absl::StatusOr<client::FitResult> fit = logistic.Fit(data.features, data.labels);
  ASSERT_TRUE(fit.ok()) << fit.status();
  absl::StatusOr<client::PredictResult> expected = logistic.Predict(data.features, fit->model);
  ASSERT_TRUE(expected.ok());

  for (const int64_t rows_per_chunk : {1, 97, 1000, 5000}) {
    SCOPED_TRACE(rows_per_chunk);
    absl::StatusOr<client::FitResult> streamed = logistic.FitStream(data.features, data.labels, rows_per_chunk);
    ASSERT_TRUE(streamed.ok()) << streamed.status();
    EXPECT_EQ(streamed->report.samples(), 3001);
    absl::StatusOr<client::PredictResult> p = logistic.Predict(data.features, streamed->model);
    ASSERT_TRUE(p.ok());
    EXPECT_LT(MaxAbsDiff(p->probabilities, expected->probabilities), 1e-5);
    EXPECT_EQ(p->labels, expected->labels);
  }

  std::vector<v1::Statistics> shards;
  const int64_t bounds[] = {0, 1000, 1700, 3001};
  for (int s = 0; s < 3; ++s) {
    client::Tensor part{{bounds[s + 1] - bounds[s], 13},
                        std::vector<float>(data.features.values.begin() + bounds[s] * 13,
                                           data.features.values.begin() + bounds[s + 1] * 13)};
    std::vector<int64_t> labels(data.labels.begin() + bounds[s], data.labels.begin() + bounds[s + 1]);
    absl::StatusOr<v1::Statistics> statistics = logistic.ComputeStatistics(part, labels);
    ASSERT_TRUE(statistics.ok()) << statistics.status();
    shards.push_back(*statistics);
  }
  absl::StatusOr<client::FitResult> merged = logistic.FitFromStatistics(shards);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->report.samples(), 3001);
  absl::StatusOr<client::PredictResult> p = logistic.Predict(data.features, merged->model);
  ASSERT_TRUE(p.ok());
  EXPECT_LT(MaxAbsDiff(p->probabilities, expected->probabilities), 1e-5);
  EXPECT_EQ(p->labels, expected->labels);
}

TEST(LogisticE2E, AStreamWithMismatchedChunkWidthsStoresNothing) {
  absl::StatusOr<ServerProcess> server = StartServer();
  ASSERT_TRUE(server.ok()) << server.status();
  client::LogisticRegressionClient logistic(Channel(server->address()));
  int sent = 0;
  v1::FitRequest options;
  options.set_model_name("never");
  const absl::Status status =
      logistic
          .FitStream(
              [&](client::FitChunk* chunk) {
                if (sent == 3) return false;
                const int64_t width = sent == 2 ? 4 : 3;  // The third chunk is wider.
                chunk->features = client::Tensor{{4, width}, std::vector<float>(4 * width, 1.0f + sent)};
                chunk->labels = {0, 1, 0, 1};
                ++sent;
                return true;
              },
              options)
          .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("features.shape"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("FitStream message 3"));
  client::ModelsClient models(Channel(server->address()));
  EXPECT_TRUE(ModelNames(models).empty());
  EXPECT_THAT(ModelDirFiles(server->model_dir()), ::testing::IsEmpty());
}

// A client that cancels mid-stream gets CANCELLED, and the server neither fits nor stores the
// part that arrived.
TEST(LogisticE2E, ACancelledStreamStoresNothing) {
  absl::StatusOr<ServerProcess> server = StartServer();
  ASSERT_TRUE(server.ok()) << server.status();
  const Data data = Gaussians(400, 3, 2, 6);
  auto stub = v1::LogisticRegression::NewStub(Channel(server->address()));
  grpc::ClientContext context;
  v1::FitResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::FitRequest>> writer = stub->FitStream(&context, &response);
  for (int part = 0; part < 2; ++part) {
    v1::FitRequest message;
    if (part == 0) message.set_model_name("partial");
    const int64_t begin = part * 200;
    message.mutable_features()->add_shape(200);
    message.mutable_features()->add_shape(3);
    message.mutable_features()->set_data(std::string(
        reinterpret_cast<const char*>(data.features.values.data() + begin * 3), 200 * 3 * sizeof(float)));
    message.mutable_labels()->Add(data.labels.begin() + begin, data.labels.begin() + begin + 200);
    ASSERT_TRUE(writer->Write(message));
  }
  absl::SleepFor(absl::Milliseconds(200));  // Both messages are processed; the stream stays open.
  context.TryCancel();
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::CANCELLED);
  absl::SleepFor(absl::Milliseconds(300));  // Let the server's handler see the end of the stream.
  client::ModelsClient models(Channel(server->address()));
  EXPECT_TRUE(ModelNames(models).empty());
  EXPECT_THAT(ModelDirFiles(server->model_dir()), ::testing::IsEmpty());
}

// Three servers behind one round_robin channel: the shards' ComputeStatistics calls are spread
// over all of them (each server logs the shards it computed), and the merged fit equals a single
// Fit on one server.
TEST(LogisticE2E, ShardedFitAcrossThreeServersEqualsASingleFit) {
  std::vector<ServerProcess> servers;
  std::vector<std::string> addresses;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<ServerProcess> server = StartServer({"--log_level=debug"});
    ASSERT_TRUE(server.ok()) << server.status();
    addresses.push_back(server->address());
    servers.push_back(std::move(*server));
  }
  const Data data = Gaussians(6000, 11, 3, 5);
  client::LogisticRegressionClient single(Channel(addresses[0]));
  absl::StatusOr<client::FitResult> fit = single.Fit(data.features, data.labels);
  ASSERT_TRUE(fit.ok()) << fit.status();

  const std::shared_ptr<grpc::Channel> balanced = Channel(absl::StrCat("ipv4:", absl::StrJoin(addresses, ",")));
  ASSERT_TRUE(balanced->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(10))));
  // round_robin only uses READY subchannels: send tiny ComputeStatistics calls until every
  // replica has answered one (bounded), so the sharded fit below meets all three.
  auto computed = [&](int i) {
    const std::string log = servers[static_cast<size_t>(i)].Log();
    int count = 0;
    for (size_t at = log.find("ComputeStatistics: "); at != std::string::npos;
         at = log.find("ComputeStatistics: ", at + 1)) {
      ++count;
    }
    return count;
  };
  client::LogisticRegressionClient warm(balanced);
  const Data tiny = Gaussians(30, 12, 3, 5);
  const absl::Time warm_deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < warm_deadline && (computed(0) == 0 || computed(1) == 0 || computed(2) == 0)) {
    ASSERT_TRUE(warm.ComputeStatistics(tiny.features, tiny.labels).ok());
    absl::SleepFor(absl::Milliseconds(20));
  }
  int before[3];
  for (int i = 0; i < 3; ++i) before[i] = computed(i);
  client::LogisticRegressionClient sharded(balanced);
  v1::FitFromStatisticsRequest options;
  options.set_model_name("sharded");
  absl::StatusOr<client::FitResult> merged = sharded.FitSharded(data.features, data.labels, 6, options);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->report.samples(), 6000);

  absl::StatusOr<client::PredictResult> expected = single.Predict(data.features, fit->model);
  absl::StatusOr<client::PredictResult> got = single.Predict(data.features, merged->model);
  ASSERT_TRUE(expected.ok() && got.ok());
  EXPECT_LT(MaxAbsDiff(got->probabilities, expected->probabilities), 1e-5);
  EXPECT_EQ(got->labels, expected->labels);

  int shards_seen = 0;
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(addresses[static_cast<size_t>(i)]);
    const int count = computed(i) - before[i];
    EXPECT_GE(count, 1) << "server " << i << " computed no shard";
    shards_seen += count;
  }
  EXPECT_EQ(shards_seen, 6);
  // The fit itself ran on one replica, which stored the model there.
  int stored = 0;
  for (const ServerProcess& server : servers) stored += fs::exists(fs::path(server.model_dir()) / "sharded.model");
  EXPECT_EQ(stored, 1);
}

}  // namespace
}  // namespace primserve
