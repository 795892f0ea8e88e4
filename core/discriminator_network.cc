// Validation and shape inference of a discriminator Network (core/discriminator.h).
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "core/discriminator.h"
#include "core/status_macros.h"

namespace primserve {
namespace {

// Far above any real stride or padding; keeps (H + 2 * padding) free of overflow.
constexpr int64_t kMaxStrideOrPadding = int64_t{1} << 20;

std::string LayerName(size_t index, const Layer& layer) {
  return absl::StrCat("layers[", index, "] (", LayerKindName(layer), ")");
}

// "the input_shape [3, 32, 32]" or "the previous layer's output [64, 16, 16]".
std::string Previous(size_t index, const Shape& shape) {
  return index == 0 ? absl::StrCat("the input_shape ", ShapeToString(shape))
                    : absl::StrCat("the previous layer's output ", ShapeToString(shape));
}

absl::Status Invalid(const std::string& layer, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(layer, ": ", what));
}

// values.size() matches the shape, and every value is finite.
absl::Status CheckTensorValues(const Tensor& t, const std::string& layer, absl::string_view name) {
  ASSIGN_OR_RETURN(const int64_t count, ElementCount(t.shape, absl::StrCat(layer, ": ", name, ".shape")));
  if (static_cast<int64_t>(t.values.size()) != count) {
    return Invalid(layer, absl::StrCat(name, " has ", t.values.size(), " values, expected ", count, " for shape ",
                                       ShapeToString(t.shape)));
  }
  return CheckFinite(t.values, absl::StrCat(layer, ": ", name));
}

absl::Status CheckBias(const Tensor& bias, int64_t out, const Tensor& weight, const std::string& layer) {
  if (bias.rank() != 1 || bias.dim(0) != out) {
    return Invalid(layer, absl::StrCat("bias is ", ShapeToString(bias.shape), ", expected [", out, "] (out of weight ",
                                       ShapeToString(weight.shape), ")"));
  }
  return CheckTensorValues(bias, layer, "bias");
}

absl::StatusOr<Shape> DenseOutput(const DenseLayer& dense, const Shape& in, size_t index, const std::string& name) {
  if (in.size() != 1) {
    return Invalid(name, absl::StrCat("expected a flat input [features], got ", Previous(index, in),
                                      "; add a Flatten layer before it"));
  }
  const Tensor& w = dense.weight;
  if (w.rank() != 2) {
    return Invalid(name, absl::StrCat("weight is ", ShapeToString(w.shape), ", expected rank 2 [out, in]"));
  }
  if (w.dim(1) != in[0]) {
    return Invalid(name, absl::StrCat("weight is ", ShapeToString(w.shape), ", expected in = ", in[0], " from ",
                                      Previous(index, in)));
  }
  if (w.dim(0) < 1) {
    return Invalid(name, absl::StrCat("weight is ", ShapeToString(w.shape), ", expected out >= 1"));
  }
  RETURN_IF_ERROR(CheckTensorValues(w, name, "weight"));
  RETURN_IF_ERROR(CheckBias(dense.bias, w.dim(0), w, name));
  return Shape{w.dim(0)};
}

absl::StatusOr<Shape> ConvOutput(const Conv2dLayer& conv, const Shape& in, size_t index, const std::string& name) {
  if (in.size() != 3) {
    return Invalid(name, absl::StrCat("expected an input [channels, height, width], got ", Previous(index, in)));
  }
  const Tensor& w = conv.weight;
  if (w.rank() != 4) {
    return Invalid(name, absl::StrCat("weight is ", ShapeToString(w.shape), ", expected rank 4 [out, in, kh, kw]"));
  }
  if (w.dim(1) != in[0]) {
    return Invalid(name, absl::StrCat("weight is ", ShapeToString(w.shape), ", expected in = ", in[0],
                                      " channels from ", Previous(index, in)));
  }
  if (w.dim(0) < 1 || w.dim(2) < 1 || w.dim(3) < 1) {
    return Invalid(name, absl::StrCat("weight is ", ShapeToString(w.shape), ", expected out, kh, kw >= 1"));
  }
  if (conv.stride < 1 || conv.stride > kMaxStrideOrPadding) {
    return Invalid(name, absl::StrCat("stride is ", conv.stride, ", expected 1 to ", kMaxStrideOrPadding));
  }
  if (conv.padding < 0 || conv.padding > kMaxStrideOrPadding) {
    return Invalid(name, absl::StrCat("padding is ", conv.padding, ", expected 0 to ", kMaxStrideOrPadding));
  }
  const int64_t padded_h = in[1] + 2 * conv.padding;
  const int64_t padded_w = in[2] + 2 * conv.padding;
  if (w.dim(2) > padded_h || w.dim(3) > padded_w) {
    return Invalid(name, absl::StrCat("kernel ", w.dim(2), "x", w.dim(3), " does not fit ", Previous(index, in),
                                      " with padding ", conv.padding, " (padded ", padded_h, "x", padded_w, ")"));
  }
  RETURN_IF_ERROR(CheckTensorValues(w, name, "weight"));
  RETURN_IF_ERROR(CheckBias(conv.bias, w.dim(0), w, name));
  return Shape{w.dim(0), (padded_h - w.dim(2)) / conv.stride + 1, (padded_w - w.dim(3)) / conv.stride + 1};
}

// The kernels compute in float32: an alpha beyond its range (1e39) would become Inf there.
bool IsFloat32Finite(double value) { return std::abs(value) <= std::numeric_limits<float>::max(); }

absl::Status CheckActivation(const ActivationLayer& act, const std::string& name) {
  switch (act.kind) {
    case ActivationKind::kRelu:
    case ActivationKind::kTanh:
    case ActivationKind::kSigmoid:
    case ActivationKind::kIdentity:
      return absl::OkStatus();
    case ActivationKind::kLeakyRelu:
      if (!IsFloat32Finite(act.alpha)) {
        return Invalid(name, absl::StrCat("alpha is ", act.alpha, ", expected finite in float32"));
      }
      return absl::OkStatus();
    case ActivationKind::kElu:
      if (!IsFloat32Finite(act.alpha) || act.alpha < 0) {
        return Invalid(name, absl::StrCat("alpha is ", act.alpha, ", expected finite in float32 and >= 0 for ELU"));
      }
      return absl::OkStatus();
    case ActivationKind::kUnspecified:
      break;
  }
  return Invalid(name, "kind is unspecified, expected RELU, LEAKY_RELU, TANH, SIGMOID, ELU or IDENTITY");
}

}  // namespace

