// The process-wide oneDNN CPU engine and stream, and the mapping of oneDNN exceptions onto
// absl::Status at the core boundary (invalid_arguments -> INVALID_ARGUMENT, out_of_memory ->
// RESOURCE_EXHAUSTED, anything else -> INTERNAL).
//
// Example:
//   dnnl::engine& engine = DnnlEngine();
//   absl::Status status = RunDnnl("matmul", [&] { matmul_prim.execute(stream, args); });
#ifndef PRIMSERVE_CORE_DNNL_CONTEXT_H_
#define PRIMSERVE_CORE_DNNL_CONTEXT_H_

#include <exception>
#include <functional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace primserve {

// One CPU engine per process (created on first use, thread-safe).
dnnl::engine& DnnlEngine();

// The best instruction set oneDNN uses on this CPU, e.g. "avx2" or "avx512_core_bf16".
std::string DnnlIsaName();

// "oneDNN 2.6.3 (cpu runtime: OpenMP, ISA: ...)" for start-up logs and build info.
std::string DnnlVersionString();

// Maps a caught oneDNN error to a status whose message starts with `what`.
absl::Status DnnlErrorToStatus(const dnnl::error& error, absl::string_view what);

// Runs `fn`, turning any oneDNN or allocation exception into a status.
absl::Status RunDnnl(absl::string_view what, const std::function<void()>& fn);

}  // namespace primserve

#endif  // PRIMSERVE_CORE_DNNL_CONTEXT_H_
