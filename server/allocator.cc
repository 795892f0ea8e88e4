#include "server/allocator.h"

#include <dlfcn.h>
#include <malloc.h>

#include <cstddef>
#include <cstdint>

#include "absl/strings/str_cat.h"

namespace primserve {
namespace {

using MallctlFn = int (*)(const char*, void*, size_t*, void*, size_t);

MallctlFn FindMallctl() { return reinterpret_cast<MallctlFn>(dlsym(RTLD_DEFAULT, "mallctl")); }

}  // namespace

std::string DescribeAllocator() {
  // Looked up at run time: the server library does not know whether the executable linking it
  // brought jemalloc in, and a sanitizer's malloc would make a link-time answer wrong.
  const MallctlFn mallctl = FindMallctl();
  if (mallctl == nullptr) return "glibc malloc";
  const char* version = nullptr;
  size_t size = sizeof version;
  if (mallctl("version", &version, &size, nullptr, 0) != 0 || version == nullptr) return "jemalloc";
  const char* thp = nullptr;
  size = sizeof thp;
  if (mallctl("opt.thp", &thp, &size, nullptr, 0) != 0 || thp == nullptr) thp = "unknown";
  return absl::StrCat("jemalloc ", version, " (thp ", thp, ")");
}

std::optional<double> HeapAllocatedBytes() {
  // All three looked up at run time, for the reason above; the sanitizer first, because it
  // replaces malloc while glibc's mallinfo2 would still answer (about glibc's idle arenas).
  using SanitizerAllocatedFn = size_t (*)();
  if (auto sanitizer = reinterpret_cast<SanitizerAllocatedFn>(
          dlsym(RTLD_DEFAULT, "__sanitizer_get_current_allocated_bytes"))) {
    return static_cast<double>(sanitizer());
  }
  if (const MallctlFn mallctl = FindMallctl()) {
    // jemalloc's statistics are a snapshot, refreshed by writing to "epoch".
    uint64_t epoch = 1;
    size_t size = sizeof epoch;
    size_t allocated = 0;
    size_t allocated_size = sizeof allocated;
    if (mallctl("epoch", &epoch, &size, &epoch, size) != 0 ||
        mallctl("stats.allocated", &allocated, &allocated_size, nullptr, 0) != 0) {
      return std::nullopt;  // jemalloc built without statistics.
    }
    return static_cast<double>(allocated);
  }
  const struct mallinfo2 info = mallinfo2();
  return static_cast<double>(info.uordblks + info.hblkhd);
}

}  // namespace primserve
