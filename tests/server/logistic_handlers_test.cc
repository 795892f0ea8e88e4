// The LogisticRegression and Models handlers without a network: the MATH.md golden through the
// wire types, the bad-input table (code, field, and nothing stored for every row), FitStream on
// several chunkings equal to Fit, FitFromStatistics over shards equal to Fit, Predict by name
// and inline, size caps before allocation, and List / Get / Delete.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/logistic_handlers.h"
#include "server/models_handlers.h"
#include "server/tensor_conversion.h"
#include "tests/server/model_dir_files.h"

namespace primserve {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

v1::Tensor Wire(Shape shape, std::vector<float> values) {
  Tensor t;
  t.shape = std::move(shape);
  t.values = std::move(values);
  v1::Tensor proto;
  TensorToProto(t, &proto);
  return proto;
}

Tensor FromWire(const v1::Tensor& proto) {
  absl::StatusOr<Tensor> t = TensorFromProto(proto, "response", kDefaultMaxElements);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : Tensor();
}

// N samples of K Gaussian classes in d dimensions with distinct means (well conditioned).
struct Data {
  int64_t n = 0, d = 0;
  std::vector<float> x;
  std::vector<int64_t> y;
  v1::Tensor Rows(int64_t begin, int64_t end) const {
    return Wire({end - begin, d}, std::vector<float>(x.begin() + begin * d, x.begin() + end * d));
  }
};

Data Gaussians(int64_t n, int64_t d, int64_t k, uint32_t seed) {
  Data data;
  data.n = n;
  data.d = d;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> means(static_cast<size_t>(k * d));
  for (float& m : means) m = 2.0f * normal(rng);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t label = i % k;
    data.y.push_back(label);
    for (int64_t j = 0; j < d; ++j) data.x.push_back(means[label * d + j] + normal(rng) + 3.0f);
  }
  return data;
}

// The binary pooled golden of MATH.md section 5.
v1::FitRequest GoldenRequest() {
  v1::FitRequest request;
  *request.mutable_features() = Wire({6, 2}, {1, 2, 2, 0.5f, 0, 1, 3, 3, 2.5f, 1, 1.5f, 2.5f});
  for (int64_t label : {0, 0, 0, 1, 1, 1}) request.add_labels(label);
  return request;
}

v1::FitRequest FitOf(const Data& data) {
  v1::FitRequest request;
  *request.mutable_features() = data.Rows(0, data.n);
  request.mutable_labels()->Add(data.y.begin(), data.y.end());
  return request;
}

Tensor Probabilities(const v1::LogisticModel& model, const v1::Tensor& features) {
  v1::PredictRequest request;
  *request.mutable_model() = model;
  *request.mutable_features() = features;
  v1::PredictResponse response;
  const absl::Status status = HandlePredict(Limits(), nullptr, request, &response);
  EXPECT_TRUE(status.ok()) << status;
  return FromWire(response.probabilities());
}

double MaxAbsDiff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape, b.shape);
  double worst = a.values.size() == b.values.size() ? 0.0 : 1e9;
  for (size_t i = 0; i < std::min(a.values.size(), b.values.size()); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(a.values[i]) - b.values[i]));
  }
  return worst;
}

class LogisticHandlersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/primserve-logistic-handlers-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    absl::StatusOr<std::unique_ptr<ModelStore>> store = ModelStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  // No model written: nothing in the directory but, perhaps, the writers' lock file.
  bool DirectoryEmpty() const { return ModelDirFiles(dir_).empty(); }

  // FitStream over `messages`, the first carrying `options`.
  absl::Status Stream(std::vector<v1::FitRequest> messages, v1::FitResponse* response,
                      std::function<bool()> cancelled = nullptr) {
    size_t next = 0;
    return HandleFitStream(
        limits_, store_.get(),
        [&](v1::FitRequest* message) -> absl::StatusOr<bool> {
          if (next == messages.size()) return false;
          *message = messages[next++];
          return true;
        },
        response, std::move(cancelled));
  }

  std::string dir_;
  std::unique_ptr<ModelStore> store_;
  Limits limits_;
};

