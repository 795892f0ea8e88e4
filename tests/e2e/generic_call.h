// One unary call through a generic stub: a serialized request to any method path, e.g. a path
// the server does not serve, or bytes no generated stub would send.
#ifndef PRIMSERVE_TESTS_E2E_GENERIC_CALL_H_
#define PRIMSERVE_TESTS_E2E_GENERIC_CALL_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"

namespace primserve {
namespace testing {

// Calls `method` (e.g. "/primserve.v1.Attention/Attend") with `request`; on OK, stores the
// serialized reply in `response` when given.
inline grpc::Status GenericCall(grpc::GenericStub& stub, const std::string& method, const std::string& request,
                                std::string* response = nullptr) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  grpc::CompletionQueue cq;
  grpc::Slice slice(request);
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> call =
      stub.PrepareUnaryCall(&context, method, grpc::ByteBuffer(&slice, 1), &cq);
  call->StartCall();
  grpc::ByteBuffer response_buffer;
  grpc::Status status;
  call->Finish(&response_buffer, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  cq.Next(&tag, &ok);
  if (response != nullptr && status.ok()) {
    std::vector<grpc::Slice> slices;
    (void)response_buffer.Dump(&slices);
    response->clear();
    for (const grpc::Slice& s : slices) response->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return status;
}

}  // namespace testing
}  // namespace primserve

#endif  // PRIMSERVE_TESTS_E2E_GENERIC_CALL_H_
