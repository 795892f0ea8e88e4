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
// lg_extent_max_active_fit:20
//                          reuse freed memory for any smaller request. gRPC reads a message into
//                          64 KiB slices (about a thousand per 64 MiB), freed together after the
//                          parse; jemalloc merges them into one free extent and, by default,
//                          splits no free extent over 64x the request, so the next call's
//                          slices came from fresh memory each time (measured: resident memory
//                          +230 MB/s without purging; with purging, ~600 page faults per call
//                          in the server and half of both processes' CPU in the kernel zeroing
//                          pages). 2^20x lifts the limit for any tensor the server accepts.
// dirty_decay_ms:60000     how long freed pages stay before going back to the kernel: jemalloc
//                          purges along a smoothed rate of recent frees, and with 10 s (its
//                          default) it still purged, then faulted in again, part of what
//                          back-to-back 64 MiB calls reuse every ~100 ms. An idle server's
//                          resident memory falls back within the minute after a burst.
// background_thread:true   purging by jemalloc's own thread, on time: an idle server's
//                          resident memory falls back without waiting for its next allocation.
// narenas:1                (primserve-server only) one arena for every thread (small
//                          allocations still come from each thread's cache). With jemalloc's
//                          default of 4 per core, successive large calls ran on gRPC threads
//                          bound to different arenas, and each arena kept its own freed tensors
//                          for dirty_decay_ms instead of the next call reusing them: L = 16384
//                          Attend calls (96 MiB request) took the server from 456 to 1290 MiB
//                          over five calls; with one arena it stays at 377-394 MiB, and 64 MiB
//                          ApplyRope peaks at 405 MiB, not 640-760, at the same GB/s (3
//                          alternating rounds; small calls at 8 clients unchanged within noise).
//                          The load generator keeps the default: one arena there cost 10-15% of
//                          its 64 MiB throughput, and its memory is no target.
//
// lg_extent_max_active_fit and dirty_decay_ms, measured together on 64 MiB ApplyRope (bench/report.md, "Transport: before and
// after"): server page faults per call ~600 -> ~5, 0.66-0.78 -> 1.25-1.57 GB/s.
extern "C" {
// NOLINTNEXTLINE: the name and type are jemalloc's interface.
const char* malloc_conf =
    "thp:always,oversize_threshold:0,lg_extent_max_active_fit:20,dirty_decay_ms:60000,background_thread:true"
#ifdef PRIMSERVE_JEMALLOC_ONE_ARENA
    ",narenas:1"
#endif
    ;
}
