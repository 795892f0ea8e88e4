// Toolkit service: request bytes -> EmbeddingDimension / InitializeParameters / ChildTuningMask
// request -> handler.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_util.h"
#include "server/toolkit_handlers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace primserve;
  fuzz::InitOnce();
  const fuzz::FuzzInput input(data, size);
  const Limits limits = fuzz::FuzzLimits();
  switch (input.Select(3)) {
    case 0: {
      v1::EmbeddingDimensionRequest request;
      v1::EmbeddingDimensionResponse response;
      if (input.Parse(&request)) (void)HandleEmbeddingDimension(request, &response);
      break;
    }
    case 1: {
      v1::InitializeParametersRequest request;
      v1::InitializeParametersResponse response;
      if (input.Parse(&request)) (void)HandleInitializeParameters(limits, request, &response, [] { return false; });
      break;
    }
    default: {
      v1::ChildTuningMaskRequest request;
      v1::ChildTuningMaskResponse response;
      if (input.Parse(&request)) (void)HandleChildTuningMask(limits, request, &response, [] { return false; });
      break;
    }
  }
  return 0;
}
