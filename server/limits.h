// Per-server limits every handler enforces before it allocates.
#ifndef PRIMSERVE_SERVER_LIMITS_H_
#define PRIMSERVE_SERVER_LIMITS_H_

#include <algorithm>
#include <cstdint>

#include "core/tensor.h"

namespace primserve {

// Default cap on returned attention weights: 16M elements (64 MiB of float32).
inline constexpr int64_t kDefaultMaxWeightElements = int64_t{1} << 24;

struct Limits {
  // Elements in any one input or output tensor (and in Attend's output and weights together):
  // a float32 response must fit in one message.
  int64_t max_elements = kDefaultMaxElements;
  // Elements of Attend's `weights` ([batch, num_heads, q_len, k_len]) when return_weights is
  // set; RESOURCE_EXHAUSTED above it (--max_attention_weights, never above max_elements).
  int64_t max_weight_elements = kDefaultMaxWeightElements;

  // Bytes of a response that are not tensor data (field tags, lengths, shapes, scalars): a
  // tensor at max_elements, or Attend's output and weights together, fit the message with them.
  static constexpr int64_t kResponseEnvelopeBytes = 1024;

  static Limits ForMessageBytes(int64_t max_message_bytes,
                                int64_t max_weight_elements = kDefaultMaxWeightElements) {
    Limits limits;
    limits.max_elements =
        std::max<int64_t>(0, max_message_bytes - kResponseEnvelopeBytes) / static_cast<int64_t>(sizeof(float));
    limits.max_weight_elements = std::min(max_weight_elements, limits.max_elements);
    return limits;
  }
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_LIMITS_H_
