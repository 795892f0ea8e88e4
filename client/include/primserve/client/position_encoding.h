// Typed calls to the PositionEncoding service (MATH.md sections 1-3).
//
// Example:
//   PositionEncodingClient client(CreateChannel(ChannelOptions()));  // localhost:50051
//   v1::ApplyRopeRequest options;
//   options.set_pairing(v1::ROPE_PAIRING_HALF_SPLIT);
//   absl::StatusOr<Tensor> rotated = client.ApplyRope(input, options);
#ifndef PRIMSERVE_CLIENT_POSITION_ENCODING_H_
#define PRIMSERVE_CLIENT_POSITION_ENCODING_H_

#include <memory>

#include "absl/status/statusor.h"
#include "primserve/client/channel.h"
#include "primserve/client/tensor.h"
#include "primserve/v1/position_encoding.grpc.pb.h"

namespace primserve {
namespace client {

class PositionEncodingClient {
 public:
  explicit PositionEncodingClient(std::shared_ptr<grpc::Channel> channel);

  // The full request: any option of the service.
  absl::StatusOr<Tensor> Sinusoidal(const v1::SinusoidalRequest& request, const CallOptions& call = {});
  // The table [length, dim] for positions 0..length-1, base 10000, interleaved layout.
  absl::StatusOr<Tensor> Sinusoidal(int64_t length, int64_t dim, const CallOptions& call = {});

  // Rotates `input` with the options set in `options` (its `input` field is ignored).
  absl::StatusOr<Tensor> ApplyRope(const Tensor& input, const v1::ApplyRopeRequest& options = {},
                                   const CallOptions& call = {});
  absl::StatusOr<Tensor> ApplyRope(const v1::ApplyRopeRequest& request, const CallOptions& call = {});

 private:
  // Calls go through client/src/tensor_call.h, which parses the response tensor in one copy.
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace client
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_POSITION_ENCODING_H_
