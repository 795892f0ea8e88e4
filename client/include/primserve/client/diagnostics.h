// Typed calls to the Diagnostics service: Echo, the transport baseline (it returns its input
// tensor unchanged, with no compute).
//
// Example:
//   DiagnosticsClient client(CreateChannel(ChannelOptions()));  // localhost:50051
//   absl::StatusOr<Tensor> same = client.Echo(tensor);
#ifndef PRIMSERVE_CLIENT_DIAGNOSTICS_H_
#define PRIMSERVE_CLIENT_DIAGNOSTICS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "primserve/client/channel.h"
#include "primserve/client/tensor.h"
#include "primserve/v1/diagnostics.grpc.pb.h"

namespace primserve {
namespace client {

class DiagnosticsClient {
 public:
  explicit DiagnosticsClient(std::shared_ptr<grpc::Channel> channel);

  // Sends `input` and returns the server's copy of it.
  absl::StatusOr<Tensor> Echo(const Tensor& input, const CallOptions& call = {});
  // The full request (e.g. one built once and sent many times).
  absl::StatusOr<Tensor> Echo(const v1::EchoRequest& request, const CallOptions& call = {});

 private:
  // Calls go through client/src/tensor_call.h, which parses the response tensor in one copy.
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace client
}  // namespace primserve

#endif  // PRIMSERVE_CLIENT_DIAGNOSTICS_H_
