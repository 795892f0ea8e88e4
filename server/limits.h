// Per-server limits every handler enforces before it allocates.
#ifndef PRIMSERVE_SERVER_LIMITS_H_
#define PRIMSERVE_SERVER_LIMITS_H_

#include <cstdint>

#include "core/tensor.h"

namespace primserve {

struct Limits {
  // Elements in any one input or output tensor: a float32 response must fit in one message.
  int64_t max_elements = kDefaultMaxElements;

  static Limits ForMessageBytes(int64_t max_message_bytes) {
    Limits limits;
    limits.max_elements = max_message_bytes / static_cast<int64_t>(sizeof(float));
    return limits;
  }
};

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_LIMITS_H_
