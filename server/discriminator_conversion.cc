#include "server/discriminator_conversion.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/tensor_conversion.h"

namespace primserve {
namespace {

absl::Status UnknownEnum(absl::string_view field, int value) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": unknown enum value ", value));
}

absl::StatusOr<Tensor> ReadTensor(bool present, const v1::Tensor& proto, const std::string& field,
                                  const Limits& limits) {
  if (!present) return absl::InvalidArgumentError(absl::StrCat(field, ": required, got no tensor"));
  return TensorFromProto(proto, field, limits.max_elements);
}

absl::StatusOr<ActivationKind> ActivationKindFromProto(v1::ActivationKind kind, absl::string_view field) {
  switch (kind) {
    case v1::ACTIVATION_KIND_UNSPECIFIED:
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": expected one of RELU, LEAKY_RELU, TANH, SIGMOID, ELU, IDENTITY, got ACTIVATION_KIND_UNSPECIFIED"));
    case v1::ACTIVATION_KIND_RELU: return ActivationKind::kRelu;
    case v1::ACTIVATION_KIND_LEAKY_RELU: return ActivationKind::kLeakyRelu;
    case v1::ACTIVATION_KIND_TANH: return ActivationKind::kTanh;
    case v1::ACTIVATION_KIND_SIGMOID: return ActivationKind::kSigmoid;
    case v1::ACTIVATION_KIND_ELU: return ActivationKind::kElu;
    case v1::ACTIVATION_KIND_IDENTITY: return ActivationKind::kIdentity;
    default: return UnknownEnum(field, kind);
  }
}

v1::ActivationKind ActivationKindToProto(ActivationKind kind) {
  switch (kind) {
    case ActivationKind::kRelu: return v1::ACTIVATION_KIND_RELU;
    case ActivationKind::kLeakyRelu: return v1::ACTIVATION_KIND_LEAKY_RELU;
    case ActivationKind::kTanh: return v1::ACTIVATION_KIND_TANH;
    case ActivationKind::kSigmoid: return v1::ACTIVATION_KIND_SIGMOID;
    case ActivationKind::kElu: return v1::ACTIVATION_KIND_ELU;
    case ActivationKind::kIdentity: return v1::ACTIVATION_KIND_IDENTITY;
    case ActivationKind::kUnspecified: break;
  }
  return v1::ACTIVATION_KIND_UNSPECIFIED;
}

absl::StatusOr<Layer> LayerFromProto(const v1::Layer& proto, const std::string& field, const Limits& limits) {
  switch (proto.layer_case()) {
    case v1::Layer::kDense: {
      const v1::Dense& dense = proto.dense();
      DenseLayer layer;
      ASSIGN_OR_RETURN(layer.weight, ReadTensor(dense.has_weight(), dense.weight(), field + ".dense.weight", limits));
      ASSIGN_OR_RETURN(layer.bias, ReadTensor(dense.has_bias(), dense.bias(), field + ".dense.bias", limits));
      return Layer(std::move(layer));
    }
    case v1::Layer::kConv2D: {
      const v1::Conv2d& conv = proto.conv2d();
      Conv2dLayer layer;
      ASSIGN_OR_RETURN(layer.weight, ReadTensor(conv.has_weight(), conv.weight(), field + ".conv2d.weight", limits));
      ASSIGN_OR_RETURN(layer.bias, ReadTensor(conv.has_bias(), conv.bias(), field + ".conv2d.bias", limits));
      layer.stride = conv.stride() == 0 ? 1 : conv.stride();  // proto3's 0 is "unset".
      layer.padding = conv.padding();
      return Layer(std::move(layer));
    }
    case v1::Layer::kActivation: {
      const v1::Activation& activation = proto.activation();
      ActivationLayer layer;
      ASSIGN_OR_RETURN(layer.kind, ActivationKindFromProto(activation.kind(), field + ".activation.kind"));
      if (activation.has_alpha()) {
        layer.alpha = activation.alpha();
      } else if (layer.kind == ActivationKind::kLeakyRelu) {
        layer.alpha = kDefaultLeakyReluSlope;
      } else if (layer.kind == ActivationKind::kElu) {
        layer.alpha = kDefaultEluAlpha;
      }
      return Layer(layer);
    }
    case v1::Layer::kFlatten: return Layer(FlattenLayer{});
    case v1::Layer::LAYER_NOT_SET: break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": expected one of dense, conv2d, activation, flatten, got an empty layer"));
}

}  // namespace

void NetworkToProto(const Network& network, v1::Network* proto) {
  proto->Clear();
  proto->mutable_input_shape()->Add(network.input_shape.begin(), network.input_shape.end());
  for (const Layer& layer : network.layers) {
    v1::Layer* out = proto->add_layers();
    if (const auto* dense = std::get_if<DenseLayer>(&layer)) {
      TensorToProto(dense->weight, out->mutable_dense()->mutable_weight());
      TensorToProto(dense->bias, out->mutable_dense()->mutable_bias());
    } else if (const auto* conv = std::get_if<Conv2dLayer>(&layer)) {
      v1::Conv2d* c = out->mutable_conv2d();
      TensorToProto(conv->weight, c->mutable_weight());
      TensorToProto(conv->bias, c->mutable_bias());
      c->set_stride(conv->stride);
      c->set_padding(conv->padding);
    } else if (const auto* activation = std::get_if<ActivationLayer>(&layer)) {
      v1::Activation* a = out->mutable_activation();
      a->set_kind(ActivationKindToProto(activation->kind));
      if (activation->kind == ActivationKind::kLeakyRelu || activation->kind == ActivationKind::kElu) {
        a->set_alpha(activation->alpha);
      }
    } else {
      out->mutable_flatten();
    }
  }
}

absl::StatusOr<Network> NetworkFromProto(const v1::Network& proto, absl::string_view field, const Limits& limits) {
  Network network;
  network.input_shape.assign(proto.input_shape().begin(), proto.input_shape().end());
  network.layers.reserve(static_cast<size_t>(proto.layers_size()));
  for (int i = 0; i < proto.layers_size(); ++i) {
    ASSIGN_OR_RETURN(Layer layer, LayerFromProto(proto.layers(i), absl::StrCat(field, ".layers[", i, "]"), limits));
    network.layers.push_back(std::move(layer));
  }
  // ValidateNetwork names "layers[i] (Kind)" / "input_shape": prefix the request's field.
  const absl::Status valid = ValidateNetwork(network);
  if (!valid.ok()) return absl::Status(valid.code(), absl::StrCat(field, ".", valid.message()));
  return network;
}

absl::StatusOr<Normalization> NormalizationFromProto(v1::Normalization normalization, absl::string_view field) {
  switch (normalization) {
    case v1::NORMALIZATION_UNSPECIFIED:
    case v1::NORMALIZATION_GRADIENT_NORM: return Normalization::kGradientNorm;
    case v1::NORMALIZATION_GRAN: return Normalization::kGran;
    case v1::NORMALIZATION_NONE: return Normalization::kNone;
    default: return UnknownEnum(field, normalization);
  }
}

absl::StatusOr<LossKind> LossFromProto(v1::Loss loss, absl::string_view field) {
  switch (loss) {
    case v1::LOSS_UNSPECIFIED:
    case v1::LOSS_HINGE: return LossKind::kHinge;
    case v1::LOSS_WASSERSTEIN: return LossKind::kWasserstein;
    case v1::LOSS_BCE: return LossKind::kBce;
    default: return UnknownEnum(field, loss);
  }
}

}  // namespace primserve
