// The Toolkit service end to end over real gRPC: primserve-server as a child process, called
// through the C++ client library. Goldens, bit-identity with the core (and across server thread
// counts), the article's ChildTuning example, and bad inputs with the server staying healthy.
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "core/parallel.h"
#include "core/toolkit.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "primserve/client/channel.h"
#include "primserve/client/health.h"
#include "primserve/client/toolkit.h"
#include "tests/e2e/reflection_client.h"
#include "tests/e2e/server_channel.h"
#include "tests/e2e/server_process.h"

namespace primserve {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using testing::ServerBinary;
using testing::ServerProcess;

using testing::Channel;

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class ToolkitE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<ServerProcess> server = ServerProcess::Start(ServerBinary(), {"--compute_threads=2"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_.emplace(std::move(*server));
  }
  std::optional<ServerProcess> server_;
};

TEST_F(ToolkitE2ETest, HealthAndReflectionKnowTheService) {
  client::HealthClient health(Channel(*server_));
  absl::StatusOr<client::ServingStatus> status = health.Check("primserve.v1.Toolkit");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, grpc::health::v1::HealthCheckResponse::SERVING);

  absl::StatusOr<std::vector<std::string>> names = testing::ListedServices(Channel(*server_));
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_THAT(*names, Contains("primserve.v1.Toolkit"));
}

TEST_F(ToolkitE2ETest, EmbeddingDimensionGoldens) {
  // MATH.md section 4, given to 4 decimals.
  client::ToolkitClient toolkit(Channel(*server_));
  const struct {
    int64_t vocab_size;
    double bound;
    int64_t dimension;
  } rows[] = {{100000, 95.9027, 96}, {512, 51.9652, 52}, {5000000, 128.4898, 129}};
  for (const auto& row : rows) {
    absl::StatusOr<v1::EmbeddingDimensionResponse> r = toolkit.EmbeddingDimension(row.vocab_size);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_NEAR(r->bound(), row.bound, 5e-5);
    EXPECT_EQ(r->dimension(), row.dimension);
  }
  absl::StatusOr<v1::EmbeddingDimensionResponse> bad = toolkit.EmbeddingDimension(1);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("vocab_size"));
}

TEST_F(ToolkitE2ETest, InitializeParametersIsTheCoresBytesForAnyThreadCount) {
  // 1.5M elements (92 blocks): the server fills them on 2 threads, the core here on 1; a second
  // server on 1 thread must agree too. The same seed again gives the same bytes; another seed
  // does not.
  const std::vector<int64_t> shape = {96, 128, 11, 11};
  v1::InitializeParametersRequest request;
  request.set_distribution(v1::INIT_DISTRIBUTION_TRUNCATED_NORMAL);
  request.set_scheme(v1::INIT_SCHEME_HE);
  request.set_seed(20210801);
  client::ToolkitClient toolkit(Channel(*server_));
  absl::StatusOr<client::InitializeResult> remote = toolkit.InitializeParameters(shape, request);
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_EQ(remote->parameters.shape, shape);
  EXPECT_EQ(remote->fan_in, 128 * 121);
  EXPECT_EQ(remote->fan_out, 96 * 121);
  EXPECT_DOUBLE_EQ(remote->stddev, std::sqrt(2.0 / (128 * 121)));

  SetComputeThreads(1);
  InitOptions options;
  options.shape = shape;
  options.distribution = InitDistribution::kTruncatedNormal;
  options.scheme = InitScheme::kHe;
  options.seed = 20210801;
  absl::StatusOr<InitResult> local = InitializeParameters(options);
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_TRUE(BitEqual(remote->parameters.values, local->parameters.values));

  absl::StatusOr<client::InitializeResult> again = toolkit.InitializeParameters(shape, request);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(BitEqual(again->parameters.values, remote->parameters.values));

  absl::StatusOr<ServerProcess> single = ServerProcess::Start(ServerBinary(), {"--compute_threads=1"});
  ASSERT_TRUE(single.ok()) << single.status();
  absl::StatusOr<client::InitializeResult> one_thread =
      client::ToolkitClient(Channel(*single)).InitializeParameters(shape, request);
  ASSERT_TRUE(one_thread.ok()) << one_thread.status();
  EXPECT_TRUE(BitEqual(one_thread->parameters.values, remote->parameters.values));

  request.set_seed(20210802);
  absl::StatusOr<client::InitializeResult> other = toolkit.InitializeParameters(shape, request);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(BitEqual(other->parameters.values, remote->parameters.values));
}

