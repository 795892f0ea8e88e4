// Wire <-> core conversions of the Discriminator service: v1::Network <-> Network and the enums.
// Reading converts every tensor (sizes checked before copying, fields named with the layer
// index, e.g. "network.layers[2].dense.weight.data"), maps unset options to their defaults
// (Conv2d stride 0 -> 1; Activation alpha unset -> PyTorch's 0.01 for LEAKY_RELU, 1 for ELU),
// then runs the core's ValidateNetwork, whose messages are prefixed with the field
// ("network.layers[2] (Dense): weight is [16, 30], expected in = 32 ...").
//
// Example:
//   ASSIGN_OR_RETURN(Network network, NetworkFromProto(request.network(), "network", limits));
//   NetworkToProto(network, stored.mutable_discriminator());
#ifndef PRIMSERVE_SERVER_DISCRIMINATOR_CONVERSION_H_
#define PRIMSERVE_SERVER_DISCRIMINATOR_CONVERSION_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/discriminator.h"
#include "primserve/v1/discriminator.pb.h"
#include "server/limits.h"

namespace primserve {

inline constexpr double kDefaultLeakyReluSlope = 0.01;  // nn.LeakyReLU's negative_slope.
inline constexpr double kDefaultEluAlpha = 1.0;         // nn.ELU's alpha.
inline constexpr double kDefaultGranEpsilon = 1e-8;     // ScoreOptions' default.

// Every field explicit (stride, padding, alpha for LEAKY_RELU / ELU); tensors as raw float32.
void NetworkToProto(const Network& network, v1::Network* proto);

// INVALID_ARGUMENT naming `field` for a missing or malformed tensor, an unset layer, an unknown
// or UNSPECIFIED activation kind, or a network failing ValidateNetwork; RESOURCE_EXHAUSTED for
// a tensor above limits.max_elements or a per-sample activation above ValidateNetwork's cap.
absl::StatusOr<Network> NetworkFromProto(const v1::Network& proto, absl::string_view field, const Limits& limits);

// UNSPECIFIED means GRADIENT_NORM / HINGE; unknown values are INVALID_ARGUMENT naming `field`.
absl::StatusOr<Normalization> NormalizationFromProto(v1::Normalization normalization, absl::string_view field);
absl::StatusOr<LossKind> LossFromProto(v1::Loss loss, absl::string_view field);

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_DISCRIMINATOR_CONVERSION_H_