TEST(LogisticEnums, UnspecifiedMeansTheFirstListedValue) {
  EXPECT_EQ(*CovarianceFromProto(v1::COVARIANCE_UNSPECIFIED, "c"), Covariance::kPooledWithin);
  EXPECT_EQ(*CovarianceFromProto(v1::COVARIANCE_POOLED_WITHIN, "c"), Covariance::kPooledWithin);
  EXPECT_EQ(*CovarianceFromProto(v1::COVARIANCE_TOTAL, "c"), Covariance::kTotal);
  const absl::Status unknown = CovarianceFromProto(static_cast<v1::Covariance>(9), "covariance").status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.message()), HasSubstr("covariance: unknown enum value 9"));
}

TEST_F(LogisticHandlersTest, BinaryPooledGoldenThroughTheWire) {
  v1::FitRequest request = GoldenRequest();
  request.set_model_name("golden");
  v1::FitResponse response;
  ASSERT_TRUE(HandleFit(limits_, store_.get(), request, &response).ok());
  const Tensor weights = FromWire(response.model().weights());
  const Tensor bias = FromWire(response.model().bias());
  ASSERT_EQ(weights.shape, (Shape{2, 2}));  // K rows also for K = 2.
  ASSERT_EQ(bias.shape, (Shape{2}));
  // Weights are defined up to a shared shift: compare the difference of the rows.
  EXPECT_NEAR(weights.values[2] - weights.values[0], 2.8093645485, 2e-5);
  EXPECT_NEAR(weights.values[3] - weights.values[1], 2.1511705686, 2e-5);
  EXPECT_NEAR(bias.values[1] - bias.values[0], -8.2675585284, 5e-5);
  EXPECT_THAT(response.model().priors(), ElementsAre(0.5, 0.5));
  const Tensor p = Probabilities(response.model(), Wire({1, 2}, {2, 2}));
  EXPECT_NEAR(p.values[1], 0.8393651028, 2e-6);
  EXPECT_NEAR(p.values[0] + p.values[1], 1.0, 1e-6);

  const v1::FitReport& report = response.report();
  EXPECT_EQ(report.samples(), 6);
  EXPECT_GE(report.seconds(), 0);
  EXPECT_TRUE(report.converged());
  EXPECT_GT(report.train_accuracy(), 0.5);
  EXPECT_TRUE(std::isfinite(report.log_loss()));

  // Stored, and Predict by name gives the same output bit for bit.
  v1::PredictRequest by_name;
  by_name.set_model_name("golden");
  *by_name.mutable_features() = Wire({1, 2}, {2, 2});
  v1::PredictResponse predicted;
  ASSERT_TRUE(HandlePredict(limits_, store_.get(), by_name, &predicted).ok());
  EXPECT_EQ(FromWire(predicted.probabilities()).values, p.values);
  EXPECT_THAT(predicted.labels(), ElementsAre(1));
}

TEST_F(LogisticHandlersTest, TotalCovarianceAndMaximumLikelihoodRun) {
  const Data data = Gaussians(300, 3, 3, 5);
  v1::FitRequest request = FitOf(data);
  request.set_covariance(v1::COVARIANCE_TOTAL);
  v1::FitResponse total;
  ASSERT_TRUE(HandleFit(limits_, store_.get(), request, &total).ok());
  EXPECT_EQ(FromWire(total.model().weights()).shape, (Shape{3, 3}));

  request.clear_covariance();
  request.set_solver(v1::SOLVER_MAXIMUM_LIKELIHOOD);
  request.set_l2(1e-3);
  v1::FitResponse ml;
  const absl::Status status = HandleFit(limits_, store_.get(), request, &ml);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_GT(ml.report().iterations(), 0);
  EXPECT_TRUE(ml.report().converged()) << ml.report().solver_message();
  EXPECT_LE(ml.report().gradient_norm(), 1e-5);
  EXPECT_GT(ml.report().train_accuracy(), 0.8);
}

struct BadFit {
  std::string name;
  std::function<void(v1::FitRequest*)> mutate;
  absl::StatusCode code;
  std::string message;
};

