// PositionEncoding service: request bytes -> SinusoidalRequest / ApplyRopeRequest -> handler.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_util.h"
#include "server/position_encoding_handlers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace primserve;
  fuzz::InitOnce();
  const fuzz::FuzzInput input(data, size);
  const Limits limits = fuzz::FuzzLimits();
  switch (input.Select(2)) {
    case 0: {
      v1::SinusoidalRequest request;
      v1::SinusoidalResponse response;
      if (input.Parse(&request)) (void)HandleSinusoidal(limits, request, &response);
      break;
    }
    default: {
      v1::ApplyRopeRequest request;
      v1::ApplyRopeResponse response;
      if (input.Parse(&request)) (void)HandleApplyRope(limits, request, &response);
      break;
    }
  }
  return 0;
}
