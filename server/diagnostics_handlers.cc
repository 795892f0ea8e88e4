#include "server/diagnostics_handlers.h"

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace primserve {

absl::Status HandleEcho(const Limits& limits, const v1::EchoRequest& request, v1::EchoResponse* response) {
  const v1::Tensor& input = request.input();
  const int64_t payload_bytes =
      static_cast<int64_t>(input.data().size()) + int64_t{4} * static_cast<int64_t>(input.values_size());
  const int64_t max_bytes = limits.max_elements * int64_t{4};
  if (payload_bytes > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("input: expected at most ", max_bytes,
                                                     " payload bytes (the message limit less the response envelope), got ", payload_bytes));
  }
  // One copy of the payload, as every call that returns a tensor makes at least one write of it.
  *response->mutable_output() = input;
  return absl::OkStatus();
}

}  // namespace primserve