TEST_F(LogisticHandlersTest, BadFitRequestsGetPreciseStatusesAndStoreNothing) {
  const std::vector<BadFit> cases = {
      {"no features", [](v1::FitRequest* r) { r->clear_features(); }, absl::StatusCode::kInvalidArgument,
       "features: required"},
      {"NaN feature", [](v1::FitRequest* r) { *r->mutable_features() = Wire({6, 2}, {1, 2, 2, kNaN, 0, 1, 3, 3, 2.5f, 1, 1.5f, 2.5f}); },
       absl::StatusCode::kInvalidArgument, "features"},
      {"Inf feature", [](v1::FitRequest* r) { *r->mutable_features() = Wire({6, 2}, {1, 2, 2, 1, 0, 1, 3, kInf, 2.5f, 1, 1.5f, 2.5f}); },
       absl::StatusCode::kInvalidArgument, "features"},
      {"label out of range", [](v1::FitRequest* r) { r->set_labels(4, 7); r->set_num_classes(2); },
       absl::StatusCode::kInvalidArgument, "labels[4]"},
      {"negative label", [](v1::FitRequest* r) { r->set_labels(0, -1); }, absl::StatusCode::kInvalidArgument,
       "labels[0]"},
      {"labels shorter than rows", [](v1::FitRequest* r) { r->mutable_labels()->RemoveLast(); },
       absl::StatusCode::kInvalidArgument, "labels"},
      {"rank 1 features", [](v1::FitRequest* r) { *r->mutable_features() = Wire({6}, {1, 2, 3, 4, 5, 6}); },
       absl::StatusCode::kInvalidArgument, "features.shape"},
      {"d = 0", [](v1::FitRequest* r) { *r->mutable_features() = Wire({6, 0}, {}); },
       absl::StatusCode::kInvalidArgument, "features.shape"},
      {"shape and data disagree", [](v1::FitRequest* r) { r->mutable_features()->set_shape(0, 5); },
       absl::StatusCode::kInvalidArgument, "features.data"},
      {"N < K", [](v1::FitRequest* r) { r->set_num_classes(7); }, absl::StatusCode::kInvalidArgument, "labels"},
      {"single class", [](v1::FitRequest* r) { for (int i = 0; i < 6; ++i) r->set_labels(i, 0); },
       absl::StatusCode::kInvalidArgument, "num_classes"},
      {"unknown covariance", [](v1::FitRequest* r) { r->set_covariance(static_cast<v1::Covariance>(5)); },
       absl::StatusCode::kInvalidArgument, "covariance: unknown enum value 5"},
      {"unknown solver", [](v1::FitRequest* r) { r->set_solver(static_cast<v1::Solver>(5)); },
       absl::StatusCode::kInvalidArgument, "solver: unknown enum value 5"},
      {"negative ridge", [](v1::FitRequest* r) { r->set_ridge(-1); }, absl::StatusCode::kInvalidArgument, "ridge"},
      {"l2 with ANALYTIC", [](v1::FitRequest* r) { r->set_l2(0.1); }, absl::StatusCode::kInvalidArgument,
       "l2: applies to SOLVER_MAXIMUM_LIKELIHOOD only"},
      {"ridge with MAXIMUM_LIKELIHOOD",
       [](v1::FitRequest* r) { r->set_solver(v1::SOLVER_MAXIMUM_LIKELIHOOD); r->set_ridge(1); },
       absl::StatusCode::kInvalidArgument, "ridge: applies to SOLVER_ANALYTIC only"},
      {"negative l2", [](v1::FitRequest* r) { r->set_solver(v1::SOLVER_MAXIMUM_LIKELIHOOD); r->set_l2(-1); },
       absl::StatusCode::kInvalidArgument, "l2"},
      {"huge max_iterations",
       [](v1::FitRequest* r) { r->set_solver(v1::SOLVER_MAXIMUM_LIKELIHOOD); r->set_max_iterations(int64_t{1} << 40); },
       absl::StatusCode::kInvalidArgument, "max_iterations"},
      {"max_iterations above the bound on one call's work",
       [](v1::FitRequest* r) { r->set_solver(v1::SOLVER_MAXIMUM_LIKELIHOOD); r->set_max_iterations(10001); },
       absl::StatusCode::kInvalidArgument, "max_iterations: expected a value in [0, 10000] (0 means 500), got 10001"},
      {"path traversal name", [](v1::FitRequest* r) { r->set_model_name("../x"); },
       absl::StatusCode::kInvalidArgument, "model_name: expected a model name"},
      {"slash in name", [](v1::FitRequest* r) { r->set_model_name("a/b"); }, absl::StatusCode::kInvalidArgument,
       "model_name"},
      {"constant feature (singular Sigma)",
       [](v1::FitRequest* r) { *r->mutable_features() = Wire({6, 2}, {1, 5, 2, 5, 0, 5, 3, 5, 2.5f, 5, 1.5f, 5}); },
       absl::StatusCode::kFailedPrecondition, "ridge"},
      {"label of 10^12 with K inferred (before allocating)",
       [](v1::FitRequest* r) { r->set_labels(0, int64_t{1} << 40); }, absl::StatusCode::kResourceExhausted,
       "labels[0] (num_classes inferred as the largest label + 1)"},
  };
  for (const BadFit& c : cases) {
    SCOPED_TRACE(c.name);
    v1::FitRequest request = GoldenRequest();
    request.set_model_name("stored");
    c.mutate(&request);
    v1::FitResponse response;
    const absl::Status status = HandleFit(limits_, store_.get(), request, &response);
    EXPECT_EQ(status.code(), c.code) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.message));
    EXPECT_TRUE(DirectoryEmpty());
  }
  // The same request without the mutation is fine, so every row failed for its own reason.
  v1::FitResponse response;
  EXPECT_TRUE(HandleFit(limits_, store_.get(), GoldenRequest(), &response).ok());
}

