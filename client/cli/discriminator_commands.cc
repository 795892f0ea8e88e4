#include "client/cli/discriminator_commands.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "client/cli/flag_values.h"
#include "client/cli/file_io.h"
#include "client/cli/npy.h"
#include "client/cli/table_files.h"
#include "client/cli/tensor_text.h"
#include "client/cli/usage_error.h"
#include "primserve/client/discriminator.h"

namespace primserve {
namespace cli {
namespace {

using google::protobuf::Value;

template <typename Enum>
absl::StatusOr<Enum> ParseName(absl::string_view flag, absl::string_view text,
                               std::vector<std::pair<absl::string_view, Enum>> names) {
  const std::string lower = absl::AsciiStrToLower(text);
  std::vector<absl::string_view> choices;
  for (const auto& [name, value] : names) {
    if (lower == name) return value;
    choices.push_back(name);
  }
  return UsageError(absl::StrCat("--", flag, "=", text, ": expected ", absl::StrJoin(choices, " or ")));
}

absl::StatusOr<v1::Normalization> ParseNormalization(const std::string& text) {
  return ParseName<v1::Normalization>("normalization", text,
                                      {{"gn", v1::NORMALIZATION_GRADIENT_NORM},
                                       {"gradient_norm", v1::NORMALIZATION_GRADIENT_NORM},
                                       {"gran", v1::NORMALIZATION_GRAN},
                                       {"none", v1::NORMALIZATION_NONE}});
}

// Exactly one of --model_name and --network.
absl::Status CheckNetworkSource(absl::string_view command, const std::string& model_name, const std::string& network) {
  if (model_name.empty() == network.empty()) {
    return UsageError(absl::StrCat(command, " needs exactly one of --model_name=NAME (a registered discriminator) "
                                            "or --network=NET.json (inline)"));
  }
  return absl::OkStatus();
}

absl::Status JsonError(const std::string& path, absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", where, ": ", what));
}

// A network file holds layer objects and small nested lists; weights this large go in .npy files.
constexpr uint64_t kMaxNetworkJsonBytes = uint64_t{256} << 20;
constexpr int kMaxJsonNesting = 16;

// The deepest nesting of [ and { in `text`, outside strings.
int JsonNesting(absl::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

// The keys a layer object of `type` may have (nullopt for an unknown type): anything else (a
// misspelt "paddding", PyTorch's "negative_slope" for "alpha") is refused, not silently ignored.
std::optional<std::vector<absl::string_view>> LayerKeys(absl::string_view type) {
  if (type == "leaky_relu" || type == "elu") return {{"type", "alpha"}};
  if (type == "dense" || type == "linear") return {{"type", "weight", "bias"}};
  if (type == "conv2d") return {{"type", "weight", "bias", "stride", "padding"}};
  if (type == "relu" || type == "tanh" || type == "sigmoid" || type == "identity" || type == "flatten") {
    return {{"type"}};
  }
  return std::nullopt;
}

const char* KindOf(const Value& value) {
  switch (value.kind_case()) {
    case Value::kNumberValue: return "a number";
    case Value::kStringValue: return "a string";
    case Value::kBoolValue: return "a boolean";
    case Value::kListValue: return "a list";
    case Value::kStructValue: return "an object";
    default: return "null";
  }
}

// A rectangular nested list of numbers -> tensor (its nesting gives the shape).
absl::Status FlattenList(const Value& value, size_t depth, std::vector<int64_t>* shape, std::vector<float>* values,
                         const std::string& path, const std::string& where) {
  if (depth == shape->size()) {
    if (value.kind_case() != Value::kNumberValue) {
      return JsonError(path, where, absl::StrCat("expected a number at depth ", depth, ", got ", KindOf(value)));
    }
    const double number = value.number_value();
    if (std::abs(number) > std::numeric_limits<float>::max()) {  // Finite: JSON has no infinities.
      return JsonError(path, where, absl::StrCat(number, " is beyond float32's range (+-3.4028235e+38)"));
    }
    values->push_back(static_cast<float>(number));
    return absl::OkStatus();
  }
  if (value.kind_case() != Value::kListValue ||
      value.list_value().values_size() != (*shape)[depth]) {
    return JsonError(path, where,
                     absl::StrCat("ragged nested list: expected a list of ", (*shape)[depth], " at depth ", depth,
                                  " (shape ", ShapeText(*shape), "), got ", KindOf(value)));
  }
  for (const Value& item : value.list_value().values()) {
    if (absl::Status s = FlattenList(item, depth + 1, shape, values, path, where); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// A tensor given as a nested list or as an .npy path relative to the JSON file's directory.
absl::StatusOr<client::Tensor> TensorFromJson(const Value& value, const std::string& path, const std::string& where) {
  if (value.kind_case() == Value::kStringValue) {
    std::filesystem::path npy(value.string_value());
    if (npy.is_relative()) npy = std::filesystem::path(path).parent_path() / npy;
    return ReadNpy(npy.string());
  }
  if (value.kind_case() != Value::kListValue) {
    return JsonError(path, where, absl::StrCat("expected a nested list of numbers or an .npy path, got ", KindOf(value)));
  }
  client::Tensor tensor;
  for (const Value* level = &value; level->kind_case() == Value::kListValue;) {
    tensor.shape.push_back(level->list_value().values_size());
    if (level->list_value().values_size() == 0) break;
    level = &level->list_value().values(0);
  }
  if (absl::Status s = FlattenList(value, 0, &tensor.shape, &tensor.values, path, where); !s.ok()) return s;
  return tensor;
}

absl::StatusOr<double> NumberField(const google::protobuf::Struct& object, const char* name, double default_value,
                                   const std::string& path, const std::string& where) {
  auto it = object.fields().find(name);
  if (it == object.fields().end()) return default_value;
  if (it->second.kind_case() != Value::kNumberValue) {
    return JsonError(path, absl::StrCat(where, ".", name), absl::StrCat("expected a number, got ", KindOf(it->second)));
  }
  return it->second.number_value();
}

// A JSON number that must be a whole number (an extent, a stride): refused when it has a
// fraction or lies beyond +-2^53 (where a double no longer holds every integer), instead of
// being truncated or cast out of int64's range.
absl::StatusOr<int64_t> WholeNumber(double value, const std::string& path, const std::string& where) {
  constexpr double kExact = 9007199254740992.0;  // 2^53
  if (!(std::abs(value) <= kExact) || value != std::floor(value)) {
    return JsonError(path, where, absl::StrCat("expected a whole number within +-2^53, got ", value));
  }
  return static_cast<int64_t>(value);
}

absl::StatusOr<v1::Layer> LayerFromJson(const Value& value, const std::string& path, const std::string& where) {
  if (value.kind_case() != Value::kStructValue) {
    return JsonError(path, where, absl::StrCat("expected an object {\"type\": ...}, got ", KindOf(value)));
  }
  const google::protobuf::Struct& object = value.struct_value();
  auto type_it = object.fields().find("type");
  if (type_it == object.fields().end() || type_it->second.kind_case() != Value::kStringValue) {
    return JsonError(path, where, "expected a string \"type\"");
  }
  const std::string type = absl::AsciiStrToLower(type_it->second.string_value());
  const std::optional<std::vector<absl::string_view>> keys = LayerKeys(type);  // An unknown type is reported below.
  for (const auto& [key, ignored] : object.fields()) {
    if (keys.has_value() && std::find(keys->begin(), keys->end(), key) == keys->end()) {
      return JsonError(path, absl::StrCat(where, ".", key),
                       absl::StrCat("unknown key for a ", type, " layer (its keys: ", absl::StrJoin(*keys, ", "), ")"));
    }
  }
  const std::vector<std::pair<std::string, v1::ActivationKind>> activations = {
      {"relu", v1::ACTIVATION_KIND_RELU},       {"leaky_relu", v1::ACTIVATION_KIND_LEAKY_RELU},
      {"tanh", v1::ACTIVATION_KIND_TANH},       {"sigmoid", v1::ACTIVATION_KIND_SIGMOID},
      {"elu", v1::ACTIVATION_KIND_ELU},         {"identity", v1::ACTIVATION_KIND_IDENTITY}};
  for (const auto& [name, kind] : activations) {
    if (type != name) continue;
    std::optional<double> alpha;
    if (object.fields().count("alpha")) {
      absl::StatusOr<double> parsed = NumberField(object, "alpha", 0, path, where);
      if (!parsed.ok()) return parsed.status();
      alpha = *parsed;
    }
    return client::MakeActivation(kind, alpha);
  }
  if (type == "flatten") return client::MakeFlatten();
  if (type != "dense" && type != "linear" && type != "conv2d") {
    return JsonError(path, absl::StrCat(where, ".type"),
                     absl::StrCat("unknown layer type \"", type,
                                  "\" (dense, linear, conv2d, relu, leaky_relu, tanh, sigmoid, elu, identity, flatten)"));
  }
  client::Tensor tensors[2];
  const char* names[2] = {"weight", "bias"};
  for (int i = 0; i < 2; ++i) {
    auto it = object.fields().find(names[i]);
    const std::string field = absl::StrCat(where, ".", names[i]);
    if (it == object.fields().end()) return JsonError(path, field, "required");
    absl::StatusOr<client::Tensor> tensor = TensorFromJson(it->second, path, field);
    if (!tensor.ok()) return tensor.status();
    tensors[i] = *std::move(tensor);
  }
  if (type != "conv2d") return client::MakeDense(tensors[0], tensors[1]);
  absl::StatusOr<double> stride = NumberField(object, "stride", 1, path, where);
  if (!stride.ok()) return stride.status();
  absl::StatusOr<double> padding = NumberField(object, "padding", 0, path, where);
  if (!padding.ok()) return padding.status();
  absl::StatusOr<int64_t> whole_stride = WholeNumber(*stride, path, absl::StrCat(where, ".stride"));
  if (!whole_stride.ok()) return whole_stride.status();
  absl::StatusOr<int64_t> whole_padding = WholeNumber(*padding, path, absl::StrCat(where, ".padding"));
  if (!whole_padding.ok()) return whole_padding.status();
  return client::MakeConv2d(tensors[0], tensors[1], *whole_stride, *whole_padding);
}

absl::StatusOr<v1::Network> NetworkFromArgs(const std::string& path) {
  if (path.empty()) return v1::Network();
  return ReadNetworkJson(path);
}

std::string Real(double value) { return absl::StrFormat("%.9g", value); }

absl::Status Emit(absl::string_view name, const client::Tensor& tensor, const std::string& output, std::ostream& out) {
  if (!output.empty()) {
    if (absl::Status written = WriteNpy(output, tensor); !written.ok()) return written;
    out << "wrote " << output << " (" << name << ", shape " << ShapeText(tensor.shape) << ", float32)\n";
    return absl::OkStatus();
  }
  out << name << ":\n" << FormatTensorText(tensor);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::Network> ReadNetworkJson(const std::string& path) {
  absl::StatusOr<std::string> text = ReadTextFile(path, kMaxNetworkJsonBytes);
  if (!text.ok()) return text.status();
  // protobuf's JSON parser slows down faster than quadratically with nesting (100000 levels ran
  // for minutes): deeper than any network needs is refused before it parses.
  if (const int depth = JsonNesting(*text); depth > kMaxJsonNesting) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": JSON nested ", depth, " levels deep, more than the ",
                                                   kMaxJsonNesting, " a network needs (tensors have at most 5 axes)"));
  }
  Value root;
  const auto parsed = google::protobuf::util::JsonStringToMessage(*text, &root);
  if (!parsed.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON: ", parsed.ToString()));
  if (root.kind_case() != Value::kStructValue) return JsonError(path, "top level", "expected an object");
  const auto& fields = root.struct_value().fields();
  v1::Network network;
  auto shape = fields.find("input_shape");
  if (shape == fields.end() || shape->second.kind_case() != Value::kListValue) {
    return JsonError(path, "input_shape", "required: a list of extents, e.g. [3, 32, 32]");
  }
  for (const Value& extent : shape->second.list_value().values()) {
    if (extent.kind_case() != Value::kNumberValue) return JsonError(path, "input_shape", "expected numbers");
    absl::StatusOr<int64_t> whole = WholeNumber(extent.number_value(), path, "input_shape");
    if (!whole.ok()) return whole.status();
    network.add_input_shape(*whole);
  }
  auto layers = fields.find("layers");
  if (layers == fields.end() || layers->second.kind_case() != Value::kListValue) {
    return JsonError(path, "layers", "required: a list of layer objects");
  }
  for (int i = 0; i < layers->second.list_value().values_size(); ++i) {
    absl::StatusOr<v1::Layer> layer =
        LayerFromJson(layers->second.list_value().values(i), path, absl::StrCat("layers[", i, "]"));
    if (!layer.ok()) return layer.status();
    *network.add_layers() = *std::move(layer);
  }
  return network;
}

absl::Status RunRegister(const RegisterArgs& args, const Connection& connection, std::ostream& out) {
  if (args.model_name.empty() || args.network.empty()) {
    return UsageError("register needs --model_name=NAME and --network=NET.json");
  }
  absl::StatusOr<v1::Network> network = ReadNetworkJson(args.network);
  if (!network.ok()) return network.status();
  client::DiscriminatorClient d(client::CreateChannel(connection.channel));
  absl::StatusOr<v1::RegisterResponse> registered = d.Register(args.model_name, *network, connection.call);
  if (!registered.ok()) return registered.status();
  out << "registered " << args.model_name << ": input_shape "
      << ShapeText({registered->input_shape().begin(), registered->input_shape().end()}) << ", "
      << registered->num_layers() << " layers, piecewise_linear "
      << (registered->piecewise_linear() ? "true" : "false") << "\n";
  return absl::OkStatus();
}

absl::Status RunScore(const ScoreArgs& args, const Connection& connection, std::ostream& out) {
  if (absl::Status s = CheckNetworkSource("score", args.model_name, args.network); !s.ok()) return s;
  if (args.inputs.empty()) return UsageError("score needs --inputs=X.npy ([batch, ...input_shape])");
  absl::StatusOr<v1::Normalization> normalization = ParseNormalization(args.normalization);
  if (!normalization.ok()) return normalization.status();
  absl::StatusOr<v1::ComputePrecision> precision = ParsePrecision(args.precision);
  if (!precision.ok()) return precision.status();
  v1::ScoreRequest request;
  request.set_model_name(args.model_name);
  request.set_normalization(*normalization);
  request.set_compute_precision(*precision);
  if (args.epsilon.has_value()) request.set_epsilon(*args.epsilon);
  request.set_return_input_gradient(!args.input_gradient_output.empty());
  if (!args.network.empty()) {
    absl::StatusOr<v1::Network> network = NetworkFromArgs(args.network);
    if (!network.ok()) return network.status();
    *request.mutable_network() = *std::move(network);
  }
  absl::StatusOr<client::Tensor> inputs = ReadNpy(args.inputs);
  if (!inputs.ok()) return inputs.status();
  if (args.output.empty() && !inputs->shape.empty() && inputs->shape[0] > kMaxPrintElements) {
    return UsageError(absl::StrCat(inputs->shape[0], " scores are more than the ", kMaxPrintElements,
                                   " printed as text: pass --output=SCORES.npy"));
  }
  *request.mutable_inputs() = client::ToProto(*inputs);
  client::DiscriminatorClient d(client::CreateChannel(connection.channel));
  absl::StatusOr<client::DiscriminatorScores> scores = d.Score(request, connection.call);
  if (!scores.ok()) return scores.status();
  if (args.output.empty()) {
    if (absl::Status s = Emit("raw_scores", scores->raw_scores, "", out); !s.ok()) return s;
    if (absl::Status s = Emit("gradient_norms", scores->gradient_norms, "", out); !s.ok()) return s;
  }
  if (absl::Status s = Emit("scores", scores->scores, args.output, out); !s.ok()) return s;
  if (!args.input_gradient_output.empty() && scores->input_gradients.has_value()) {
    return Emit("input_gradients", *scores->input_gradients, args.input_gradient_output, out);
  }
  return absl::OkStatus();
}

absl::Status RunLosses(const LossesArgs& args, const Connection& connection, std::ostream& out) {
  if (absl::Status s = CheckNetworkSource("losses", args.model_name, args.network); !s.ok()) return s;
  if (args.real_inputs.empty() || args.fake_inputs.empty()) {
    return UsageError("losses needs --real_inputs=R.npy and --fake_inputs=F.npy");
  }
  absl::StatusOr<v1::Normalization> normalization = ParseNormalization(args.normalization);
  if (!normalization.ok()) return normalization.status();
  absl::StatusOr<v1::Loss> loss = ParseName<v1::Loss>(
      "loss", args.loss, {{"hinge", v1::LOSS_HINGE}, {"wasserstein", v1::LOSS_WASSERSTEIN}, {"bce", v1::LOSS_BCE}});
  if (!loss.ok()) return loss.status();
  v1::LossesRequest request;
  request.set_model_name(args.model_name);
  request.set_loss(*loss);
  request.set_normalization(*normalization);
  if (args.epsilon.has_value()) request.set_epsilon(*args.epsilon);
  if (!args.network.empty()) {
    absl::StatusOr<v1::Network> network = NetworkFromArgs(args.network);
    if (!network.ok()) return network.status();
    *request.mutable_network() = *std::move(network);
  }
  absl::StatusOr<client::Tensor> real = ReadNpy(args.real_inputs);
  if (!real.ok()) return real.status();
  absl::StatusOr<client::Tensor> fake = ReadNpy(args.fake_inputs);
  if (!fake.ok()) return fake.status();
  *request.mutable_real_inputs() = client::ToProto(*real);
  *request.mutable_fake_inputs() = client::ToProto(*fake);
  client::DiscriminatorClient d(client::CreateChannel(connection.channel));
  absl::StatusOr<client::DiscriminatorLosses> losses = d.Losses(request, connection.call);
  if (!losses.ok()) return losses.status();
  out << "discriminator_loss: " << Real(losses->discriminator) << "\n"
      << "generator_loss: " << Real(losses->generator) << "\n";
  return absl::OkStatus();
}

}  // namespace cli
}  // namespace primserve
