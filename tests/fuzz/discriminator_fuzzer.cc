// Discriminator service: request bytes -> Register / Score / Losses request -> handler, with a
// compiled-network cache kept across inputs (as the server keeps one) and a model store seeded
// with a discriminator "disc" and a logistic model "iris" (restored after every input).
#include <cstddef>
#include <cstdint>

#include "server/discriminator_cache.h"
#include "server/discriminator_handlers.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/seed_models.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace primserve;
  fuzz::InitOnce();
  static fuzz::SeededStore* store = new fuzz::SeededStore(fuzz::SeedModels());
  static DiscriminatorCache* cache = new DiscriminatorCache();
  const fuzz::FuzzInput input(data, size);
  const Limits limits = fuzz::FuzzLimits();
  switch (input.Select(3)) {
    case 0: {
      v1::RegisterRequest request;
      v1::RegisterResponse response;
      if (input.Parse(&request)) (void)HandleRegister(limits, store->get(), request, &response);
      break;
    }
    case 1: {
      v1::ScoreRequest request;
      v1::ScoreResponse response;
      if (input.Parse(&request)) {
        (void)HandleScore(limits, store->get(), cache, request, &response, [] { return false; });
      }
      break;
    }
    default: {
      v1::LossesRequest request;
      v1::LossesResponse response;
      if (input.Parse(&request)) {
        (void)HandleLosses(limits, store->get(), cache, request, &response, [] { return false; });
      }
      break;
    }
  }
  store->Reset();
  return 0;
}
