// Which malloc this process runs on, for the startup log line.
//
// primserve-server and primserve-load link jemalloc (server/jemalloc_config.cc sets its options)
// when built with PRIMSERVE_JEMALLOC (the default). The reason is the cost of fresh memory: a
// call carrying a 64 MiB tensor allocates several 64 MiB buffers (the request's bytes, gRPC's
// slices, the response's bytes). glibc serves each from a new mmap and unmaps it on free, so
// every call faults in 16384 fresh 4 KiB pages per buffer. jemalloc keeps freed extents for
// reuse and backs them with transparent huge pages (thp:always), so a fault brings in 2 MiB.
// How much it buys depends on what a page fault costs the machine: on a PVM guest (~10 us per
// fault) a 64 MiB Echo went from 0.13 to 0.65-0.75 GB/s; on a Firecracker guest glibc and
// jemalloc were within the run-to-run noise (0.40-0.73 GB/s both). bench/report.md has the
// before and after of its own run (AB_SERVERS).
#ifndef PRIMSERVE_SERVER_ALLOCATOR_H_
#define PRIMSERVE_SERVER_ALLOCATOR_H_

#include <optional>
#include <string>

namespace primserve {

// "jemalloc 5.3.0-0-g54eaed1d (thp always)" when jemalloc is this process's malloc, else
// "glibc malloc" (sanitizer builds, PRIMSERVE_JEMALLOC=OFF, or an embedding program).
std::string DescribeAllocator();

// Bytes in live heap allocations, as this process's allocator counts them: a sanitizer runtime's
// __sanitizer_get_current_allocated_bytes, jemalloc's stats.allocated, or glibc's mallinfo2
// (in-use arena bytes plus mmapped chunks). Unlike the resident set, it does not include freed
// memory the allocator keeps for reuse (pages not yet returned to the kernel), so it is the
// number a leak check should watch. Small blocks parked in per-thread caches still count as
// allocated (a bounded amount per thread).
// nullopt if the allocator cannot say.
std::optional<double> HeapAllocatedBytes();

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_ALLOCATOR_H_
