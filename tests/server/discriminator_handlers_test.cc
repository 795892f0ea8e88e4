// The Discriminator handlers without a network: the MATH.md section 8 goldens through the wire
// types (GN, GraN, NONE, input gradients), Register then Score by name, the wrong-kind and
// unknown-name codes, the bad-input table (code and message naming the field or layer, nothing
// stored), the losses identity hinge D - wasserstein D = 2 on GN scores, the compiled-network
// cache (hits, invalidation on re-Register and Delete), cancellation, and Models Get / List.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/tile_matmul.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/discriminator_cache.h"
#include "server/discriminator_conversion.h"
#include "server/discriminator_handlers.h"
#include "server/logistic_handlers.h"
#include "server/models_handlers.h"
#include "server/tensor_conversion.h"
#include "tests/server/model_dir_files.h"

namespace primserve {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

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

// MATH.md section 8: f(x) = w.x + b with w = [3, 4], b = 1.
v1::Network LinearNetwork() {
  v1::Network network;
  network.add_input_shape(2);
  v1::Dense* dense = network.add_layers()->mutable_dense();
  *dense->mutable_weight() = Wire({1, 2}, {3, 4});
  *dense->mutable_bias() = Wire({1}, {1});
  return network;
}

void AddActivation(v1::Network* network, v1::ActivationKind kind) {
  network->add_layers()->mutable_activation()->set_kind(kind);
}

void AddDense(v1::Network* network, int64_t out, int64_t in, std::mt19937* rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(in)));
  std::vector<float> w(static_cast<size_t>(out * in)), b(static_cast<size_t>(out));
  for (float& v : w) v = normal(*rng);
  for (float& v : b) v = 0.1f * normal(*rng);
  v1::Dense* dense = network->add_layers()->mutable_dense();
  *dense->mutable_weight() = Wire({out, in}, w);
  *dense->mutable_bias() = Wire({out}, b);
}

// A small CNN on [3, 5, 7] inputs: conv 3->4 (3x3, stride 2, padding 1) -> LeakyReLU -> flatten
// -> dense 4*3*4 -> 1.
v1::Network SmallCnn(std::mt19937* rng) {
  v1::Network network;
  for (int64_t extent : {3, 5, 7}) network.add_input_shape(extent);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  std::vector<float> w(4 * 3 * 3 * 3), b(4);
  for (float& v : w) v = normal(*rng);
  for (float& v : b) v = normal(*rng);
  v1::Conv2d* conv = network.add_layers()->mutable_conv2d();
  *conv->mutable_weight() = Wire({4, 3, 3, 3}, w);
  *conv->mutable_bias() = Wire({4}, b);
  conv->set_stride(2);
  conv->set_padding(1);
  v1::Layer* leaky = network.add_layers();
  leaky->mutable_activation()->set_kind(v1::ACTIVATION_KIND_LEAKY_RELU);
  leaky->mutable_activation()->set_alpha(0.2);
  network.add_layers()->mutable_flatten();
  AddDense(&network, 1, 4 * 3 * 4, rng);
  return network;
}

v1::Tensor RandomInputs(Shape shape, std::mt19937* rng) {
  int64_t count = 1;
  for (int64_t extent : shape) count *= extent;
  std::normal_distribution<float> normal;
  std::vector<float> values(static_cast<size_t>(count));
  for (float& v : values) v = normal(*rng);
  return Wire(std::move(shape), std::move(values));
}

double Norm(const std::vector<float>& values) {
  double sum = 0;
  for (float v : values) sum += static_cast<double>(v) * v;
  return std::sqrt(sum);
}

class DiscriminatorHandlersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/primserve-discriminator-handlers-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    absl::StatusOr<std::unique_ptr<ModelStore>> store = ModelStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    store_->SetChangeListener([this] { cache_.DropGone(); });  // As DiscriminatorService does.
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  // No model written: nothing in the directory but, perhaps, the writers' lock file.
  bool DirectoryEmpty() const { return ModelDirFiles(dir_).empty(); }

  absl::Status Register(const std::string& name, const v1::Network& network) {
    v1::RegisterRequest request;
    request.set_name(name);
    *request.mutable_network() = network;
    v1::RegisterResponse response;
    return HandleRegister(limits_, store_.get(), request, &response);
  }

  absl::StatusOr<v1::ScoreResponse> Score(const v1::ScoreRequest& request, std::function<bool()> cancelled = nullptr) {
    v1::ScoreResponse response;
    const absl::Status status = HandleScore(limits_, store_.get(), &cache_, request, &response, std::move(cancelled));
    if (!status.ok()) return status;
    return response;
  }

  Limits limits_;
  std::string dir_;
  std::unique_ptr<ModelStore> store_;
  DiscriminatorCache cache_;
};

