// Discriminator end to end over real gRPC, through the C++ client library: health and
// reflection name the service, the MATH.md section 8 goldens (GN 8/13 with ||grad f_hat|| =
// 25/169, GraN 1.59999999936), bad inputs with their codes, Register then restart then Score by
// name bit-identical, Models List / Get of a discriminator, hinge D - wasserstein D = 2,
// FAILED_PRECONDITION for a logistic model's name, and compute_precision BF16 (close to F32,
// UNIMPLEMENTED without native bf16; an unknown value INVALID_ARGUMENT).
#include <signal.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "primserve/client/channel.h"
#include "primserve/client/discriminator.h"
#include "primserve/client/health.h"
#include "primserve/client/logistic_regression.h"
#include "primserve/client/models.h"
#include "tests/e2e/reflection_client.h"
#include "tests/e2e/server_process.h"

namespace primserve {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::ServerBinary;
using testing::ServerProcess;
using HealthStatus = grpc::health::v1::HealthCheckResponse;

std::shared_ptr<grpc::Channel> Channel(const std::string& address) {
  client::ChannelOptions options;
  options.address = address;
  return client::CreateChannel(options);
}

absl::StatusOr<ServerProcess> StartServer(std::vector<std::string> args = {}) {
  return ServerProcess::Start(ServerBinary(), args);
}

void Stop(ServerProcess& server) {
  server.Signal(SIGTERM);
  absl::StatusOr<int> code = server.WaitForExit(absl::Seconds(30));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

bool BitEqual(const client::Tensor& a, const client::Tensor& b) {
  return a.shape == b.shape && a.values.size() == b.values.size() &&
         std::memcmp(a.values.data(), b.values.data(), a.values.size() * sizeof(float)) == 0;
}

double Norm(const std::vector<float>& values) {
  double sum = 0;
  for (float v : values) sum += static_cast<double>(v) * v;
  return std::sqrt(sum);
}

// The server runs on this machine: oneDNN has native bf16 kernels where the CPU has the
// avx512_bf16 instructions (with AVX-512 core, which every such CPU has).
bool CpuHasAvx512Bf16() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) == 0) return line.find(" avx512_bf16") != std::string::npos;
  }
  return false;
}

double RelativeDifference(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> diff(a.size());
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) diff[i] = a[i] - b[i];
  return Norm(diff) / Norm(b);
}

// MATH.md section 8: f(x) = w.x + b, w = [3, 4], b = 1.
v1::Network LinearNetwork() {
  v1::Network network;
  network.add_input_shape(2);
  *network.add_layers() = client::MakeDense({{1, 2}, {3, 4}}, {{1}, {1}});
  return network;
}

client::Tensor Random(std::vector<int64_t> shape, std::mt19937* rng, float scale = 1.0f) {
  client::Tensor t;
  int64_t count = 1;
  for (int64_t extent : shape) count *= extent;
  t.shape = std::move(shape);
  std::normal_distribution<float> normal(0.0f, scale);
  for (int64_t i = 0; i < count; ++i) t.values.push_back(normal(*rng));
  return t;
}

// conv 3->8 (4x4, stride 2, padding 1) -> LeakyReLU(0.2) -> conv 8->16 (4x4, s2, p1) -> ELU ->
// flatten -> dense 16*2*2 -> 1, on [3, 8, 8] inputs.
v1::Network SmallDcgan(std::mt19937* rng) {
  v1::Network network;
  for (int64_t extent : {3, 8, 8}) network.add_input_shape(extent);
  *network.add_layers() = client::MakeConv2d(Random({8, 3, 4, 4}, rng, 0.2f), Random({8}, rng, 0.1f), 2, 1);
  *network.add_layers() = client::MakeActivation(v1::ACTIVATION_KIND_LEAKY_RELU, 0.2);
  *network.add_layers() = client::MakeConv2d(Random({16, 8, 4, 4}, rng, 0.1f), Random({16}, rng, 0.1f), 2, 1);
  *network.add_layers() = client::MakeActivation(v1::ACTIVATION_KIND_ELU);
  *network.add_layers() = client::MakeFlatten();
  *network.add_layers() = client::MakeDense(Random({1, 64}, rng, 0.2f), Random({1}, rng, 0.1f));
  return network;
}

