// Typed calls to the Discriminator service (MATH.md section 8): register a PyTorch-style
// discriminator network, score samples with GN-GAN / GraN-GAN normalisation and exact input
// gradients, and compute the GAN losses on the normalised scores.
//
// Shapes: a Network has a per-sample input_shape ([features] or [channels, height, width]) and
// layers with PyTorch-layout weights (Dense [out, in]; Conv2d [out, in, kh, kw]); inputs
// [batch, ...input_shape] -> raw_scores, gradient_norms, scores [batch], input_gradients
// [batch, ...input_shape] (the gradient of scores, i.e. of f_hat).
//
// Example:
//   DiscriminatorClient d(CreateChannel(ChannelOptions()));  // localhost:50051
//   v1::Network net;
//   net.add_input_shape(2);
//   *net.add_layers() = MakeDense({{1, 2}, {3, 4}}, {{1}, {1}});
//   d.Register("linear", net);
//   DiscriminatorScoreOptions options;
//   options.return_input_gradient = true;
//   absl::StatusOr<DiscriminatorScores> s = d.Score({{1, 2}, {1, 1}}, "linear", options);
//   // s->scores.values[0] == 8/13 (GRADIENT_NORM), s->input_gradients->values == [15, 20] / 169
//   absl::StatusOr<DiscriminatorLosses> l = d.Losses(real, fake, "linear", v1::LOSS_HINGE);
#ifndef PRIMSERVE_CLIENT_DISCRIMINATOR_H_
#define PRIMSERVE_CLIENT_DISCRIMINATOR_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "primserve/client/channel.h"
#include "primserve/client/tensor.h"
#include "primserve/v1/discriminator.grpc.pb.h"

namespace primserve {
namespace client {

// Layer builders (weights in PyTorch layout).
v1::Layer MakeDense(const Tensor& weight, const Tensor& bias);
v1::Layer MakeConv2d(const Tensor& weight, const Tensor& bias, int64_t stride = 1, int64_t padding = 0);
// alpha: LEAKY_RELU's negative slope / ELU's alpha; nullopt means PyTorch's default.
v1::Layer MakeActivation(v1::ActivationKind kind, std::optional<double> alpha = std::nullopt);
v1::Layer MakeFlatten();

struct DiscriminatorScoreOptions {
  v1::Normalization normalization = v1::NORMALIZATION_UNSPECIFIED;  // GRADIENT_NORM.
  std::optional<double> epsilon;  // GRAN only (unset: the server's 1e-8).
  bool return_input_gradient = false;
  // Score only: F32 (UNSPECIFIED) or BF16 (bfloat16 products, float32 accumulation; the server
  // answers UNIMPLEMENTED without native bf16).
  v1::ComputePrecision compute_precision = v1::COMPUTE_PRECISION_UNSPECIFIED;
};

struct DiscriminatorScores {
  Tensor raw_scores;                      // f [batch]
  Tensor gradient_norms;                  // ||grad_x f|| [batch]
  Tensor scores;                          // f_hat [batch]
  std::optional<Tensor> input_gradients;  // grad_x f_hat [batch, ...input_shape], if requested
};

struct DiscriminatorLosses {
  double discriminator = 0.0;
  double generator = 0.0;
};

class DiscriminatorClient {
 public:
  explicit DiscriminatorClient(std::shared_ptr<grpc::Channel> channel);

  // Stores `network` under `name` (validated first; errors name the layer).
  absl::StatusOr<v1::RegisterResponse> Register(const std::string& name, const v1::Network& network,
                                                const CallOptions& call = {});

  // Scores of a registered network, or of an inline one.
  absl::StatusOr<DiscriminatorScores> Score(const Tensor& inputs, const std::string& model_name,
                                            const DiscriminatorScoreOptions& options = {},
                                            const CallOptions& call = {});
  absl::StatusOr<DiscriminatorScores> Score(const Tensor& inputs, const v1::Network& network,
                                            const DiscriminatorScoreOptions& options = {},
                                            const CallOptions& call = {});
  // The full request.
  absl::StatusOr<DiscriminatorScores> Score(const v1::ScoreRequest& request, const CallOptions& call = {});

  // Losses on f_hat of a real and a fake batch (options.return_input_gradient is ignored).
  absl::StatusOr<DiscriminatorLosses> Losses(const Tensor& real_inputs, const Tensor& fake_inputs,
                                             const std::string& model_name, v1::Loss loss = v1::LOSS_HINGE,
                                             const DiscriminatorScoreOptions& options = {},
                                             const CallOptions& call = {});
  // The full request.
  absl::StatusOr<DiscriminatorLosses> Losses(const v1::LossesRequest& request, const CallOptions& call = {});

 private:
  std::unique_ptr<v1::Discriminator::Stub> stub_;
};

}  // namespace client
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_DISCRIMINATOR_H_
