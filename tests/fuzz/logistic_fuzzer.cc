// LogisticRegression service: request bytes -> Fit / FitStream / ComputeStatistics /
// FitFromStatistics / Predict request(s) -> handler, against a model store seeded with a
// logistic model "iris" and a discriminator "disc" (restored after every input).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/logistic_handlers.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/seed_models.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace primserve;
  fuzz::InitOnce();
  static fuzz::SeededStore* store = new fuzz::SeededStore(fuzz::SeedModels());
  const fuzz::FuzzInput input(data, size);
  const Limits limits = fuzz::FuzzLimits();
  switch (input.Select(5)) {
    case 0: {
      v1::FitRequest request;
      v1::FitResponse response;
      // The solver's work is bounded by max_iterations (<= 10,000) and, in the server, by the
      // call's deadline; a 10,000-iteration fit that never converges takes ~30 s under this
      // build's instrumentation, so the input gets a 1 s deadline, as a client would set.
      const absl::Time deadline = absl::Now() + absl::Seconds(1);
      if (input.Parse(&request)) {
        (void)HandleFit(limits, store->get(), request, &response, [deadline] { return absl::Now() > deadline; });
      }
      break;
    }
    case 1: {
      // A stream of up to 8 messages; one that does not parse breaks the stream off the way a
      // failed read does (the handler must then store nothing).
      const std::vector<absl::string_view> messages = fuzz::SplitMessages(input.payload(), 8);
      size_t next = 0;
      const FitMessageReader read = [&](v1::FitRequest* message) -> absl::StatusOr<bool> {
        if (next == messages.size()) return false;
        const absl::string_view bytes = messages[next++];
        message->Clear();
        if (!message->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
          return absl::CancelledError("the stream broke off");
        }
        return true;
      };
      v1::FitResponse response;
      (void)HandleFitStream(limits, store->get(), read, &response, [] { return false; });
      break;
    }
    case 2: {
      v1::ComputeStatisticsRequest request;
      v1::ComputeStatisticsResponse response;
      if (input.Parse(&request)) (void)HandleComputeStatistics(limits, request, &response);
      break;
    }
    case 3: {
      v1::FitFromStatisticsRequest request;
      v1::FitFromStatisticsResponse response;
      if (input.Parse(&request)) (void)HandleFitFromStatistics(limits, store->get(), request, &response);
      break;
    }
    default: {
      v1::PredictRequest request;
      v1::PredictResponse response;
      if (input.Parse(&request)) (void)HandlePredict(limits, store->get(), request, &response);
      break;
    }
  }
  store->Reset();
  return 0;
}