TEST_F(ToolkitE2ETest, ChildTuningArticleExampleAndTheCoresMask) {
  client::ToolkitClient toolkit(Channel(*server_));
  // MATH.md section 9: g = [-4, -6], p = 0.5, M = [1, 0] -> [-8, 0] (Fisher [2, 1] picks M).
  v1::ChildTuningMaskRequest driven;
  driven.set_mode(v1::CHILD_TUNING_MODE_TASK_DRIVEN);
  *driven.mutable_fisher() = client::ToProto(client::Tensor{{2}, {2, 1}});
  driven.set_keep_probability(0.5);
  driven.set_rescale(true);
  absl::StatusOr<client::ChildTuningResult> example = toolkit.ChildTuningMask(client::Tensor{{2}, {-4, -6}}, driven);
  ASSERT_TRUE(example.ok()) << example.status();
  EXPECT_EQ(example->gradient.values, (std::vector<float>{-8, 0}));
  EXPECT_EQ(example->kept_fraction, 0.5);

  // TASK_FREE over 300k elements: the server's mask (2 threads) is the core's (1 thread).
  client::Tensor gradient{{300, 1000}, std::vector<float>(300000)};
  for (size_t i = 0; i < gradient.values.size(); ++i) gradient.values[i] = 0.25f + static_cast<float>(i % 13);
  v1::ChildTuningMaskRequest free;
  free.set_keep_probability(0.3);
  free.set_rescale(true);
  free.set_seed(8764);
  absl::StatusOr<client::ChildTuningResult> remote = toolkit.ChildTuningMask(gradient, free);
  ASSERT_TRUE(remote.ok()) << remote.status();
  SetComputeThreads(1);
  ChildTuningOptions options;
  options.keep_probability = 0.3;
  options.rescale = true;
  options.seed = 8764;
  absl::StatusOr<ChildTuningResult> local = ChildTuningMask(Tensor{gradient.shape, gradient.values}, options);
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_TRUE(BitEqual(remote->gradient.values, local->gradient.values));
  EXPECT_EQ(remote->kept_fraction, local->kept_fraction);
  EXPECT_NEAR(remote->kept_fraction, 0.3, 0.003);  // 1% of p; the standard error is 0.08%.
}

TEST_F(ToolkitE2ETest, BadInputsGetPreciseStatusesAndTheServerStaysHealthy) {
  client::ToolkitClient toolkit(Channel(*server_));
  // 25M elements > 16M (a quarter of the 64 MiB message cap): refused before allocating.
  absl::StatusOr<client::InitializeResult> huge = toolkit.InitializeParameters({5000, 5000});
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted) << huge.status();
  EXPECT_THAT(std::string(huge.status().message()), HasSubstr("shape"));
  absl::StatusOr<client::InitializeResult> zero = toolkit.InitializeParameters({4, 0});
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(zero.status().message()), HasSubstr("shape[1]: expected an extent >= 1, got 0"));
  v1::InitializeParametersRequest stddev;
  stddev.set_scheme(v1::INIT_SCHEME_STDDEV);
  absl::StatusOr<client::InitializeResult> no_stddev = toolkit.InitializeParameters({4, 4}, stddev);
  EXPECT_EQ(no_stddev.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_stddev.status().message()), HasSubstr("stddev"));

  v1::ChildTuningMaskRequest driven;
  driven.set_mode(v1::CHILD_TUNING_MODE_TASK_DRIVEN);
  driven.set_keep_probability(0.5);
  *driven.mutable_fisher() = client::ToProto(client::Tensor{{2}, {std::nanf(""), 1}});
  absl::StatusOr<client::ChildTuningResult> nan = toolkit.ChildTuningMask(client::Tensor{{2}, {1, 2}}, driven);
  EXPECT_EQ(nan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(nan.status().message()), HasSubstr("fisher[0]"));
  *driven.mutable_fisher() = client::ToProto(client::Tensor{{3}, {1, 2, 3}});
  absl::StatusOr<client::ChildTuningResult> shape = toolkit.ChildTuningMask(client::Tensor{{2}, {1, 2}}, driven);
  EXPECT_EQ(shape.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(shape.status().message()), HasSubstr("fisher.shape"));
  v1::ChildTuningMaskRequest free;
  free.set_keep_probability(1.5);
  absl::StatusOr<client::ChildTuningResult> p = toolkit.ChildTuningMask(client::Tensor{{2}, {1, 2}}, free);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("keep_probability"));

  client::HealthClient health(Channel(*server_));
  absl::StatusOr<client::ServingStatus> status = health.Check();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(*status, grpc::health::v1::HealthCheckResponse::SERVING);
}

}  // namespace
}  // namespace primserve