const char* LayerKindName(const Layer& layer) {
  switch (layer.index()) {
    case 0: return "Dense";
    case 1: return "Conv2d";
    case 2: return "Activation";
    default: return "Flatten";
  }
}

bool IsPiecewiseLinear(const Network& network) {
  for (const Layer& layer : network.layers) {
    const auto* act = std::get_if<ActivationLayer>(&layer);
    if (act == nullptr) continue;
    if (act->kind != ActivationKind::kRelu && act->kind != ActivationKind::kLeakyRelu &&
        act->kind != ActivationKind::kIdentity) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<std::vector<Shape>> LayerOutputShapes(const Network& network) {
  const Shape& input = network.input_shape;
  if (input.empty() || input.size() > 3) {
    return absl::InvalidArgumentError(absl::StrCat("input_shape: expected 1 to 3 extents ([features] or [channels, ",
                                                   "height, width]), got ", ShapeToString(input)));
  }
  for (size_t axis = 0; axis < input.size(); ++axis) {
    if (input[axis] < 1) {
      return absl::InvalidArgumentError(absl::StrCat("input_shape[", axis, "]: expected an extent >= 1, got ",
                                                     input[axis], " (input_shape ", ShapeToString(input), ")"));
    }
  }
  RETURN_IF_ERROR(CheckedElementCount(input, "input_shape", kDefaultMaxElements).status());
  if (network.layers.empty()) return absl::InvalidArgumentError("layers: expected at least one layer, got none");

  std::vector<Shape> shapes;
  shapes.reserve(network.layers.size());
  Shape current = input;
  for (size_t i = 0; i < network.layers.size(); ++i) {
    const Layer& layer = network.layers[i];
    const std::string name = LayerName(i, layer);
    if (const auto* dense = std::get_if<DenseLayer>(&layer)) {
      ASSIGN_OR_RETURN(current, DenseOutput(*dense, current, i, name));
    } else if (const auto* conv = std::get_if<Conv2dLayer>(&layer)) {
      ASSIGN_OR_RETURN(current, ConvOutput(*conv, current, i, name));
    } else if (const auto* act = std::get_if<ActivationLayer>(&layer)) {
      RETURN_IF_ERROR(CheckActivation(*act, name));
    } else {
      ASSIGN_OR_RETURN(const int64_t count, ElementCount(current, name));
      current = Shape{count};
    }
    RETURN_IF_ERROR(CheckedElementCount(current, absl::StrCat(name, ": output"), kDefaultMaxElements).status());
    shapes.push_back(current);
  }
  ASSIGN_OR_RETURN(const int64_t outputs, ElementCount(current, "output"));
  if (outputs != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "output: expected one scalar per sample, got ", ShapeToString(current), " (", outputs, " elements) from ",
        LayerName(network.layers.size() - 1, network.layers.back())));
  }
  return shapes;
}

absl::Status ValidateNetwork(const Network& network) { return LayerOutputShapes(network).status(); }

}  // namespace primserve
