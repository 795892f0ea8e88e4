// Tensor: the plain dense float32 array the core computes on, and the shape arithmetic that
// every service validates with before it allocates anything.
//
// Layout: row-major (C order), no padding; `values.size()` equals the product of `shape`.
//
// Example:
//   ASSIGN_OR_RETURN(int64_t n, ElementCount({8, 2048, 64}, "input.shape"));
//   Tensor t = Tensor::Zeros({8, 2048, 64});
#ifndef PRIMSERVE_CORE_TENSOR_H_
#define PRIMSERVE_CORE_TENSOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace primserve {

using Shape = std::vector<int64_t>;

// Default cap on the elements of any tensor the core creates (1 GiB of float32). The server
// lowers it to what fits in one message.
inline constexpr int64_t kDefaultMaxElements = int64_t{1} << 28;

// Arithmetic of a kernel's products (attention tiles, discriminator layers).
enum class ComputePrecision {
  kF32,   // float32 products and accumulation.
  kBF16,  // bfloat16 products, float32 accumulation; every other step float32.
};

struct Tensor {
  Shape shape;
  std::vector<float> values;

  // A zero-filled tensor. Precondition: the shape was validated (ElementCount succeeded).
  static Tensor Zeros(Shape shape);
  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  int64_t dim(int64_t axis) const { return shape[static_cast<size_t>(axis)]; }
};

// The product of `shape`. INVALID_ARGUMENT naming `field` for a negative extent or a product
// that overflows int64.
absl::StatusOr<int64_t> ElementCount(absl::Span<const int64_t> shape, absl::string_view field);

// ElementCount plus a cap: RESOURCE_EXHAUSTED when the product exceeds `max_elements`.
absl::StatusOr<int64_t> CheckedElementCount(absl::Span<const int64_t> shape,
                                            absl::string_view field, int64_t max_elements);

// "[8, 2048, 64]".
std::string ShapeToString(absl::Span<const int64_t> shape);

// INVALID_ARGUMENT naming `field` and the first offending index unless every value is finite.
absl::Status CheckFinite(absl::Span<const float> values, absl::string_view field);
absl::Status CheckFinite(absl::Span<const double> values, absl::string_view field);
// CheckFinite that also returns the largest magnitude (0 for no values), in the same one pass.
absl::StatusOr<float> CheckFiniteMaxAbs(absl::Span<const float> values, absl::string_view field);

}  // namespace primserve

#endif  // PRIMSERVE_CORE_TENSOR_H_
