// Serving: what every RPC passes through between gRPC and its handler.
//
//   admission (refused with UNAVAILABLE once draining)
//   -> compute stage (bounded queue; RESOURCE_EXHAUSTED when full; deadline checked before start)
//   -> handler (absl::Status) -> status mapping
//   -> metrics (count by code, queue and compute time, bytes) and one log line:
//      "rpc primserve.v1.Attention/Attend OK 12.345 ms (queue 0.010 ms) id=... peer=..."
//
// The request id comes from the call's `x-request-id` metadata, else it is generated; it is
// returned to the client as `x-request-id` initial metadata (except with UNAVAILABLE, which must
// stay retryable: response headers would commit the call).
//
// Example (a service method):
//   return Serve(serving_, context, kAttend, *request, response, [&] { return HandleAttend(...); });
#ifndef PRIMSERVE_SERVER_SERVING_H_
#define PRIMSERVE_SERVER_SERVING_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/method_handler.h"
#include "grpcpp/support/sync_stream.h"
#include "grpcpp/support/status.h"
#include "server/call_tracker.h"
#include "server/compute_stage.h"
#include "server/message_pool.h"
#include "server/metrics.h"

namespace primserve {

struct Method {
  const char* name;  // Full name, "primserve.v1.Attention/Attend".
  // False for calls that do no tensor compute (cost formulas, model listing): they skip the
  // compute queue so that they stay fast while the workers are busy.
  bool computes;
};

// The shared per-server state calls pass through.
struct Serving {
  Serving(int compute_workers, int max_queue)
      : stage(compute_workers, max_queue,
              [this](int64_t running, int64_t waiting) { metrics.SetComputeStage(running, waiting); }) {}
  Metrics metrics;
  CallTracker tracker;
  ComputeStage stage;
};

// One call from arrival to its status: see the file comment.
class CallScope {
 public:
  CallScope(Serving& serving, grpc::ServerContext* context, const Method& method, int64_t request_bytes);
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

  // Admission, the compute queue and the deadline check; OK means the handler may run.
  absl::Status Begin();
  // Gives the compute slot back while `wait` blocks on the network (a streaming read), then
  // queues for one again. Returns wait's result, or the queue's error.
  template <typename Wait>
  auto WithoutSlot(const Wait& wait) -> decltype(wait());
  void AddReceivedBytes(int64_t bytes) { received_bytes_ += bytes; }
  // Records metrics and the log line; returns the wire status.
  grpc::Status End(const absl::Status& handler_status, int64_t response_bytes);

  const std::string& request_id() const { return request_id_; }

 private:
  absl::Status AcquireSlot();

  Serving& serving_;
  grpc::ServerContext* const context_;
  const Method method_;
  const absl::Time start_;
  absl::Duration queued_;
  absl::Time compute_start_;
  int64_t received_bytes_;
  std::string request_id_;
  CallTracker::Admission admission_{nullptr};
  ComputeStage::Slot slot_;
};

template <typename Wait>
auto CallScope::WithoutSlot(const Wait& wait) -> decltype(wait()) {
  if (!method_.computes) return wait();
  slot_.Release();
  const absl::Time released = absl::Now();
  auto result = wait();
  compute_start_ += absl::Now() - released;  // Waiting on the client is not compute time.
  absl::Status status = AcquireSlot();
  if (!status.ok()) return status;
  return result;
}

// Runs `handler` (returning absl::Status) for one call; see the file comment.
template <typename Handler>
grpc::Status Serve(Serving& serving, grpc::ServerContext* context, const Method& method,
                   const google::protobuf::Message& request, const google::protobuf::Message* response,
                   const Handler& handler) {
  CallScope call(serving, context, method, static_cast<int64_t>(request.ByteSizeLong()));
  absl::Status status = call.Begin();
  if (status.ok()) status = handler();
  return call.End(status, status.ok() ? static_cast<int64_t>(response->ByteSizeLong()) : 0);
}

// The answer to request bytes that do not parse as `type`: INVALID_ARGUMENT naming the type, with
// the metrics and the log line of any call. (gRPC's generated handlers answer INTERNAL with no
// message and call nothing of ours, so such calls were neither counted nor logged.)
grpc::Status RefuseUnparsed(Serving& serving, grpc::ServerContext* context, const Method& method, int64_t bytes,
                            const std::string& type);
// Records a call whose request never arrived: gRPC refused it as larger than --max_message_bytes
// (the client sees RESOURCE_EXHAUSTED, which is what the metrics count), or the client
// cancelled while sending it. The returned status reaches nobody: the call is over.
grpc::Status RecordUnreceived(Serving& serving, grpc::ServerContext* context, const Method& method);

// Serve for a method whose handler gets the request's wire bytes (RegisterPooled below; the
// same unary call on the wire): the request is parsed into a message leased from `pool`
// (message_pool.h says why), served as above with handler(request, response), and the response
// serialized from the leased message, its tensor's bytes referenced rather than copied.
template <typename Request, typename Response, typename Handler>
grpc::Status ServePooled(Serving& serving, grpc::ServerContext* context, const Method& method,
                         grpc::ServerUnaryStreamer<grpc::ByteBuffer, grpc::ByteBuffer>* stream,
                         MessagePool<Request, Response>& pool, const Handler& handler) {
  grpc::ByteBuffer wire;
  if (!stream->Read(&wire)) return RecordUnreceived(serving, context, method);
  typename MessagePool<Request, Response>::Lease lease = pool.Acquire();
  const auto bytes = static_cast<int64_t>(wire.Length());
  if (!lease.Parse(wire)) return RefuseUnparsed(serving, context, method, bytes, Request::descriptor()->full_name());
  wire.Clear();  // The parsed copy is all the call needs; free the received slices now.
  Request& request = lease.request();
  Response& response = lease.response();
  grpc::Status status = Serve(serving, context, method, request, &response, [&] { return handler(request, &response); });
  if (!status.ok()) return status;
  // The response's tensor bytes go out without a copy; the lease stays with them until sent.
  status = std::move(lease).SerializeResponse(&wire);
  if (status.ok() && !stream->Write(wire)) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the response could not be sent (the call ended)");
  }
  return status;
}