TEST(DiscriminatorE2E, HealthAndReflectionNameTheService) {
  absl::StatusOr<ServerProcess> server = StartServer();
  ASSERT_TRUE(server.ok()) << server.status();
  client::HealthClient health(Channel(server->address()));
  absl::StatusOr<client::ServingStatus> status = health.Check("primserve.v1.Discriminator");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, HealthStatus::SERVING);
  absl::StatusOr<std::vector<std::string>> names = testing::ListedServices(Channel(server->address()));
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_THAT(*names, Contains("primserve.v1.Discriminator"));
}

TEST(DiscriminatorE2E, ReflectionDescribesHealthAndTheServices) {
  // grpcurl and Postman resolve a method through FileContainingSymbol. The health service was
  // listed but not described ("Symbol not found"): its generated descriptor was not linked in.
  absl::StatusOr<ServerProcess> server = StartServer();
  ASSERT_TRUE(server.ok()) << server.status();
  for (const char* symbol : {"grpc.health.v1.Health", "primserve.v1.Attention", "primserve.v1.Discriminator"}) {
    EXPECT_TRUE(testing::DescribesSymbol(Channel(server->address()), symbol).ok()) << symbol;
  }
  EXPECT_EQ(testing::DescribesSymbol(Channel(server->address()), "no.such.Service").code(),
            absl::StatusCode::kNotFound);
}

TEST(DiscriminatorE2E, MathGoldensOverTheWire) {
  absl::StatusOr<ServerProcess> server = StartServer();
  ASSERT_TRUE(server.ok()) << server.status();
  client::DiscriminatorClient d(Channel(server->address()));
  absl::StatusOr<v1::RegisterResponse> registered = d.Register("linear", LinearNetwork());
  ASSERT_TRUE(registered.ok()) << registered.status();
  EXPECT_TRUE(registered->piecewise_linear());
  const client::Tensor x{{1, 2}, {1, 1}};

  client::DiscriminatorScoreOptions options;
  options.return_input_gradient = true;
  for (bool by_name : {true, false}) {
    SCOPED_TRACE(by_name ? "by name" : "inline");
    absl::StatusOr<client::DiscriminatorScores> gn =
        by_name ? d.Score(x, "linear", options) : d.Score(x, LinearNetwork(), options);
    ASSERT_TRUE(gn.ok()) << gn.status();
    EXPECT_THAT(gn->raw_scores.values, ElementsAre(8.0f));
    EXPECT_THAT(gn->gradient_norms.values, ElementsAre(5.0f));
    EXPECT_NEAR(gn->scores.values[0], 0.6153846154, 1e-7);  // 8/13
    ASSERT_TRUE(gn->input_gradients.has_value());
    EXPECT_THAT(gn->input_gradients->shape, ElementsAre(1, 2));
    EXPECT_NEAR(Norm(gn->input_gradients->values), 0.1479289941, 1e-7);  // 25/169
  }
  options.normalization = v1::NORMALIZATION_GRAN;
  options.epsilon = 1e-8;
  absl::StatusOr<client::DiscriminatorScores> gran = d.Score(x, "linear", options);
  ASSERT_TRUE(gran.ok()) << gran.status();
  EXPECT_NEAR(gran->scores.values[0], 1.59999999936, 2e-7);

  // Bad inputs keep their codes over the wire.
  options.epsilon = 0.0;
  absl::Status status = d.Score(x, "linear", options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("epsilon"));
  EXPECT_EQ(d.Score(x, "nope").status().code(), absl::StatusCode::kNotFound);
  status = d.Score({{1, 3}, {1, 1, 1}}, "linear").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("inputs.shape"));
  v1::Network bad = LinearNetwork();
  *bad.add_layers() = client::MakeActivation(v1::ACTIVATION_KIND_UNSPECIFIED);
  status = d.Register("bad", bad).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("network.layers[1]"));
}

