// Small stored models for the fuzz targets' seeded stores: a logistic model (3 classes, 2
// features) and a discriminator network ([2] -> dense 3 -> leaky relu -> dense 1), so that
// requests naming a stored model, or a model of the wrong kind, reach those paths.
#ifndef PRIMSERVE_TESTS_FUZZ_SEED_MODELS_H_
#define PRIMSERVE_TESTS_FUZZ_SEED_MODELS_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "primserve/v1/models.pb.h"

namespace primserve {
namespace fuzz {

inline void SetTensor(std::initializer_list<int64_t> shape, std::initializer_list<float> values, v1::Tensor* tensor) {
  tensor->mutable_shape()->Add(shape.begin(), shape.end());
  tensor->mutable_values()->Add(values.begin(), values.end());
}

inline v1::StoredModel SeedLogistic() {
  v1::StoredModel model;
  model.set_kind(v1::MODEL_KIND_LOGISTIC);
  v1::LogisticModel* logistic = model.mutable_logistic();
  SetTensor({3, 2}, {1.0f, -0.5f, 0.25f, 2.0f, -1.0f, 0.0f}, logistic->mutable_weights());
  SetTensor({3}, {0.1f, -0.2f, 0.0f}, logistic->mutable_bias());
  for (int c = 0; c < 3; ++c) logistic->add_priors(1.0 / 3.0);
  return model;
}

inline v1::StoredModel SeedDiscriminator() {
  v1::StoredModel model;
  model.set_kind(v1::MODEL_KIND_DISCRIMINATOR);
  v1::Network* network = model.mutable_discriminator();
  network->add_input_shape(2);
  v1::Dense* hidden = network->add_layers()->mutable_dense();
  SetTensor({3, 2}, {0.5f, -1.0f, 1.5f, 0.25f, -0.75f, 1.0f}, hidden->mutable_weight());
  SetTensor({3}, {0.0f, 0.1f, -0.1f}, hidden->mutable_bias());
  v1::Activation* activation = network->add_layers()->mutable_activation();
  activation->set_kind(v1::ACTIVATION_KIND_LEAKY_RELU);
  activation->set_alpha(0.2);
  v1::Dense* out = network->add_layers()->mutable_dense();
  SetTensor({1, 3}, {1.0f, -2.0f, 0.5f}, out->mutable_weight());
  SetTensor({1}, {0.3f}, out->mutable_bias());
  return model;
}

// The names make_corpus.py's seeds refer to.
inline std::vector<std::pair<std::string, v1::StoredModel>> SeedModels() {
  return {{"iris", SeedLogistic()}, {"disc", SeedDiscriminator()}};
}

}  // namespace fuzz
}  // namespace primserve

#endif  // PRIMSERVE_TESTS_FUZZ_SEED_MODELS_H_