v1::ScoreRequest GoldenScoreRequest() {
  v1::ScoreRequest request;
  *request.mutable_network() = LinearNetwork();
  *request.mutable_inputs() = Wire({1, 2}, {1, 1});
  request.set_return_input_gradient(true);
  return request;
}

TEST_F(DiscriminatorHandlersTest, GradientNormGolden) {
  // f = 3 + 4 + 1 = 8, ||grad f|| = ||[3, 4]|| = 5, f_hat = 8 / (5 + 8) = 8/13; linear, so
  // grad f_hat = g n / (n + |f|)^2 = [3, 4] 5 / 169, of norm 25/169 (MATH.md section 8).
  absl::StatusOr<v1::ScoreResponse> response = Score(GoldenScoreRequest());
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_THAT(FromWire(response->raw_scores()).values, ElementsAre(8.0f));
  EXPECT_THAT(FromWire(response->gradient_norms()).values, ElementsAre(5.0f));
  const Tensor scores = FromWire(response->scores());
  ASSERT_EQ(scores.values.size(), 1u);
  EXPECT_NEAR(scores.values[0], 0.6153846154, 1e-7);
  const Tensor gradient = FromWire(response->input_gradients());
  EXPECT_THAT(gradient.shape, ElementsAre(1, 2));
  EXPECT_NEAR(Norm(gradient.values), 0.1479289941, 1e-7);
  EXPECT_NEAR(gradient.values[0], 15.0 / 169.0, 1e-7);
  EXPECT_NEAR(gradient.values[1], 20.0 / 169.0, 1e-7);
}

TEST_F(DiscriminatorHandlersTest, RegisterRefusesWhatScoreWould) {
  // A 1x1 input padded by 4000 (an 8001 x 8001 map), tanh, then a conv whose stride leaves one
  // output: about 4 GB of work buffers per sample. Score refuses it; so does Register, rather
  // than store a model every later call would fail on.
  v1::Network network;
  for (int64_t extent : {1, 1, 1}) network.add_input_shape(extent);
  v1::Conv2d* wide = network.add_layers()->mutable_conv2d();
  *wide->mutable_weight() = Wire({1, 1, 1, 1}, {1});
  *wide->mutable_bias() = Wire({1}, {0});
  wide->set_stride(1);
  wide->set_padding(4000);
  network.add_layers()->mutable_activation()->set_kind(v1::ACTIVATION_KIND_TANH);
  v1::Conv2d* pick = network.add_layers()->mutable_conv2d();
  *pick->mutable_weight() = Wire({1, 1, 1, 1}, {1});
  *pick->mutable_bias() = Wire({1}, {0});
  pick->set_stride(1 << 20);
  const absl::Status status = Register("huge", network);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("network: one sample needs about"));
  EXPECT_TRUE(DirectoryEmpty());
}

TEST_F(DiscriminatorHandlersTest, TheWholeResponseMustFitOneMessage) {
  // Each tensor passed its own cap, and gRPC refused the response after the computation (a probe
  // sent inputs [4200000, 1] with return_input_gradient). 100 samples of 2: inputs 200 elements;
  // the response 3 x 100 scores + 200 gradient elements = 500, over a 400-element limit.
  limits_ = Limits::ForMessageBytes(Limits::kResponseEnvelopeBytes + 4 * 400);
  v1::ScoreRequest request = GoldenScoreRequest();
  *request.mutable_inputs() = Wire({100, 2}, std::vector<float>(200, 1.0f));
  absl::StatusOr<v1::ScoreResponse> refused = Score(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("inputs: 100 samples give 3 x 100 scores + 200 input gradient elements = 500, above the "
                        "limit of 400"));
  request.set_return_input_gradient(false);  // 300 elements: fits, and the bytes do too.
  absl::StatusOr<v1::ScoreResponse> scored = Score(request);
  ASSERT_TRUE(scored.ok()) << scored.status();
  EXPECT_LE(static_cast<int64_t>(scored->ByteSizeLong()), Limits::kResponseEnvelopeBytes + 4 * 400);
}

