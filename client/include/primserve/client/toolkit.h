// Typed calls to the Toolkit service (MATH.md sections 4, 7 and 9): the embedding-dimension
// bound, reproducible initialisation and ChildTuning gradient masks.
//
// Example:
//   ToolkitClient toolkit(CreateChannel(ChannelOptions()));  // localhost:50051
//   absl::StatusOr<v1::EmbeddingDimensionResponse> dim = toolkit.EmbeddingDimension(100000);
//   // dim->bound() == 95.9027..., dim->dimension() == 96
//   v1::InitializeParametersRequest init;
//   init.set_distribution(v1::INIT_DISTRIBUTION_TRUNCATED_NORMAL);
//   init.set_scheme(v1::INIT_SCHEME_XAVIER);
//   init.set_seed(42);                                 // same seed, same bytes
//   absl::StatusOr<InitializeResult> w = toolkit.InitializeParameters({768, 3072}, init);
//   // w->parameters [768, 3072], w->stddev == sqrt(2 / (3072 + 768))
//   v1::ChildTuningMaskRequest mask;
//   mask.set_keep_probability(0.3);
//   mask.set_rescale(true);
//   mask.set_seed(step);                               // TASK_FREE: a fresh mask per step
//   absl::StatusOr<ChildTuningResult> masked = toolkit.ChildTuningMask(gradient, mask);
#ifndef PRIMSERVE_CLIENT_TOOLKIT_H_
#define PRIMSERVE_CLIENT_TOOLKIT_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "primserve/client/channel.h"
#include "primserve/client/tensor.h"
#include "primserve/v1/toolkit.grpc.pb.h"

namespace primserve {
namespace client {

struct InitializeResult {
  Tensor parameters;    // float32 of the requested shape.
  double stddev = 0;    // The scheme's target standard deviation.
  int64_t fan_in = 0;   // The fans used (0 when the scheme reads none).
  int64_t fan_out = 0;
};

struct ChildTuningResult {
  Tensor gradient;           // The masked gradient, the input's shape.
  double kept_fraction = 0;  // The mask density.
};

class ToolkitClient {
 public:
  explicit ToolkitClient(std::shared_ptr<grpc::Channel> channel);

  // coefficient * ln(vocab_size) and its ceiling; coefficient 0 means 8.33.
  absl::StatusOr<v1::EmbeddingDimensionResponse> EmbeddingDimension(int64_t vocab_size, double coefficient = 0,
                                                                    const CallOptions& call = {});

  // A tensor of `shape` with the options set in `options` (distribution, scheme, stddev, fans,
  // seed); its shape field is replaced.
  absl::StatusOr<InitializeResult> InitializeParameters(const std::vector<int64_t>& shape,
                                                        const v1::InitializeParametersRequest& options = {},
                                                        const CallOptions& call = {});
  // The full request.
  absl::StatusOr<InitializeResult> InitializeParameters(const v1::InitializeParametersRequest& request,
                                                        const CallOptions& call = {});

  // Masks `gradient` with the options in `options` (mode, keep_probability, rescale, seed and,
  // for TASK_DRIVEN, its `fisher` tensor); its gradient field is replaced.
  absl::StatusOr<ChildTuningResult> ChildTuningMask(const Tensor& gradient, const v1::ChildTuningMaskRequest& options,
                                                    const CallOptions& call = {});
  // The full request.
  absl::StatusOr<ChildTuningResult> ChildTuningMask(const v1::ChildTuningMaskRequest& request,
                                                    const CallOptions& call = {});

 private:
  std::unique_ptr<v1::Toolkit::Stub> stub_;
};

}  // namespace client
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_TOOLKIT_H_
