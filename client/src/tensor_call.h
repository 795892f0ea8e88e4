// Unary calls whose response is one tensor field (Echo, Sinusoidal, ApplyRope), with the tensor
// parsed from the received bytes straight into a client::Tensor.
//
// Why: the generated stub parses the response into a fresh message, whose Clear() drops any
// bytes reserved beforehand, and protobuf reserves at most 50 MB of a bytes field up front and
// regrows past it. A 64 MiB response therefore cost a 50 MB copy and a 100 MB allocation, then
// the copy of the parsed bytes into the Tensor: three passes over the tensor and 164 MiB of
// memory the process had to fault in. Here the bytes go from gRPC's received slices into the
// Tensor's storage in one copy.
//
// The call is the same unary call on the wire (method path, deadline, metadata, the channel's
// retry policy and interceptors apply): a grpc::TemplatedGenericStub whose response type,
// TensorReply, has its own grpc::SerializationTraits.
#ifndef PRIMSERVE_CLIENT_SRC_TENSOR_CALL_H_
#define PRIMSERVE_CLIENT_SRC_TENSOR_CALL_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/byte_buffer.h"
#include "primserve/client/channel.h"
#include "primserve/client/tensor.h"

namespace primserve {
namespace client {
namespace internal {

// The response of a tensor call: which top-level field holds the tensor, and what was parsed.
struct TensorReply {
  int tensor_field = 0;
  Tensor tensor;
  absl::Status status = absl::InternalError("the server sent no response message");
};

// Parses the response message in `wire` (any message whose field `tensor_field` is a v1.Tensor)
// into `tensor`, the way FromProto converts a parsed v1.Tensor: FLOAT32 or BFLOAT16 `data`, or
// `values`. Other fields are skipped. INTERNAL for bytes that are not such a message,
// INVALID_ARGUMENT for a tensor whose elements do not match its shape.
absl::Status ParseTensorReply(grpc::ByteBuffer& wire, int tensor_field, Tensor* tensor);

}  // namespace internal
}  // namespace client
}  // namespace primserve

namespace grpc {

// How gRPC turns a received response into a TensorReply (tensor_call.h). Requests are never
// TensorReplies, so Serialize only reports that.
template <>
class SerializationTraits<primserve::client::internal::TensorReply, void> {
 public:
  static Status Serialize(const primserve::client::internal::TensorReply& reply, ByteBuffer* buffer,
                          bool* own_buffer);
  static Status Deserialize(ByteBuffer* buffer, primserve::client::internal::TensorReply* reply);
};

}  // namespace grpc

namespace primserve {
namespace client {
namespace internal {

// Calls `method` ("/primserve.v1.Diagnostics/Echo") with `request` and returns the tensor in the
// response's field `tensor_field`.
template <typename Request>
absl::StatusOr<Tensor> CallForTensor(const std::shared_ptr<grpc::Channel>& channel, const char* method,
                                     const Request& request, int tensor_field, const CallOptions& call) {
  grpc::ClientContext context;
  ConfigureContext(call, &context);
  grpc::TemplatedGenericStub<Request, TensorReply> stub(channel);
  // A queue per call, as the generated blocking stub uses: the caller's thread waits on it.
  grpc::CompletionQueue queue;
  TensorReply reply;
  reply.tensor_field = tensor_field;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<TensorReply>> reader =
      stub.PrepareUnaryCall(&context, method, request, &queue);
  reader->StartCall();
  reader->Finish(&reply, &status, &reply);
  void* tag = nullptr;
  bool ok = false;
  const bool got_event = queue.Next(&tag, &ok);
  queue.Shutdown();
  for (void* drained; queue.Next(&drained, &ok);) {
  }
  if (!got_event) return absl::InternalError("the call's completion queue shut down before the call ended");
  if (!status.ok()) return FromGrpcStatus(status);
  if (!reply.status.ok()) return reply.status;
  return std::move(reply.tensor);
}

}  // namespace internal
}  // namespace client
}  // namespace primserve
#endif  // PRIMSERVE_CLIENT_SRC_TENSOR_CALL_H_