TEST_F(DiscriminatorHandlersTest, GranAndNoneGoldens) {
  v1::ScoreRequest request = GoldenScoreRequest();
  request.set_normalization(v1::NORMALIZATION_GRAN);  // epsilon unset: 1e-8
  absl::StatusOr<v1::ScoreResponse> gran = Score(request);
  ASSERT_TRUE(gran.ok()) << gran.status();
  // 8 * 5 / (25 + 1e-8) = 1.59999999936 (float32: 1.6 to one ulp).
  EXPECT_NEAR(FromWire(gran->scores()).values[0], 1.59999999936, 2e-7);
  request.set_epsilon(1.0);  // 40 / 26
  gran = Score(request);
  ASSERT_TRUE(gran.ok()) << gran.status();
  EXPECT_NEAR(FromWire(gran->scores()).values[0], 40.0 / 26.0, 2e-7);

  request = GoldenScoreRequest();
  request.set_normalization(v1::NORMALIZATION_NONE);
  absl::StatusOr<v1::ScoreResponse> none = Score(request);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_THAT(FromWire(none->scores()).values, ElementsAre(8.0f));
  EXPECT_THAT(FromWire(none->input_gradients()).values, ElementsAre(3.0f, 4.0f));

  request.set_return_input_gradient(false);
  none = Score(request);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_input_gradients());
}

TEST_F(DiscriminatorHandlersTest, RegisterThenScoreByNameEqualsInline) {
  std::mt19937 rng(7);
  const v1::Network cnn = SmallCnn(&rng);
  v1::RegisterRequest register_request;
  register_request.set_name("cnn");
  *register_request.mutable_network() = cnn;
  v1::RegisterResponse registered;
  ASSERT_TRUE(HandleRegister(limits_, store_.get(), register_request, &registered).ok());
  EXPECT_THAT(registered.input_shape(), ElementsAre(3, 5, 7));
  EXPECT_EQ(registered.num_layers(), 4);
  EXPECT_TRUE(registered.piecewise_linear());

  v1::ScoreRequest by_name;
  by_name.set_model_name("cnn");
  *by_name.mutable_inputs() = RandomInputs({3, 3, 5, 7}, &rng);
  by_name.set_return_input_gradient(true);
  v1::ScoreRequest inline_request = by_name;
  inline_request.clear_model_name();
  *inline_request.mutable_network() = cnn;
  absl::StatusOr<v1::ScoreResponse> a = Score(by_name);
  absl::StatusOr<v1::ScoreResponse> b = Score(inline_request);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(FromWire(a->scores()).values, FromWire(b->scores()).values);
  EXPECT_EQ(FromWire(a->input_gradients()).values, FromWire(b->input_gradients()).values);
  EXPECT_THAT(FromWire(a->input_gradients()).shape, ElementsAre(3, 3, 5, 7));
  for (float s : FromWire(a->scores()).values) EXPECT_LE(std::abs(s), 1.0f);
  EXPECT_EQ(cache_.stored_size(), 1u);
  EXPECT_EQ(cache_.inline_size(), 1u);

  // Models.Get returns the canonical network (stride and alpha explicit).
  v1::GetRequest get;
  get.set_name("cnn");
  v1::GetResponse got;
  ASSERT_TRUE(HandleGetModel(*store_, get, &got).ok());
  EXPECT_EQ(got.info().kind(), v1::MODEL_KIND_DISCRIMINATOR);
  EXPECT_THAT(got.info().input_shape(), ElementsAre(3, 5, 7));
  ASSERT_TRUE(got.has_discriminator());
  EXPECT_EQ(got.discriminator().layers(0).conv2d().stride(), 2);
  EXPECT_DOUBLE_EQ(got.discriminator().layers(1).activation().alpha(), 0.2);
}

