// Philox4x32-10, the counter-based generator of Salmon, Moraes, Dror and Shaw, "Parallel random
// numbers: as easy as 1, 2, 3" (SC 2011), as in their Random123 library (also TensorFlow's and
// cuRAND's Philox). Output i is a pure function of (counter, key): any element of a stream can be
// computed independently, on any thread, with the same result on every machine (integer
// arithmetic only).
//
// Example:
//   PhiloxWords words = Philox4x32({j, block_lo, block_hi, stream}, {seed_lo, seed_hi});
#ifndef PRIMSERVE_CORE_PHILOX_H_
#define PRIMSERVE_CORE_PHILOX_H_

#include <array>
#include <cstdint>

namespace primserve {

using PhiloxWords = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

// Multipliers and Weyl key increments from the paper (section 3.3).
inline constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
inline constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
inline constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // The golden ratio, 2^32 (sqrt(5) - 1) / 2.
inline constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // 2^32 (sqrt(3) - 1).
inline constexpr int kPhiloxRounds = 10;

// The ten-round bijection of `counter` under `key` (Random123's philox4x32_R(10, ...)): each
// round multiplies words 0 and 2, mixes the halves of the products into the other words with
// the round key, and the key advances by (W0, W1) between rounds.
inline PhiloxWords Philox4x32(PhiloxWords counter, PhiloxKey key) {
  for (int round = 0; round < kPhiloxRounds; ++round) {
    if (round > 0) {
      key[0] += kPhiloxW0;
      key[1] += kPhiloxW1;
    }
    const uint64_t p0 = uint64_t{kPhiloxM0} * counter[0];
    const uint64_t p1 = uint64_t{kPhiloxM1} * counter[2];
    counter = {static_cast<uint32_t>(p1 >> 32) ^ counter[1] ^ key[0], static_cast<uint32_t>(p1),
               static_cast<uint32_t>(p0 >> 32) ^ counter[3] ^ key[1], static_cast<uint32_t>(p0)};
  }
  return counter;
}

}  // namespace primserve

#endif  // PRIMSERVE_CORE_PHILOX_H_
