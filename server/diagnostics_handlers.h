// Diagnostics handlers: calls that measure the service itself, with no compute.
//
// Echo is the transport baseline of the end-to-end benchmark (bench/load_generator.cc): it pays
// what every tensor call pays (parsing, admission, metrics, one copy of the payload into the
// response, serialization) and nothing else, so an RPC's time over Echo's with the same payload
// is the cost of its compute.
//
// Example:
//   v1::EchoResponse response;
//   RETURN_IF_ERROR(HandleEcho(limits, request, &response));  // response.output() == request.input()
#ifndef PRIMSERVE_SERVER_DIAGNOSTICS_HANDLERS_H_
#define PRIMSERVE_SERVER_DIAGNOSTICS_HANDLERS_H_

#include "absl/status/status.h"
#include "primserve/v1/diagnostics.pb.h"
#include "server/limits.h"

namespace primserve {

// Copies `input` to `output` unchanged (shape, dtype and elements are not validated: the echo
// carries whatever it is sent). RESOURCE_EXHAUSTED when the payload (data bytes plus 4 bytes
// per value) exceeds limits.max_elements float32 elements, i.e. the message limit.
absl::Status HandleEcho(const Limits& limits, const v1::EchoRequest& request, v1::EchoResponse* response);

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_DIAGNOSTICS_HANDLERS_H_
