// Scraping a server's Prometheus /metrics in end-to-end tests.
#ifndef PRIMSERVE_TESTS_E2E_METRICS_SCRAPE_H_
#define PRIMSERVE_TESTS_E2E_METRICS_SCRAPE_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace primserve {
namespace testing {

// Under AddressSanitizer (scripts/sanitize.sh asan builds the server and the tests alike) freed
// memory sits in ASan's quarantine and kernels run many times slower: resident-memory bounds
// mean nothing there (LeakSanitizer checks leaks instead) and compute-heavy jobs are made smaller.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif

// GET http://127.0.0.1:<port><path>: the whole response (status line, headers, body), or "".
inline std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      ssize_t n;
      while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, static_cast<size_t>(n));
    }
  }
  close(fd);
  return response;
}

// The value of the sample `series` (its name and labels exactly as exposed), or -1.
inline double Sample(const std::string& text, const std::string& series) {
  const std::string prefix = series + " ";
  size_t at = 0;
  while ((at = text.find(prefix, at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') return std::stod(text.substr(at + prefix.size()));
    at += prefix.size();
  }
  return -1;
}

// The series name of primserve_requests_total for e.g. ("Attention/Attend", "OK").
inline std::string RequestsSeries(const std::string& method, const std::string& code) {
  return absl::StrCat("primserve_requests_total{code=\"", code, "\",method=\"primserve.v1.", method, "\"}");
}

}  // namespace testing
}  // namespace primserve

#endif  // PRIMSERVE_TESTS_E2E_METRICS_SCRAPE_H_
