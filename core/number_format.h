// Numbers in error messages: absl::StrCat prints a double with six significant digits, so a
// refused keep_probability of 1.0000001 read "got 1". NumberToString gives the shortest text that
// reads back as the same double (std::to_chars), so a message shows the value that was refused;
// whole numbers below 2^53 (counts, byte sizes) are written out in full: 20000000, not 2e+07.
#ifndef PRIMSERVE_CORE_NUMBER_FORMAT_H_
#define PRIMSERVE_CORE_NUMBER_FORMAT_H_

#include <charconv>
#include <cmath>
#include <string>

namespace primserve {

inline std::string NumberToString(double value) {
  char buffer[32];  // The longest: "-2.2250738585072014e-308" (24), or 16 digits and a sign.
  const bool whole = value == std::trunc(value) && std::fabs(value) < 9007199254740992.0;  // 2^53.
  const std::to_chars_result result =
      whole ? std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::fixed)
            : std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

}  // namespace primserve

#endif  // PRIMSERVE_CORE_NUMBER_FORMAT_H_
