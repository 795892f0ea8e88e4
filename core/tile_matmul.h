// TileMatmul: a oneDNN matmul primitive for one small GEMM shape, created once and reused by
// every tile of that shape (process-wide cache), executed on caller-owned buffers.
//
//   C[m, n] (+)= scale * A[m, k] * B[k, n]
// A is row-major with leading dimension lda. B is row-major [k, n] (ldb), or, with
// `b_transposed`, stored as rows of a [n, k] matrix (ldb) so that B = that^T (q k^T without a
// transpose copy). C is row-major (ldc); `accumulate` adds into C (a sum post-op).
//
// Thread safety: Get() is thread-safe; Execute() may run concurrently on different buffers,
// each caller passing its own stream and scratchpad (the primitive uses a user scratchpad).
// Called from inside an OpenMP parallel region, the primitive runs on the calling thread.
//
// Example:
//   ASSIGN_OR_RETURN(auto scores, TileMatmul::Get({.m = 64, .n = 256, .k = 64, ...}));
//   scores->Execute(stream, q, k, s, scratch.data());
#ifndef PRIMSERVE_CORE_TILE_MATMUL_H_
#define PRIMSERVE_CORE_TILE_MATMUL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace primserve {

struct MatmulShape {
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  bool a_transposed = false;  // A stored as rows of a [k, m] matrix (lda): A = that^T.
  bool b_transposed = false;
  bool accumulate = false;
  float scale = 1.0f;
  bool bf16 = false;  // A and B in bfloat16 (C stays float32).

  bool operator==(const MatmulShape& o) const {
    return m == o.m && n == o.n && k == o.k && lda == o.lda && ldb == o.ldb && ldc == o.ldc &&
           a_transposed == o.a_transposed && b_transposed == o.b_transposed && accumulate == o.accumulate && scale == o.scale && bf16 == o.bf16;
  }
  template <typename H>
  friend H AbslHashValue(H h, const MatmulShape& s) {
    return H::combine(std::move(h), s.m, s.n, s.k, s.lda, s.ldb, s.ldc, s.a_transposed, s.b_transposed, s.accumulate, s.scale,
                      s.bf16);
  }
};

class TileMatmul;

// The dnnl::memory arguments of one TileMatmul, built on the first Execute and re-pointed with
// set_data_handle afterwards: on tiles of a few microseconds, four dnnl::memory constructions
// and an argument map per call are a measurable share. Not thread-safe (one per thread), and
// the TileMatmul it was last used with must stay alive while it is (rebinding to another
// TileMatmul rebuilds it).
class TileMatmulArgs {
 private:
  friend class TileMatmul;
  const TileMatmul* bound_ = nullptr;
  dnnl::memory a_mem_, b_mem_, c_mem_, scratchpad_mem_;
  std::unordered_map<int, dnnl::memory> args_;
};

class TileMatmul {
 public:
  // The cached primitive for `shape`, created on first use. Errors: INVALID_ARGUMENT (bad
  // shape, or oneDNN cannot implement it), RESOURCE_EXHAUSTED (out of memory).
  static absl::StatusOr<std::shared_ptr<const TileMatmul>> Get(const MatmulShape& shape);

  // Executes on raw pointers (float32, or uint16_t bfloat16 bits for A and B when shape.bf16).
  void Execute(dnnl::stream& stream, const void* a, const void* b, float* c, void* scratchpad) const;
  // The same, reusing `args`' dnnl::memory objects (see TileMatmulArgs) for hot tile loops.
  void Execute(dnnl::stream& stream, TileMatmulArgs& args, const void* a, const void* b, float* c,
               void* scratchpad) const;

  const MatmulShape& shape() const { return shape_; }
  size_t scratchpad_bytes() const { return scratchpad_bytes_; }
  // oneDNN's implementation name, e.g. "gemm:jit" or "brg:avx512_core".
  const std::string& implementation() const { return implementation_; }

  // Every implementation name created so far in this process (tests assert none is "ref").
  static std::vector<std::string> CreatedImplementations();

 private:
  TileMatmul() = default;

  MatmulShape shape_;
  dnnl::memory::desc a_md_, b_md_, c_md_, scratchpad_md_;
  dnnl::matmul primitive_;
  size_t scratchpad_bytes_ = 0;
  std::string implementation_;
};

// True when oneDNN on this CPU has native bfloat16 matmul kernels (avx512_core_bf16 or newer).
bool HasNativeBf16();

}  // namespace primserve

#endif  // PRIMSERVE_CORE_TILE_MATMUL_H_
