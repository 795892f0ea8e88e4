// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum of model files (the same
// CRC as iSCSI, ext4 metadata, LevelDB and TFRecord). Table-driven, one byte per step: model
// files are small, and this runs once per store and load.
//
// Example:
//   uint32_t crc = Crc32c("123456789");                 // 0xE3069283
//   uint32_t same = Crc32cExtend(Crc32c("1234"), "56789");
#ifndef PRIMSERVE_SERVER_CRC32C_H_
#define PRIMSERVE_SERVER_CRC32C_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace primserve {

// The CRC-32C of `crc`'s data followed by `data` (start with 0 for none).
uint32_t Crc32cExtend(uint32_t crc, absl::string_view data);

inline uint32_t Crc32c(absl::string_view data) { return Crc32cExtend(0, data); }

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_CRC32C_H_
