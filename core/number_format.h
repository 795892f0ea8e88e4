// Numbers in error messages: absl::StrCat prints a double with six significant digits, so a
// refused keep_probability of 1.0000001 read "got 1". NumberToString gives the shortest text that
// reads back as the same double (std::to_chars), so a message shows the value that was refused.
#ifndef PRIMSERVE_CORE_NUMBER_FORMAT_H_
#define PRIMSERVE_CORE_NUMBER_FORMAT_H_

#include <charconv>
#include <string>

namespace primserve {

inline std::string NumberToString(double value) {
  char buffer[32];  // The longest shortest form: "-2.2250738585072014e-308" (24 characters).
  const std::to_chars_result result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

}  // namespace primserve

#endif  // PRIMSERVE_CORE_NUMBER_FORMAT_H_
