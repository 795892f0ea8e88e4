#include "server/allocator.h"

#include <dlfcn.h>

#include <cstddef>

#include "absl/strings/str_cat.h"

namespace primserve {

std::string DescribeAllocator() {
  // Looked up at run time: the server library does not know whether the executable linking it
  // brought jemalloc in, and a sanitizer's malloc would make a link-time answer wrong.
  using MallctlFn = int (*)(const char*, void*, size_t*, void*, size_t);
  auto mallctl = reinterpret_cast<MallctlFn>(dlsym(RTLD_DEFAULT, "mallctl"));
  if (mallctl == nullptr) return "glibc malloc";
  const char* version = nullptr;
  size_t size = sizeof version;
  if (mallctl("version", &version, &size, nullptr, 0) != 0 || version == nullptr) return "jemalloc";
  const char* thp = nullptr;
  size = sizeof thp;
  if (mallctl("opt.thp", &thp, &size, nullptr, 0) != 0 || thp == nullptr) thp = "unknown";
  return absl::StrCat("jemalloc ", version, " (thp ", thp, ")");
}

}  // namespace primserve