TEST(DiscriminatorE2E, RegisterRestartScoreByNameIsIdentical) {
  std::mt19937 rng(5);
  const v1::Network network = SmallDcgan(&rng);
  const client::Tensor inputs = Random({5, 3, 8, 8}, &rng);
  client::DiscriminatorScoreOptions options;
  options.return_input_gradient = true;
  absl::StatusOr<ServerProcess> first = StartServer();
  ASSERT_TRUE(first.ok()) << first.status();
  client::DiscriminatorScores before;
  {
    client::DiscriminatorClient d(Channel(first->address()));
    absl::StatusOr<v1::RegisterResponse> registered = d.Register("dcgan.small", network);
    ASSERT_TRUE(registered.ok()) << registered.status();
    EXPECT_FALSE(registered->piecewise_linear());  // ELU
    absl::StatusOr<client::DiscriminatorScores> s = d.Score(inputs, "dcgan.small", options);
    ASSERT_TRUE(s.ok()) << s.status();
    before = *s;
    for (float v : before.scores.values) EXPECT_LE(std::abs(v), 1.0f);
  }
  Stop(*first);
  EXPECT_TRUE(fs::exists(fs::path(first->model_dir()) / "dcgan.small.model"));

  absl::StatusOr<ServerProcess> second = StartServer({absl::StrCat("--model_dir=", first->model_dir())});
  ASSERT_TRUE(second.ok()) << second.status();
  client::ModelsClient models(Channel(second->address()));
  absl::StatusOr<v1::ListResponse> list = models.List(v1::MODEL_KIND_DISCRIMINATOR);
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->models_size(), 1);
  EXPECT_EQ(list->models(0).name(), "dcgan.small");
  EXPECT_THAT(list->models(0).input_shape(), ElementsAre(3, 8, 8));
  absl::StatusOr<v1::GetResponse> got = models.Get("dcgan.small");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->discriminator().layers_size(), 6);

  client::DiscriminatorClient d(Channel(second->address()));
  absl::StatusOr<client::DiscriminatorScores> after = d.Score(inputs, "dcgan.small", options);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(BitEqual(after->raw_scores, before.raw_scores));
  EXPECT_TRUE(BitEqual(after->gradient_norms, before.gradient_norms));
  EXPECT_TRUE(BitEqual(after->scores, before.scores));
  ASSERT_TRUE(after->input_gradients.has_value() && before.input_gradients.has_value());
  EXPECT_TRUE(BitEqual(*after->input_gradients, *before.input_gradients));
  // The same network inline scores the same.
  absl::StatusOr<client::DiscriminatorScores> inline_scores = d.Score(inputs, network, options);
  ASSERT_TRUE(inline_scores.ok()) << inline_scores.status();
  EXPECT_TRUE(BitEqual(inline_scores->scores, before.scores));

  ASSERT_TRUE(models.Delete("dcgan.small").ok());
  EXPECT_EQ(d.Score(inputs, "dcgan.small").status().code(), absl::StatusCode::kNotFound);
}

