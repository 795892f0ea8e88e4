// jemalloc's options, read by jemalloc at its first allocation; linked only into executables
// built with PRIMSERVE_JEMALLOC (primserve-server, primserve-load). The MALLOC_CONF environment
// variable still overrides each option. Why jemalloc: server/allocator.h.
//
// thp:always               back jemalloc's extents with transparent huge pages
//                          (madvise(MADV_HUGEPAGE)), so a fresh 64 MiB tensor buffer costs 32
//                          page faults, not 16384. Works with the kernel's THP mode "madvise"
//                          (Debian's default) or "always"; a no-op with "never".
// oversize_threshold:0     no separate arena for allocations >= 8 MiB: that arena returns freed
//                          pages to the kernel at once, so every large tensor was faulted in
//                          (and zeroed by the kernel) afresh on each call; in the normal arenas
//                          they are reused within the decay time.
// background_thread:true   purging by jemalloc's own thread, on time: an idle server's
//                          resident memory falls back after a burst of large calls (default
//                          decay 10 s) instead of waiting for its next allocation.
extern "C" {
// NOLINTNEXTLINE: the name and type are jemalloc's interface.
const char* malloc_conf = "thp:always,oversize_threshold:0,background_thread:true";
}
