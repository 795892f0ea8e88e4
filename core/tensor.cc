#include "core/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace primserve {

Tensor Tensor::Zeros(Shape shape) {
  int64_t count = 1;
  for (int64_t extent : shape) count *= extent;
  Tensor t;
  t.shape = std::move(shape);
  t.values.assign(static_cast<size_t>(count), 0.0f);
  return t;
}

absl::StatusOr<int64_t> ElementCount(absl::Span<const int64_t> shape, absl::string_view field) {
  int64_t count = 1;
  for (size_t axis = 0; axis < shape.size(); ++axis) {
    const int64_t extent = shape[axis];
    if (extent < 0) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", axis, "]: expected an extent >= 0, got ",
                                                     extent, " (shape ", ShapeToString(shape), ")"));
    }
  }
  // Zero anywhere makes the product zero however large the rest is; only check overflow otherwise.
  for (int64_t extent : shape) {
    if (extent == 0) return 0;
  }
  for (int64_t extent : shape) {
    if (count > std::numeric_limits<int64_t>::max() / extent) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": the element count of shape ",
                                                     ShapeToString(shape), " overflows int64"));
    }
    count *= extent;
  }
  return count;
}

absl::StatusOr<int64_t> CheckedElementCount(absl::Span<const int64_t> shape,
                                            absl::string_view field, int64_t max_elements) {
  absl::StatusOr<int64_t> count = ElementCount(shape, field);
  if (count.ok() && *count > max_elements) {
    return absl::ResourceExhaustedError(absl::StrCat(field, ": shape ", ShapeToString(shape), " has ",
                                                     *count, " elements, above the limit of ",
                                                     max_elements));
  }
  return count;
}

std::string ShapeToString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

namespace {

template <typename T>
absl::Status CheckFiniteImpl(absl::Span<const T> values, absl::string_view field) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "]: expected a finite number, got ",
                                                     std::isnan(values[i]) ? "NaN" : (values[i] > 0 ? "+Inf" : "-Inf")));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckFinite(absl::Span<const float> values, absl::string_view field) {
  // A float is NaN or +-Inf exactly when its exponent bits are all ones. This branch-free scan
  // vectorises and runs at memory speed; the slow exact scan only runs to name a bad index.
  constexpr uint32_t kExponentMask = 0x7f800000u;
  uint32_t any_bad = 0;
  for (float v : values) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    any_bad |= static_cast<uint32_t>((bits & kExponentMask) == kExponentMask);
  }
  if (any_bad == 0) return absl::OkStatus();
  return CheckFiniteImpl(values, field);
}

absl::Status CheckFinite(absl::Span<const double> values, absl::string_view field) {
  return CheckFiniteImpl(values, field);
}

absl::StatusOr<float> CheckFiniteMaxAbs(absl::Span<const float> values, absl::string_view field) {
  // The magnitude's bits order like the magnitudes; +-Inf is 0x7f800000 and NaNs lie above it.
  uint32_t max_bits = 0;
  for (float v : values) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    max_bits = std::max(max_bits, bits & 0x7fffffffu);
  }
  if (max_bits >= 0x7f800000u) return CheckFiniteImpl(values, field);
  float max_abs;
  std::memcpy(&max_abs, &max_bits, sizeof max_abs);
  return max_abs;
}

}  // namespace primserve