TEST_F(DiscriminatorHandlersTest, ReRegisterReplacesTheCachedNetwork) {
  ASSERT_TRUE(Register("d", LinearNetwork()).ok());
  v1::ScoreRequest request;
  request.set_model_name("d");
  request.set_normalization(v1::NORMALIZATION_NONE);
  *request.mutable_inputs() = Wire({1, 2}, {1, 1});
  absl::StatusOr<v1::ScoreResponse> first = Score(request);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(FromWire(first->raw_scores()).values, ElementsAre(8.0f));

  v1::Network doubled = LinearNetwork();
  *doubled.mutable_layers(0)->mutable_dense()->mutable_weight() = Wire({1, 2}, {6, 8});
  ASSERT_TRUE(Register("d", doubled).ok());
  absl::StatusOr<v1::ScoreResponse> second = Score(request);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_THAT(FromWire(second->raw_scores()).values, ElementsAre(15.0f));
  EXPECT_EQ(cache_.stored_size(), 1u);

  // Deleting the model drops its compiled network at once (it held the network's weights and
  // idle workspaces until an unrelated network was next compiled).
  v1::DeleteRequest remove;
  remove.set_name("d");
  v1::DeleteResponse removed;
  ASSERT_TRUE(HandleDeleteModel(*store_, remove, &removed).ok());
  EXPECT_EQ(cache_.stored_size(), 0u);
  EXPECT_EQ(Score(request).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DiscriminatorHandlersTest, WrongKindAndUnknownName) {
  v1::FitRequest fit;
  *fit.mutable_features() = Wire({4, 1}, {0, 1, 2, 3});
  for (int64_t label : {0, 0, 1, 1}) fit.add_labels(label);
  fit.set_model_name("logistic");
  v1::FitResponse fitted;
  ASSERT_TRUE(HandleFit(limits_, store_.get(), fit, &fitted).ok());

  v1::ScoreRequest request = GoldenScoreRequest();
  request.clear_network();
  request.set_model_name("logistic");
  absl::Status status = Score(request).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("MODEL_KIND_LOGISTIC"));

  request.set_model_name("missing");
  status = Score(request).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("model_name"));

  // Register over a logistic model's name; Predict on a discriminator's name.
  status = Register("logistic", LinearNetwork());
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  ASSERT_TRUE(Register("disc", LinearNetwork()).ok());
  v1::PredictRequest predict;
  predict.set_model_name("disc");
  *predict.mutable_features() = Wire({1, 1}, {0});
  v1::PredictResponse predicted;
  status = HandlePredict(limits_, store_.get(), predict, &predicted);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;

  v1::LossesRequest losses;
  losses.set_model_name("logistic");
  *losses.mutable_real_inputs() = Wire({1, 2}, {1, 1});
  *losses.mutable_fake_inputs() = Wire({1, 2}, {1, 1});
  v1::LossesResponse lossed;
  EXPECT_EQ(HandleLosses(limits_, store_.get(), &cache_, losses, &lossed).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(DiscriminatorHandlersTest, ScoreBadInputs) {
  struct Case {
    std::string name;
    std::function<void(v1::ScoreRequest*)> mutate;
    absl::StatusCode code;
    std::vector<std::string> message;
  };
  const auto layer = [](v1::ScoreRequest* r, int i) { return r->mutable_network()->mutable_layers(i); };
  const std::vector<Case> cases = {
      {"neither network nor model_name", [](v1::ScoreRequest* r) { r->clear_network(); },
       absl::StatusCode::kInvalidArgument, {"model_name, network", "neither"}},
      {"both network and model_name", [](v1::ScoreRequest* r) { r->set_model_name("x"); },
       absl::StatusCode::kInvalidArgument, {"model_name, network", "both"}},
      {"unspecified activation kind",
       [](v1::ScoreRequest* r) { AddActivation(r->mutable_network(), v1::ACTIVATION_KIND_UNSPECIFIED); },
       absl::StatusCode::kInvalidArgument, {"network.layers[1].activation.kind", "UNSPECIFIED"}},
      {"unknown activation kind",
       [](v1::ScoreRequest* r) { AddActivation(r->mutable_network(), static_cast<v1::ActivationKind>(42)); },
       absl::StatusCode::kInvalidArgument, {"network.layers[1].activation.kind", "unknown enum value 42"}},
      {"non-finite leaky alpha",
       [](v1::ScoreRequest* r) {
         v1::Layer* l = r->mutable_network()->add_layers();
         l->mutable_activation()->set_kind(v1::ACTIVATION_KIND_LEAKY_RELU);
         l->mutable_activation()->set_alpha(std::numeric_limits<double>::infinity());
       },
       absl::StatusCode::kInvalidArgument, {"network.layers[1] (Activation)", "alpha"}},
      {"empty layer", [](v1::ScoreRequest* r) { r->mutable_network()->add_layers(); },
       absl::StatusCode::kInvalidArgument, {"network.layers[1]", "empty layer"}},
      {"no layers", [](v1::ScoreRequest* r) { r->mutable_network()->clear_layers(); },
       absl::StatusCode::kInvalidArgument, {"network.layers", "at least one"}},
      {"weight size mismatch",
       [&](v1::ScoreRequest* r) { *layer(r, 0)->mutable_dense()->mutable_weight() = Wire({1, 3}, {1, 2, 3}); },
       absl::StatusCode::kInvalidArgument, {"network.layers[0] (Dense)", "[1, 3]", "in = 2"}},
      {"weight values vs shape",
       [&](v1::ScoreRequest* r) { layer(r, 0)->mutable_dense()->mutable_weight()->add_shape(2); },
       absl::StatusCode::kInvalidArgument, {"network.layers[0].dense.weight"}},
      {"missing bias", [&](v1::ScoreRequest* r) { layer(r, 0)->mutable_dense()->clear_bias(); },
       absl::StatusCode::kInvalidArgument, {"network.layers[0].dense.bias", "required"}},
      {"NaN weight", [&](v1::ScoreRequest* r) { *layer(r, 0)->mutable_dense()->mutable_weight() = Wire({1, 2}, {kNaN, 1}); },
       absl::StatusCode::kInvalidArgument, {"network.layers[0] (Dense)"}},
      {"non-scalar output",
       [&](v1::ScoreRequest* r) {
         *layer(r, 0)->mutable_dense()->mutable_weight() = Wire({2, 2}, {1, 2, 3, 4});
         *layer(r, 0)->mutable_dense()->mutable_bias() = Wire({2}, {0, 0});
       },
       absl::StatusCode::kInvalidArgument, {"network.output", "one scalar per sample", "layers[0] (Dense)"}},
      {"second layer mismatch names index 2",
       [](v1::ScoreRequest* r) {
         AddActivation(r->mutable_network(), v1::ACTIVATION_KIND_TANH);
         v1::Dense* d = r->mutable_network()->add_layers()->mutable_dense();
         *d->mutable_weight() = Wire({1, 2}, {1, 1});
         *d->mutable_bias() = Wire({1}, {0});
       },
       absl::StatusCode::kInvalidArgument, {"network.layers[2] (Dense)", "[1, 2]"}},
      {"conv on flat input",
       [](v1::ScoreRequest* r) {
         v1::Conv2d* c = r->mutable_network()->mutable_layers(0)->mutable_conv2d();
         *c->mutable_weight() = Wire({1, 1, 1, 1}, {1});
         *c->mutable_bias() = Wire({1}, {0});
       },
       absl::StatusCode::kInvalidArgument, {"network.layers[0] (Conv2d)"}},
      {"bad input_shape", [](v1::ScoreRequest* r) { r->mutable_network()->set_input_shape(0, 0); },
       absl::StatusCode::kInvalidArgument, {"network.input_shape"}},
      {"missing inputs", [](v1::ScoreRequest* r) { r->clear_inputs(); },
       absl::StatusCode::kInvalidArgument, {"inputs", "required"}},
      {"NaN inputs", [](v1::ScoreRequest* r) { *r->mutable_inputs() = Wire({1, 2}, {1, kNaN}); },
       absl::StatusCode::kInvalidArgument, {"inputs"}},
      {"inputs shape vs input_shape", [](v1::ScoreRequest* r) { *r->mutable_inputs() = Wire({1, 3}, {1, 1, 1}); },
       absl::StatusCode::kInvalidArgument, {"inputs.shape", "[batch, 2]"}},
      {"inputs rank", [](v1::ScoreRequest* r) { *r->mutable_inputs() = Wire({2}, {1, 1}); },
       absl::StatusCode::kInvalidArgument, {"inputs.shape"}},
      {"unknown normalization", [](v1::ScoreRequest* r) { r->set_normalization(static_cast<v1::Normalization>(9)); },
       absl::StatusCode::kInvalidArgument, {"normalization", "9"}},
      {"unknown compute_precision",
       [](v1::ScoreRequest* r) { r->set_compute_precision(static_cast<v1::ComputePrecision>(7)); },
       absl::StatusCode::kInvalidArgument, {"compute_precision", "unknown enum value 7"}},
      {"epsilon zero with GRAN",
       [](v1::ScoreRequest* r) {
         r->set_normalization(v1::NORMALIZATION_GRAN);
         r->set_epsilon(0);
       },
       absl::StatusCode::kInvalidArgument, {"epsilon", "> 0"}},
      {"epsilon negative with GRAN",
       [](v1::ScoreRequest* r) {
         r->set_normalization(v1::NORMALIZATION_GRAN);
         r->set_epsilon(-1);
       },
       absl::StatusCode::kInvalidArgument, {"epsilon", "-1"}},
      {"epsilon NaN with GRAN",
       [](v1::ScoreRequest* r) {
         r->set_normalization(v1::NORMALIZATION_GRAN);
         r->set_epsilon(std::numeric_limits<double>::quiet_NaN());
       },
       absl::StatusCode::kInvalidArgument, {"epsilon"}},
      {"epsilon with GRADIENT_NORM", [](v1::ScoreRequest* r) { r->set_epsilon(1e-3); },
       absl::StatusCode::kInvalidArgument, {"epsilon", "NORMALIZATION_GRAN only"}},
      {"unknown model", [](v1::ScoreRequest* r) { r->clear_network(); r->set_model_name("nope"); },
       absl::StatusCode::kNotFound, {"model_name", "nope"}},
      {"bad model name", [](v1::ScoreRequest* r) { r->clear_network(); r->set_model_name("../x"); },
       absl::StatusCode::kInvalidArgument, {"model_name"}},
      {"inputs above the element limit", [](v1::ScoreRequest* r) { *r->mutable_inputs() = Wire({1, 2}, {1, 1}); r->mutable_inputs()->set_shape(0, 1 << 20); r->mutable_inputs()->set_shape(1, 1 << 20); },
       absl::StatusCode::kResourceExhausted, {"inputs"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::ScoreRequest request = GoldenScoreRequest();
    c.mutate(&request);
    const absl::Status status = Score(request).status();
    EXPECT_EQ(status.code(), c.code) << status;
    for (const std::string& part : c.message) EXPECT_THAT(std::string(status.message()), HasSubstr(part));
  }
  EXPECT_TRUE(DirectoryEmpty());
}

// BF16 through the handler: the same scores as F32 to bfloat16 accuracy (core/discriminator.h:
// ~1e-2 relative), UNIMPLEMENTED where the CPU has no native bf16.
TEST_F(DiscriminatorHandlersTest, Bf16ScoreMatchesF32ToBf16Accuracy) {
  std::mt19937 rng(21);
  v1::ScoreRequest request;
  *request.mutable_network() = SmallCnn(&rng);
  *request.mutable_inputs() = RandomInputs({9, 3, 5, 7}, &rng);
  request.set_return_input_gradient(true);
  request.set_compute_precision(v1::COMPUTE_PRECISION_F32);
  absl::StatusOr<v1::ScoreResponse> f32 = Score(request);
  ASSERT_TRUE(f32.ok()) << f32.status();
  request.set_compute_precision(v1::COMPUTE_PRECISION_BF16);
  absl::StatusOr<v1::ScoreResponse> bf16 = Score(request);
  if (!HasNativeBf16()) {
    EXPECT_EQ(bf16.status().code(), absl::StatusCode::kUnimplemented) << bf16.status();
    EXPECT_THAT(std::string(bf16.status().message()), HasSubstr("compute_precision"));
    return;
  }
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  const auto relative = [](const v1::Tensor& a, const v1::Tensor& b) {
    const std::vector<float> x = FromWire(a).values, y = FromWire(b).values;
    EXPECT_EQ(x.size(), y.size());
    std::vector<float> diff(x.size());
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) diff[i] = x[i] - y[i];
    return Norm(diff) / Norm(y);
  };
  EXPECT_LT(relative(bf16->raw_scores(), f32->raw_scores()), 4e-2);
  EXPECT_LT(relative(bf16->gradient_norms(), f32->gradient_norms()), 4e-2);
  EXPECT_LT(relative(bf16->scores(), f32->scores()), 4e-2);
  EXPECT_LT(relative(bf16->input_gradients(), f32->input_gradients()), 8e-2);
  // Really bf16: not bit-identical to F32.
  EXPECT_GT(relative(bf16->raw_scores(), f32->raw_scores()), 0.0);
}

TEST_F(DiscriminatorHandlersTest, RegisterBadInputsStoreNothing) {
  struct Case {
    std::string name;
    std::string model_name;
    std::function<void(v1::RegisterRequest*)> mutate;
    absl::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"bad name", "../x", [](v1::RegisterRequest*) {}, absl::StatusCode::kInvalidArgument, "name"},
      {"empty name", "", [](v1::RegisterRequest*) {}, absl::StatusCode::kInvalidArgument, "name"},
      {"missing network", "d", [](v1::RegisterRequest* r) { r->clear_network(); },
       absl::StatusCode::kInvalidArgument, "network: required"},
      {"weight mismatch", "d",
       [](v1::RegisterRequest* r) {
         *r->mutable_network()->mutable_layers(0)->mutable_dense()->mutable_bias() = Wire({2}, {0, 0});
       },
       absl::StatusCode::kInvalidArgument, "network.layers[0] (Dense): bias"},
      {"unspecified activation", "d",
       [](v1::RegisterRequest* r) { AddActivation(r->mutable_network(), v1::ACTIVATION_KIND_UNSPECIFIED); },
       absl::StatusCode::kInvalidArgument, "network.layers[1].activation.kind"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::RegisterRequest request;
    request.set_name(c.model_name);
    *request.mutable_network() = LinearNetwork();
    c.mutate(&request);
    v1::RegisterResponse response;
    const absl::Status status = HandleRegister(limits_, store_.get(), request, &response);
    EXPECT_EQ(status.code(), c.code) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.message));
  }
  EXPECT_TRUE(DirectoryEmpty());
}