TEST_F(LogisticHandlersTest, AWideFitIsRefusedBeforeTheScatterIsAllocated) {
  Limits small = Limits::ForMessageBytes(1 << 20);  // 1 MiB: d = 400 needs 1.28 MB of scatter.
  v1::FitRequest request;
  *request.mutable_features() = Wire({2, 400}, std::vector<float>(800, 1.0f));
  request.add_labels(0);
  request.add_labels(1);
  v1::FitResponse response;
  const absl::Status status = HandleFit(small, store_.get(), request, &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(status.message()), HasSubstr("features.shape: 400 features need a 400 x 400 scatter matrix"));
}

// A huge label with num_classes inferred is named, not the features' shape (a probe's finding).
TEST_F(LogisticHandlersTest, AHugeInferredClassCountNamesTheLabel) {
  v1::FitRequest request;
  *request.mutable_features() = Wire({3, 2}, {1, 2, 3, 4, 5, 6});
  for (int64_t label : {int64_t{0}, int64_t{1} << 40, int64_t{1}}) request.add_labels(label);
  v1::FitResponse response;
  absl::Status status = HandleFit(limits_, store_.get(), request, &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(status.message()), HasSubstr("labels[1] (num_classes inferred as the largest label + 1): "));
  request.set_num_classes(int64_t{1} << 40);
  status = HandleFit(limits_, store_.get(), request, &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(status.message()), HasSubstr("num_classes: "));
}

TEST_F(LogisticHandlersTest, FitStreamOnAnyChunkingEqualsFit) {
  const Data data = Gaussians(1000, 7, 3, 11);
  v1::FitRequest whole = FitOf(data);
  v1::FitResponse fit;
  ASSERT_TRUE(HandleFit(limits_, store_.get(), whole, &fit).ok());
  const v1::Tensor probe = data.Rows(0, 50);
  const Tensor expected = Probabilities(fit.model(), probe);

  const std::vector<std::vector<int64_t>> chunkings = {
      {1000}, {1, 999}, {333, 333, 334}, {0, 500, 0, 500}, {7, 13, 100, 257, 623}};
  for (const std::vector<int64_t>& sizes : chunkings) {
    SCOPED_TRACE(::testing::PrintToString(sizes));
    std::vector<v1::FitRequest> messages;
    int64_t begin = 0;
    for (const int64_t size : sizes) {
      v1::FitRequest message;
      *message.mutable_features() = data.Rows(begin, begin + size);
      message.mutable_labels()->Add(data.y.begin() + begin, data.y.begin() + begin + size);
      messages.push_back(std::move(message));
      begin += size;
    }
    messages.front().set_model_name("streamed");
    v1::FitResponse streamed;
    const absl::Status status = Stream(messages, &streamed);
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_LT(MaxAbsDiff(Probabilities(streamed.model(), probe), expected), 1e-5);
    EXPECT_EQ(streamed.report().samples(), 1000);
    EXPECT_TRUE(std::isnan(streamed.report().train_accuracy()));
    EXPECT_TRUE(std::isnan(streamed.report().log_loss()));
    EXPECT_TRUE(store_->Get("streamed").ok());
  }
  // A first message with options only, then data.
  v1::FitRequest options;
  options.set_num_classes(3);
  options.set_covariance(v1::COVARIANCE_TOTAL);
  v1::FitResponse total_fit, total_streamed;
  whole.set_covariance(v1::COVARIANCE_TOTAL);
  ASSERT_TRUE(HandleFit(limits_, store_.get(), whole, &total_fit).ok());
  v1::FitRequest data_only = FitOf(data);
  ASSERT_TRUE(Stream({options, data_only}, &total_streamed).ok());
  EXPECT_LT(MaxAbsDiff(Probabilities(total_streamed.model(), probe), Probabilities(total_fit.model(), probe)), 1e-5);
}

