// The one mapping from absl::Status (what core and handlers return) to grpc::Status (what goes
// on the wire). Every absl code maps to the gRPC code of the same number, spelled out in one
// explicit switch; messages are truncated to 1 KiB so a bad request cannot echo megabytes.
#ifndef PRIMSERVE_SERVER_STATUS_MAPPING_H_
#define PRIMSERVE_SERVER_STATUS_MAPPING_H_

#include <cstddef>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace primserve {

inline constexpr size_t kMaxStatusMessageBytes = 1024;

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_STATUS_MAPPING_H_
