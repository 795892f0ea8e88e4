// Discriminator handlers: request proto -> core/discriminator.h -> response proto, no network
// involved, so each is unit-testable directly. Statuses are those of the core (Score,
// DiscriminatorLosses, ValidateNetwork: messages name "network.layers[i] (Kind)" and the
// mismatch) plus, naming the field:
//   INVALID_ARGUMENT    a missing network / inputs, both or neither of model_name and network, an
//                       unknown enum value, an UNSPECIFIED activation kind, `epsilon` set with a
//                       normalization other than GRAN (or not > 0 with GRAN), a bad name
//   NOT_FOUND           model_name unknown
//   FAILED_PRECONDITION model_name holds another kind of model (or a stored network that no
//                       longer validates); Register over a name holding another kind
//   RESOURCE_EXHAUSTED  inputs or input_gradients above the per-message element limit
//   CANCELLED           the deadline passed or the call was cancelled (polled between chunks)
//   the model store's write statuses for Register (see server/model_store.h).
// Compiled networks come from `cache` (may be null: compile per call).
#ifndef PRIMSERVE_SERVER_DISCRIMINATOR_HANDLERS_H_
#define PRIMSERVE_SERVER_DISCRIMINATOR_HANDLERS_H_

#include <functional>

#include "absl/status/status.h"
#include "primserve/v1/discriminator.pb.h"
#include "server/discriminator_cache.h"
#include "server/limits.h"
#include "server/model_store.h"

namespace primserve {

// Validates the network, then stores it (kind MODEL_KIND_DISCRIMINATOR) under `name`; nothing
// is stored on any error. `store` must not be null.
absl::Status HandleRegister(const Limits& limits, ModelStore* store, const v1::RegisterRequest& request,
                            v1::RegisterResponse* response);

// `store` may be null only when requests carry inline networks. `cancelled` may be empty.
absl::Status HandleScore(const Limits& limits, const ModelStore* store, DiscriminatorCache* cache,
                         const v1::ScoreRequest& request, v1::ScoreResponse* response,
                         std::function<bool()> cancelled = nullptr);

absl::Status HandleLosses(const Limits& limits, const ModelStore* store, DiscriminatorCache* cache,
                          const v1::LossesRequest& request, v1::LossesResponse* response,
                          std::function<bool()> cancelled = nullptr);

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_DISCRIMINATOR_HANDLERS_H_