TEST_F(DiscriminatorHandlersTest, LossesHingeMinusWassersteinIsTwoOnGradientNorm) {
  std::mt19937 rng(11);
  v1::Network mlp;
  mlp.add_input_shape(5);
  AddDense(&mlp, 8, 5, &rng);
  AddActivation(&mlp, v1::ACTIVATION_KIND_TANH);
  AddDense(&mlp, 1, 8, &rng);
  ASSERT_TRUE(Register("mlp", mlp).ok());
  v1::LossesRequest request;
  request.set_model_name("mlp");
  *request.mutable_real_inputs() = RandomInputs({17, 5}, &rng);
  *request.mutable_fake_inputs() = RandomInputs({3, 5}, &rng);
  const auto losses = [&](v1::Loss loss) {
    request.set_loss(loss);
    v1::LossesResponse response;
    const absl::Status status = HandleLosses(limits_, store_.get(), &cache_, request, &response);
    EXPECT_TRUE(status.ok()) << status;
    return response;
  };
  const v1::LossesResponse hinge = losses(v1::LOSS_HINGE);
  const v1::LossesResponse unspecified = losses(v1::LOSS_UNSPECIFIED);
  const v1::LossesResponse wasserstein = losses(v1::LOSS_WASSERSTEIN);
  const v1::LossesResponse bce = losses(v1::LOSS_BCE);
  EXPECT_NEAR(hinge.discriminator_loss() - wasserstein.discriminator_loss(), 2.0, 1e-12);
  EXPECT_DOUBLE_EQ(hinge.discriminator_loss(), unspecified.discriminator_loss());
  EXPECT_DOUBLE_EQ(hinge.generator_loss(), wasserstein.generator_loss());
  EXPECT_GT(bce.discriminator_loss(), 0.0);

  // The generator loss is -mean(fake f_hat): check it against Score.
  v1::ScoreRequest score;
  score.set_model_name("mlp");
  *score.mutable_inputs() = request.fake_inputs();
  absl::StatusOr<v1::ScoreResponse> scored = Score(score);
  ASSERT_TRUE(scored.ok());
  double mean = 0;
  for (float s : FromWire(scored->scores()).values) mean += s / 3.0;
  EXPECT_NEAR(wasserstein.generator_loss(), -mean, 1e-6);

  // Bad inputs name their field.
  request.set_loss(static_cast<v1::Loss>(7));
  v1::LossesResponse response;
  absl::Status status = HandleLosses(limits_, store_.get(), &cache_, request, &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("loss"));
  request.set_loss(v1::LOSS_HINGE);
  *request.mutable_fake_inputs() = Wire({1, 4}, {0, 0, 0, 0});
  status = HandleLosses(limits_, store_.get(), &cache_, request, &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("fake_inputs"));
  *request.mutable_fake_inputs() = Wire({0, 5}, {});
  status = HandleLosses(limits_, store_.get(), &cache_, request, &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("fake_inputs"));
  request.clear_real_inputs();
  status = HandleLosses(limits_, store_.get(), &cache_, request, &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("real_inputs"));
}