TEST_F(LogisticHandlersTest, BadStreamsGetPreciseStatusesAndStoreNothing) {
  const Data data = Gaussians(100, 4, 2, 3);
  auto chunk = [&](int64_t begin, int64_t end) {
    v1::FitRequest message;
    *message.mutable_features() = data.Rows(begin, end);
    message.mutable_labels()->Add(data.y.begin() + begin, data.y.begin() + end);
    return message;
  };
  v1::FitRequest first = chunk(0, 50);
  first.set_model_name("never");
  v1::FitRequest narrow = chunk(50, 100);
  *narrow.mutable_features() = Wire({50, 3}, std::vector<float>(150, 1.0f));
  v1::FitRequest late_option = chunk(50, 100);
  late_option.set_ridge(1.0);
  v1::FitRequest ml = first;
  ml.set_solver(v1::SOLVER_MAXIMUM_LIKELIHOOD);
  v1::FitRequest bad_ridge = first;
  bad_ridge.set_ridge(-2);
  v1::FitRequest nan_chunk = chunk(50, 100);
  nan_chunk.mutable_features()->set_data(std::string(50 * 4 * 4, '\xff'));  // NaN bit patterns.
  v1::FitRequest labels_only;
  labels_only.add_labels(1);

  struct Case {
    std::string name;
    std::vector<v1::FitRequest> messages;
    absl::StatusCode code;
    std::vector<std::string> message;
  };
  const std::vector<Case> cases = {
      {"mismatched chunk widths", {first, narrow}, absl::StatusCode::kInvalidArgument,
       {"features.shape", "FitStream message 2"}},
      {"options in a later message", {first, late_option}, absl::StatusCode::kInvalidArgument,
       {"ridge: options go in the first FitStream message only", "message 2"}},
      {"MAXIMUM_LIKELIHOOD", {ml}, absl::StatusCode::kInvalidArgument, {"solver", "not streamed"}},
      {"bad ridge before any data", {bad_ridge}, absl::StatusCode::kInvalidArgument, {"ridge"}},
      {"NaN in chunk 2", {first, nan_chunk}, absl::StatusCode::kInvalidArgument, {"features", "message 2"}},
      {"labels without features", {first, labels_only}, absl::StatusCode::kInvalidArgument,
       {"features: required", "message 2"}},
      {"empty stream", {}, absl::StatusCode::kInvalidArgument, {"empty stream"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::FitResponse response;
    const absl::Status status = Stream(c.messages, &response);
    EXPECT_EQ(status.code(), c.code) << status;
    for (const std::string& part : c.message) EXPECT_THAT(std::string(status.message()), HasSubstr(part));
    EXPECT_TRUE(DirectoryEmpty());
  }
  v1::FitResponse response;
  const absl::Status cancelled = Stream({first, chunk(50, 100)}, &response, [] { return true; });
  EXPECT_EQ(cancelled.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(DirectoryEmpty());
  // A stream that breaks off (the client went away) fails rather than fitting what arrived.
  int reads = 0;
  const absl::Status broken = HandleFitStream(
      limits_, store_.get(),
      [&](v1::FitRequest* message) -> absl::StatusOr<bool> {
        if (reads++ == 1) return absl::CancelledError("gone");
        *message = first;
        return true;
      },
      &response);
  EXPECT_EQ(broken.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(DirectoryEmpty());
  // The good stream works.
  EXPECT_TRUE(Stream({first, chunk(50, 100)}, &response).ok());
  EXPECT_FALSE(DirectoryEmpty());
}

TEST_F(LogisticHandlersTest, FitFromThreeShardsEqualsFit) {
  const Data data = Gaussians(900, 6, 4, 17);
  v1::FitResponse fit;
  ASSERT_TRUE(HandleFit(limits_, store_.get(), FitOf(data), &fit).ok());
  const v1::Tensor probe = data.Rows(0, 40);

  // Shard 0 sees only classes 0 and 1 (K inferred as 2): merging pads it to K = 4.
  std::vector<int64_t> order;
  for (int64_t i = 0; i < data.n; ++i) if (data.y[i] < 2) order.push_back(i);
  for (int64_t i = 0; i < data.n; ++i) if (data.y[i] >= 2) order.push_back(i);
  const int64_t bounds[] = {0, 200, 550, 900};
  v1::FitFromStatisticsRequest request;
  for (int s = 0; s < 3; ++s) {
    v1::ComputeStatisticsRequest shard;
    shard.mutable_features()->add_shape(bounds[s + 1] - bounds[s]);
    shard.mutable_features()->add_shape(data.d);
    std::string bytes;
    for (int64_t r = bounds[s]; r < bounds[s + 1]; ++r) {
      const int64_t i = order[r];
      bytes.append(reinterpret_cast<const char*>(&data.x[i * data.d]), data.d * sizeof(float));
      shard.add_labels(data.y[i]);
    }
    shard.mutable_features()->set_data(bytes);
    v1::ComputeStatisticsResponse statistics;
    ASSERT_TRUE(HandleComputeStatistics(limits_, shard, &statistics).ok());
    EXPECT_EQ(statistics.statistics().dim(), data.d);
    EXPECT_EQ(statistics.statistics().counts_size(), s == 0 ? 2 : 4);
    *request.add_statistics() = statistics.statistics();
  }
  request.set_model_name("sharded");
  v1::FitFromStatisticsResponse merged;
  const absl::Status status = HandleFitFromStatistics(limits_, store_.get(), request, &merged);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_LT(MaxAbsDiff(Probabilities(merged.model(), probe), Probabilities(fit.model(), probe)), 1e-5);
  EXPECT_EQ(merged.report().samples(), 900);
  EXPECT_TRUE(std::isnan(merged.report().train_accuracy()));
  EXPECT_TRUE(store_->Get("sharded").ok());

  // Bad statistics name the shard and the field; nothing is stored.
  ASSERT_TRUE(store_->Delete("sharded").ok());
  v1::FitFromStatisticsRequest bad = request;
  bad.mutable_statistics(1)->mutable_class_sums()->RemoveLast();
  v1::FitFromStatisticsResponse ignored;
  absl::Status error = HandleFitFromStatistics(limits_, store_.get(), bad, &ignored);
  EXPECT_EQ(error.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(error.message()), HasSubstr("statistics[1].class_sums: expected 24 values"));
  bad = request;
  bad.mutable_statistics(2)->set_dim(5);
  error = HandleFitFromStatistics(limits_, store_.get(), bad, &ignored);
  EXPECT_EQ(error.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(error.message()), HasSubstr("statistics[2]"));
  bad = request;
  bad.mutable_statistics(0)->set_scatter(0, std::numeric_limits<double>::quiet_NaN());
  error = HandleFitFromStatistics(limits_, store_.get(), bad, &ignored);
  EXPECT_EQ(error.code(), absl::StatusCode::kInvalidArgument) << error;
  bad = request;
  bad.set_num_classes(3);
  error = HandleFitFromStatistics(limits_, store_.get(), bad, &ignored);
  EXPECT_EQ(error.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(error.message()), HasSubstr("num_classes"));
  bad = request;
  bad.set_num_classes(5);  // A class without samples.
  EXPECT_EQ(HandleFitFromStatistics(limits_, store_.get(), bad, &ignored).code(), absl::StatusCode::kInvalidArgument);
  bad.Clear();
  error = HandleFitFromStatistics(limits_, store_.get(), bad, &ignored);
  EXPECT_THAT(std::string(error.message()), HasSubstr("statistics: expected at least one"));
  EXPECT_TRUE(DirectoryEmpty());
}

TEST_F(LogisticHandlersTest, PredictResponseMustFitOneMessage) {
  // Probabilities M x K plus M varint labels: each was capped alone, and gRPC then refused the
  // response (a probe: K = 4, features [4000000, 1]). Here K = 2, M = 100: 800 + 100 bytes.
  v1::FitResponse fit;
  ASSERT_TRUE(HandleFit(limits_, store_.get(), GoldenRequest(), &fit).ok());
  const int64_t dim = fit.model().weights().shape(1);
  v1::PredictRequest request;
  *request.mutable_model() = fit.model();
  *request.mutable_features() =
      Wire({100, dim}, std::vector<float>(static_cast<size_t>(100 * dim), 0.5f));
  v1::PredictResponse response;
  Limits small = Limits::ForMessageBytes(Limits::kResponseEnvelopeBytes + 899);
  const absl::Status status = HandlePredict(small, nullptr, request, &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("features.shape: 100 rows x 2 classes of probabilities plus 100 labels take 900 bytes"));
  Limits enough = Limits::ForMessageBytes(Limits::kResponseEnvelopeBytes + 900);
  ASSERT_TRUE(HandlePredict(enough, nullptr, request, &response).ok());
  EXPECT_LE(static_cast<int64_t>(response.ByteSizeLong()), Limits::kResponseEnvelopeBytes + 900);
}

TEST_F(LogisticHandlersTest, PredictByNameInlineAndItsErrors) {
  v1::FitRequest request = GoldenRequest();
  request.set_model_name("golden");
  v1::FitResponse fit;
  ASSERT_TRUE(HandleFit(limits_, store_.get(), request, &fit).ok());
  v1::StoredModel discriminator;
  discriminator.set_kind(v1::MODEL_KIND_DISCRIMINATOR);
  ASSERT_TRUE(store_->Put("critic", discriminator).ok());

  auto predict = [&](std::function<void(v1::PredictRequest*)> mutate) {
    v1::PredictRequest r;
    r.set_model_name("golden");
    *r.mutable_features() = Wire({3, 2}, {2, 2, 0, 0, 3, 3});
    mutate(&r);
    v1::PredictResponse response;
    return HandlePredict(limits_, store_.get(), r, &response);
  };
  EXPECT_TRUE(predict([](v1::PredictRequest*) {}).ok());
  struct Case {
    std::string name;
    std::function<void(v1::PredictRequest*)> mutate;
    absl::StatusCode code;
    std::string message;
  };
  v1::LogisticModel bad_bias = fit.model();
  *bad_bias.mutable_bias() = Wire({3}, {0, 0, 0});
  v1::LogisticModel rank1 = fit.model();
  *rank1.mutable_weights() = Wire({4}, {1, 2, 3, 4});
  v1::LogisticModel nan_weights = fit.model();
  *nan_weights.mutable_weights() = Wire({2, 2}, {1, kNaN, 3, 4});
  const std::vector<Case> cases = {
      {"unknown name", [](v1::PredictRequest* r) { r->set_model_name("nope"); }, absl::StatusCode::kNotFound,
       "model_name: no model named \"nope\""},
      {"another kind", [](v1::PredictRequest* r) { r->set_model_name("critic"); },
       absl::StatusCode::kFailedPrecondition, "MODEL_KIND_DISCRIMINATOR"},
      {"traversal name", [](v1::PredictRequest* r) { r->set_model_name("../golden"); },
       absl::StatusCode::kInvalidArgument, "model_name"},
      {"both", [&](v1::PredictRequest* r) { *r->mutable_model() = fit.model(); }, absl::StatusCode::kInvalidArgument,
       "got both"},
      {"neither", [](v1::PredictRequest* r) { r->clear_model_name(); }, absl::StatusCode::kInvalidArgument,
       "got neither"},
      {"no features", [](v1::PredictRequest* r) { r->clear_features(); }, absl::StatusCode::kInvalidArgument,
       "features: required"},
      {"width mismatch", [](v1::PredictRequest* r) { *r->mutable_features() = Wire({1, 3}, {1, 2, 3}); },
       absl::StatusCode::kInvalidArgument, "features.shape"},
      {"NaN features", [](v1::PredictRequest* r) { *r->mutable_features() = Wire({1, 2}, {kNaN, 2}); },
       absl::StatusCode::kInvalidArgument, "features"},
      {"inline bias of the wrong size",
       [&](v1::PredictRequest* r) { r->clear_model_name(); *r->mutable_model() = bad_bias; },
       absl::StatusCode::kInvalidArgument, "model.bias"},
      {"inline rank-1 weights",
       [&](v1::PredictRequest* r) { r->clear_model_name(); *r->mutable_model() = rank1; },
       absl::StatusCode::kInvalidArgument, "model.weights.shape"},
      {"inline NaN weights",
       [&](v1::PredictRequest* r) { r->clear_model_name(); *r->mutable_model() = nan_weights; },
       absl::StatusCode::kInvalidArgument, "model.weights"},
      {"inline without weights",
       [&](v1::PredictRequest* r) { r->clear_model_name(); r->mutable_model()->mutable_bias(); },
       absl::StatusCode::kInvalidArgument, "model.weights: required"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const absl::Status status = predict(c.mutate);
    EXPECT_EQ(status.code(), c.code) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.message));
  }
  // Inline equals stored.
  EXPECT_EQ(Probabilities(fit.model(), Wire({1, 2}, {2, 2})).values.size(), 2u);
  v1::PredictRequest empty;
  *empty.mutable_model() = fit.model();
  *empty.mutable_features() = Wire({0, 2}, {});
  v1::PredictResponse none;
  ASSERT_TRUE(HandlePredict(limits_, nullptr, empty, &none).ok());
  EXPECT_EQ(FromWire(none.probabilities()).shape, (Shape{0, 2}));
}

TEST_F(LogisticHandlersTest, ModelsListGetDelete) {
  v1::FitRequest request = GoldenRequest();
  for (const char* name : {"b", "a"}) {
    request.set_model_name(name);
    v1::FitResponse fit;
    ASSERT_TRUE(HandleFit(limits_, store_.get(), request, &fit).ok());
  }
  v1::ListResponse list;
  ASSERT_TRUE(HandleListModels(*store_, v1::ListRequest(), &list).ok());
  ASSERT_EQ(list.models_size(), 2);
  EXPECT_EQ(list.models(0).name(), "a");
  EXPECT_EQ(list.models(0).kind(), v1::MODEL_KIND_LOGISTIC);
  EXPECT_EQ(list.models(0).num_classes(), 2);
  EXPECT_EQ(list.models(0).num_features(), 2);
  EXPECT_GT(list.models(0).file_bytes(), 32);
  EXPECT_GT(list.models(0).created_unix_seconds(), 1.6e9);
  v1::ListRequest only_discriminators;
  only_discriminators.set_kind(v1::MODEL_KIND_DISCRIMINATOR);
  v1::ListResponse none;
  ASSERT_TRUE(HandleListModels(*store_, only_discriminators, &none).ok());
  EXPECT_THAT(none.models(), IsEmpty());

  v1::GetRequest get;
  get.set_name("a");
  v1::GetResponse got;
  ASSERT_TRUE(HandleGetModel(*store_, get, &got).ok());
  EXPECT_EQ(got.info().name(), "a");
  EXPECT_EQ(FromWire(got.logistic().weights()).shape, (Shape{2, 2}));
  get.set_name("../a");
  EXPECT_EQ(HandleGetModel(*store_, get, &got).code(), absl::StatusCode::kInvalidArgument);
  get.set_name("zzz");
  EXPECT_EQ(HandleGetModel(*store_, get, &got).code(), absl::StatusCode::kNotFound);

  v1::DeleteRequest del;
  del.set_name("a");
  v1::DeleteResponse deleted;
  ASSERT_TRUE(HandleDeleteModel(*store_, del, &deleted).ok());
  EXPECT_EQ(HandleDeleteModel(*store_, del, &deleted).code(), absl::StatusCode::kNotFound);
  del.set_name("..");
  EXPECT_EQ(HandleDeleteModel(*store_, del, &deleted).code(), absl::StatusCode::kInvalidArgument);
  v1::ListResponse after;
  ASSERT_TRUE(HandleListModels(*store_, v1::ListRequest(), &after).ok());
  ASSERT_EQ(after.models_size(), 1);
  EXPECT_EQ(after.models(0).name(), "b");
}

}  // namespace
}  // namespace primserve