TEST(DiscriminatorE2E, HingeMinusWassersteinIsTwoOnGradientNorm) {
  absl::StatusOr<ServerProcess> server = StartServer();
  ASSERT_TRUE(server.ok()) << server.status();
  client::DiscriminatorClient d(Channel(server->address()));
  std::mt19937 rng(9);
  ASSERT_TRUE(d.Register("dcgan", SmallDcgan(&rng)).ok());
  const client::Tensor real = Random({6, 3, 8, 8}, &rng);
  const client::Tensor fake = Random({4, 3, 8, 8}, &rng, 2.0f);
  absl::StatusOr<client::DiscriminatorLosses> hinge = d.Losses(real, fake, "dcgan", v1::LOSS_HINGE);
  absl::StatusOr<client::DiscriminatorLosses> wasserstein = d.Losses(real, fake, "dcgan", v1::LOSS_WASSERSTEIN);
  absl::StatusOr<client::DiscriminatorLosses> bce = d.Losses(real, fake, "dcgan", v1::LOSS_BCE);
  ASSERT_TRUE(hinge.ok()) << hinge.status();
  ASSERT_TRUE(wasserstein.ok()) << wasserstein.status();
  ASSERT_TRUE(bce.ok()) << bce.status();
  EXPECT_NEAR(hinge->discriminator - wasserstein->discriminator, 2.0, 1e-12);
  EXPECT_DOUBLE_EQ(hinge->generator, wasserstein->generator);
  EXPECT_GT(bce->discriminator, 0.0);
  EXPECT_EQ(d.Losses(real, fake, "missing").status().code(), absl::StatusCode::kNotFound);
  // A stored model of another kind is FAILED_PRECONDITION.
  client::LogisticRegressionClient logistic(Channel(server->address()));
  v1::FitRequest fit;
  fit.set_model_name("logistic");
  ASSERT_TRUE(logistic.Fit({{4, 1}, {0, 1, 2, 3}}, {0, 0, 1, 1}, fit).ok());
  const absl::Status status = d.Losses(real, fake, "logistic").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_EQ(d.Score(real, "logistic").status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(DiscriminatorE2E, Bf16ComputePrecisionOverTheWire) {
  absl::StatusOr<ServerProcess> server = StartServer();
  ASSERT_TRUE(server.ok()) << server.status();
  client::DiscriminatorClient d(Channel(server->address()));
  std::mt19937 rng(31);
  ASSERT_TRUE(d.Register("dcgan", SmallDcgan(&rng)).ok());
  const client::Tensor inputs = Random({11, 3, 8, 8}, &rng);
  client::DiscriminatorScoreOptions options;
  options.return_input_gradient = true;
  options.compute_precision = v1::COMPUTE_PRECISION_F32;
  absl::StatusOr<client::DiscriminatorScores> f32 = d.Score(inputs, "dcgan", options);
  ASSERT_TRUE(f32.ok()) << f32.status();
  options.compute_precision = v1::COMPUTE_PRECISION_BF16;
  absl::StatusOr<client::DiscriminatorScores> bf16 = d.Score(inputs, "dcgan", options);
  if (CpuHasAvx512Bf16()) {
    ASSERT_TRUE(bf16.ok()) << bf16.status();
    // The bounds of core/discriminator.h (bfloat16 products: ~1e-2 on f, ~5e-2 on gradients).
    EXPECT_LT(RelativeDifference(bf16->raw_scores.values, f32->raw_scores.values), 4e-2);
    EXPECT_LT(RelativeDifference(bf16->scores.values, f32->scores.values), 4e-2);
    EXPECT_LT(RelativeDifference(bf16->gradient_norms.values, f32->gradient_norms.values), 4e-2);
    ASSERT_TRUE(bf16->input_gradients.has_value());
    EXPECT_LT(RelativeDifference(bf16->input_gradients->values, f32->input_gradients->values), 8e-2);
    EXPECT_GT(RelativeDifference(bf16->raw_scores.values, f32->raw_scores.values), 0.0) << "BF16 ran as F32";
  } else {
    EXPECT_EQ(bf16.status().code(), absl::StatusCode::kUnimplemented) << bf16.status();
  }
  // An unknown enum value is INVALID_ARGUMENT naming the field.
  v1::ScoreRequest request;
  request.set_model_name("dcgan");
  *request.mutable_inputs() = client::ToProto(inputs);
  request.set_compute_precision(static_cast<v1::ComputePrecision>(5));
  const absl::Status status = d.Score(request).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("compute_precision"));
}

}  // namespace
}  // namespace primserve