TEST_F(DiscriminatorHandlersTest, CancelledScoreReturnsCancelled) {
  std::mt19937 rng(3);
  v1::ScoreRequest request;
  *request.mutable_network() = SmallCnn(&rng);
  *request.mutable_inputs() = RandomInputs({4, 3, 5, 7}, &rng);
  const absl::Status status = Score(request, [] { return true; }).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
}

TEST_F(DiscriminatorHandlersTest, EmptyBatchGivesEmptyResults) {
  v1::ScoreRequest request = GoldenScoreRequest();
  *request.mutable_inputs() = Wire({0, 2}, {});
  absl::StatusOr<v1::ScoreResponse> response = Score(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_THAT(FromWire(response->scores()).shape, ElementsAre(0));
}

TEST(DiscriminatorConversionTest, DefaultsAndRoundTrip) {
  v1::Network proto = LinearNetwork();
  proto.mutable_layers(0)->mutable_dense()->mutable_weight()->clear_data();
  proto.mutable_layers(0)->mutable_dense()->mutable_weight()->add_values(3);
  proto.mutable_layers(0)->mutable_dense()->mutable_weight()->add_values(4);
  v1::Network with_defaults;
  for (int64_t extent : {1, 4, 4}) with_defaults.add_input_shape(extent);
  v1::Conv2d* conv = with_defaults.add_layers()->mutable_conv2d();
  *conv->mutable_weight() = Wire({1, 1, 4, 4}, std::vector<float>(16, 0.5f));
  *conv->mutable_bias() = Wire({1}, {0});
  AddActivation(&with_defaults, v1::ACTIVATION_KIND_LEAKY_RELU);
  AddActivation(&with_defaults, v1::ACTIVATION_KIND_ELU);
  absl::StatusOr<Network> network = NetworkFromProto(with_defaults, "network", Limits());
  ASSERT_TRUE(network.ok()) << network.status();
  EXPECT_EQ(std::get<Conv2dLayer>(network->layers[0]).stride, 1);
  EXPECT_DOUBLE_EQ(std::get<ActivationLayer>(network->layers[1]).alpha, kDefaultLeakyReluSlope);
  EXPECT_DOUBLE_EQ(std::get<ActivationLayer>(network->layers[2]).alpha, kDefaultEluAlpha);
  v1::Network back;
  NetworkToProto(*network, &back);
  EXPECT_EQ(back.layers(0).conv2d().stride(), 1);
  EXPECT_TRUE(back.layers(1).activation().has_alpha());
  absl::StatusOr<Network> again = NetworkFromProto(back, "network", Limits());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(std::get<Conv2dLayer>(again->layers[0]).weight.values,
            std::get<Conv2dLayer>(network->layers[0]).weight.values);
  // An explicit alpha 0 stays 0 (a LeakyReLU of slope 0 is a ReLU).
  with_defaults.mutable_layers(1)->mutable_activation()->set_alpha(0);
  network = NetworkFromProto(with_defaults, "network", Limits());
  ASSERT_TRUE(network.ok());
  EXPECT_DOUBLE_EQ(std::get<ActivationLayer>(network->layers[1]).alpha, 0.0);
  // `values` instead of `data` is accepted.
  EXPECT_TRUE(NetworkFromProto(proto, "network", Limits()).ok());
}

}  // namespace
}  // namespace primserve
