// Attention service: request bytes -> AttendRequest / EstimateCostRequest -> handler.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_util.h"
#include "server/attention_handlers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace primserve;
  fuzz::InitOnce();
  const fuzz::FuzzInput input(data, size);
  const Limits limits = fuzz::FuzzLimits();
  switch (input.Select(2)) {
    case 0: {
      v1::AttendRequest request;
      v1::AttendResponse response;
      // The cancellation hook is polled between tiles; never cancelling keeps the whole path.
      if (input.Parse(&request)) (void)HandleAttend(limits, request, &response, [] { return false; });
      break;
    }
    default: {
      v1::EstimateCostRequest request;
      v1::EstimateCostResponse response;
      if (input.Parse(&request)) (void)HandleEstimateCost(request, &response);
      break;
    }
  }
  return 0;
}
