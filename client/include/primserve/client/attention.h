// Typed calls to the Attention service (MATH.md sections 2 and 6).
//
// Shapes: query [batch, num_heads, q_len, head_dim], key [batch, num_kv_heads, k_len, head_dim],
// value [batch, num_kv_heads, k_len, value_dim] -> output [batch, num_heads, q_len, value_dim]
// (+ weights [batch, num_heads, q_len, k_len] with return_weights).
//
// Example:
//   AttentionClient attention(CreateChannel(ChannelOptions()));  // localhost:50051
//   v1::AttendRequest options;
//   options.set_causal(true);
//   options.set_return_weights(true);
//   absl::StatusOr<AttendResult> result = attention.Attend(q, k, v, options);
//   // result->output, *result->weights
//   absl::StatusOr<v1::EstimateCostResponse> cost = attention.EstimateCost(512, 64, 12);
//   // cost->self_attention() == 1610612736
#ifndef PRIMSERVE_CLIENT_ATTENTION_H_
#define PRIMSERVE_CLIENT_ATTENTION_H_

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "primserve/client/channel.h"
#include "primserve/client/tensor.h"
#include "primserve/v1/attention.grpc.pb.h"

namespace primserve {
namespace client {

struct AttendResult {
  Tensor output;                  // [batch, num_heads, q_len, value_dim]
  std::optional<Tensor> weights;  // [batch, num_heads, q_len, k_len] when return_weights was set.
};

class AttentionClient {
 public:
  explicit AttentionClient(std::shared_ptr<grpc::Channel> channel);

  // Attends with the options set in `options` (kind, causal, key_lengths, bias, scale, rope,
  // return_weights, compute_precision); its query, key and value fields are replaced.
  absl::StatusOr<AttendResult> Attend(const Tensor& query, const Tensor& key, const Tensor& value,
                                      const v1::AttendRequest& options = {}, const CallOptions& call = {});
  // The full request.
  absl::StatusOr<AttendResult> Attend(const v1::AttendRequest& request, const CallOptions& call = {});

  // Su's multiplication counts and crossover lengths; multipliers 0 mean 4.
  absl::StatusOr<v1::EstimateCostResponse> EstimateCost(const v1::EstimateCostRequest& request,
                                                        const CallOptions& call = {});
  absl::StatusOr<v1::EstimateCostResponse> EstimateCost(int64_t seq_len, int64_t head_size, int64_t num_heads,
                                                        const CallOptions& call = {});

 private:
  std::unique_ptr<v1::Attention::Stub> stub_;
};

}  // namespace client
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_ATTENTION_H_
