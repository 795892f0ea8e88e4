// Internals shared by the logistic-regression sources (not part of the public API): input
// validation, and a static, deterministic split of row blocks over threads, each thread with
// its own oneDNN stream and scratchpad.
#ifndef PRIMSERVE_CORE_LOGISTIC_INTERNAL_H_
#define PRIMSERVE_CORE_LOGISTIC_INTERNAL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/tensor.h"
#include "core/tile_matmul.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace primserve {
namespace logistic_internal {

// Rows per block of the one-pass kernels. A block of centred float32 rows is the A and B of one
// oneDNN matmul whose float32 result is added to a double accumulator, so this bounds the
// float32 accumulation length (error ~ sqrt(kBlockRows) * 2^-24 relative, worst case
// kBlockRows * 2^-24) while keeping each matmul large enough to run near peak.
inline constexpr int64_t kBlockRows = 256;

struct LabelledShape {
  int64_t num_samples = 0;
  int64_t dim = 0;
  int64_t num_classes = 0;  // resolved: the given value, or max label + 1 (0 when N = 0)
};

// features rank 2 with dim >= 1, labels.size() == N, labels in [0, K) (K inferred when
// `num_classes` is 0), num_classes >= 0, features finite. INVALID_ARGUMENT naming the field.
absl::StatusOr<LabelledShape> ValidateLabelledFeatures(const Tensor& features,
                                                       absl::Span<const int64_t> labels,
                                                       int64_t num_classes);

// Per-thread oneDNN working set.
struct ThreadContext {
  dnnl::stream stream;
  std::vector<char> scratchpad;
  void* Scratch(const TileMatmul& matmul);
};

// Calls body(thread, block) for every block in [0, num_blocks): thread t of T handles the
// contiguous range [num_blocks * t / T, num_blocks * (t + 1) / T) in order, so per-thread
// partial sums reduced in thread order are deterministic for a given thread count. T =
// min(ComputeThreads(), num_blocks). Inside the parallel region each oneDNN primitive runs on
// its calling thread. `contexts` gets T entries (streams created here). Exceptions from oneDNN
// become statuses; the first error (by thread) is returned and the other threads stop early.
absl::Status ForEachBlock(int64_t num_blocks, std::vector<ThreadContext>* contexts,
                          const std::function<absl::Status(int thread, int64_t block)>& body);

// How many threads ForEachBlock will use for `num_blocks`.
int BlockThreads(int64_t num_blocks);

}  // namespace logistic_internal
}  // namespace primserve

#endif  // PRIMSERVE_CORE_LOGISTIC_INTERNAL_H_
