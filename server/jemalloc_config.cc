// jemalloc's options, read by jemalloc at its first allocation; linked only into executables
// built with PRIMSERVE_JEMALLOC (primserve-server, primserve-load). The MALLOC_CONF environment
// variable still overrides each option. Why jemalloc: server/allocator.h.
//
// thp:always   back jemalloc's extents with transparent huge pages (madvise(MADV_HUGEPAGE)), so
//              a fresh 64 MiB tensor buffer costs 32 page faults, not 16384. Works with the
//              kernel's THP mode "madvise" (Debian's default) or "always"; a no-op with "never".
// Freed memory goes back to the kernel after jemalloc's default decay (10 s), so an idle
// server's resident memory still falls back after a burst of large calls.
extern "C" {
// NOLINTNEXTLINE: the name and type are jemalloc's interface.
const char* malloc_conf = "thp:always";
}