// For a service constructor: MarkMethodStreamed(MethodIndex(...), PooledHandler(...)) routes a
// method's calls to a ServePooled member. The index is the method's position in its proto
// service, the order the generated code registers methods in.
using PooledStream = grpc::ServerUnaryStreamer<grpc::ByteBuffer, grpc::ByteBuffer>;
int MethodIndex(const std::string& service_full_name, const std::string& method);
template <typename Function>
grpc::internal::MethodHandler* PooledHandler(Function function) {
  return new grpc::internal::StreamedUnaryHandler<grpc::ByteBuffer, grpc::ByteBuffer>(std::move(function));
}

// A unary method whose request is parsed by us rather than by gRPC's generated handler (see
// RefuseUnparsed), then served by `method`, the service's override of the generated method, as
// the generated handler would. `full_name` is "package.Service/Method".
template <typename ServiceType, typename Request, typename Response>
grpc::internal::MethodHandler* ParsingHandler(
    Serving& serving, ServiceType* service, std::string full_name,
    grpc::Status (ServiceType::*method)(grpc::ServerContext*, const Request*, Response*)) {
  return new grpc::internal::StreamedUnaryHandler<grpc::ByteBuffer, grpc::ByteBuffer>(
      [&serving, service, method, full_name = std::move(full_name)](grpc::ServerContext* context, PooledStream* stream) {
        grpc::ByteBuffer wire;
        if (!stream->Read(&wire)) return RecordUnreceived(serving, context, {full_name.c_str(), false});
        const auto bytes = static_cast<int64_t>(wire.Length());
        Request request;
        if (!grpc::SerializationTraits<Request>::Deserialize(&wire, &request).ok()) {
          return RefuseUnparsed(serving, context, {full_name.c_str(), false}, bytes, Request::descriptor()->full_name());
        }
        Response response;
        grpc::Status status = (service->*method)(context, &request, &response);
        if (!status.ok()) return status;
        bool own_buffer = false;
        status = grpc::SerializationTraits<Response>::Serialize(response, &wire, &own_buffer);
        if (status.ok() && !stream->Write(wire)) {
          return grpc::Status(grpc::StatusCode::CANCELLED, "the response could not be sent (the call ended)");
        }
        return status;
      });
}

// The base of our service classes: `Generated` is a generated service (v1::Attention), whose
// Service the class implements. A constructor calls ParseRequests(serving, "Method", &Class::Method)
// for each unary method it overrides, so that its requests go through ParsingHandler.
template <typename Generated>
class ParsedService : public Generated::Service {
 protected:
  template <typename Self, typename Request, typename Response>
  void ParseRequests(Serving& serving, const char* name,
                     grpc::Status (Self::*method)(grpc::ServerContext*, const Request*, Response*)) {
    this->MarkMethodStreamed(
        MethodIndex(Generated::service_full_name(), name),
        ParsingHandler(serving, static_cast<Self*>(this), std::string(Generated::service_full_name()) + "/" + name,
                       method));
  }
};

// The same for a client-streaming method read as wire bytes (a raw stream; the handler parses
// each message and writes the one response): ServerReader<Message>::Read returns false for a
// message that does not parse as for the end of the stream, so a bad message in the middle of
// a stream would end it, unnoticed.
using RawStream = grpc::ServerReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>;
template <typename Function>
grpc::internal::MethodHandler* RawStreamHandler(Function function) {
  return new grpc::internal::TemplatedBidiStreamingHandler<RawStream, false>(std::move(function));
}

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_SERVING_H_
