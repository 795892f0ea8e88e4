#include "client/cli/commands.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli/flag_values.h"
#include "client/cli/npy.h"
#include "client/cli/output.h"
#include "client/cli/tensor_text.h"
#include "client/cli/usage_error.h"
#include "primserve/client/attention.h"
#include "primserve/client/health.h"
#include "primserve/client/position_encoding.h"

namespace primserve {
namespace cli {
namespace {

void AddAll(const std::vector<double>& values, google::protobuf::RepeatedField<double>* field) {
  field->Add(values.begin(), values.end());
}

absl::Status SetAttendRope(const AttendArgs& args, v1::AttendRequest* request) {
  const bool has_rope_flags = args.rope_kind || args.rope_pairing || args.rope_base || args.rotary_dim ||
                              args.query_positions || args.key_positions || args.grid;
  if (args.rope.has_value() && !*args.rope && has_rope_flags) {
    return UsageError("--norope contradicts the rope flags given (--rope_kind, --rope_pairing, --rope_base, "
                      "--rotary_dim, --query_positions, --key_positions, --grid)");
  }
  if (!args.rope.value_or(false) && !has_rope_flags) return absl::OkStatus();
  v1::RopeSpec* rope = request->mutable_rope();
  absl::StatusOr<v1::RopeKind> kind = ParseRopeKind(args.rope_kind.value_or("1d"), "rope_kind");
  if (!kind.ok()) return kind.status();
  rope->set_kind(*kind);
  absl::StatusOr<v1::RopePairing> pairing = ParsePairing(args.rope_pairing.value_or("interleaved"), "rope_pairing");
  if (!pairing.ok()) return pairing.status();
  rope->set_pairing(*pairing);
  if (args.rope_base.has_value()) {
    if (absl::Status positive = CheckPositive("rope_base", *args.rope_base); !positive.ok()) return positive;
  }
  rope->set_base(args.rope_base.value_or(10000));
  rope->set_rotary_dim(args.rotary_dim.value_or(0));
  if (*kind == v1::ROPE_KIND_ROPE_1D) {
    if (args.grid.has_value()) return UsageError("--grid needs --rope_kind=2d");
    if (args.query_positions.has_value()) {
      absl::StatusOr<std::vector<double>> positions = ParseRealList("query_positions", *args.query_positions);
      if (!positions.ok()) return positions.status();
      AddAll(*positions, rope->mutable_query_positions());
    }
    if (args.key_positions.has_value()) {
      absl::StatusOr<std::vector<double>> positions = ParseRealList("key_positions", *args.key_positions);
      if (!positions.ok()) return positions.status();
      AddAll(*positions, rope->mutable_key_positions());
    }
  } else {
    if (args.query_positions.has_value() || args.key_positions.has_value()) {
      return UsageError("--rope_kind=2d places tokens with --grid=HxW (not --query_positions / --key_positions)");
    }
    if (!args.grid.has_value()) return UsageError("--rope_kind=2d needs --grid=HxW (H * W = k_len)");
    absl::StatusOr<Grid> grid = ParseGrid("grid", *args.grid);
    if (!grid.ok()) return grid.status();
    rope->set_grid_height(grid->height);
    rope->set_grid_width(grid->width);
  }
  return absl::OkStatus();
}

// Elements of a [batch, heads, rows, columns] result from the rank-4 inputs; -1 when a shape is
// not rank 4 (the server will say why).
double ResultElements(const client::Tensor& rows_from, const client::Tensor& columns_from, int64_t rows_axis) {
  if (rows_from.shape.size() != 4 || columns_from.shape.size() != 4) return -1;
  return static_cast<double>(rows_from.shape[0]) * static_cast<double>(rows_from.shape[1]) *
         static_cast<double>(rows_from.shape[2]) * static_cast<double>(columns_from.shape[rows_axis]);
}

}  // namespace

absl::Status RunHealth(const HealthArgs& args, const Connection& connection, std::ostream& out) {
  client::ChannelOptions options = connection.channel;
  options.health_checked_balancing = false;  // Report a draining server's NOT_SERVING as such.
  client::HealthClient health(client::CreateChannel(options));
  absl::StatusOr<client::ServingStatus> status = health.Check(args.service, connection.call);
  if (!status.ok()) return status.status();
  out << client::ServingStatusName(*status) << "\n";
  if (*status == grpc::health::v1::HealthCheckResponse::SERVING) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("service \"", args.service, "\" is ",
                                             client::ServingStatusName(*status)));
}

absl::StatusOr<v1::SinusoidalRequest> BuildSinusoidalRequest(const SinusoidalArgs& args) {
  if (args.length.has_value() == args.positions.has_value()) {
    return UsageError("sinusoidal needs exactly one of --length=N or --positions=P1,P2,...");
  }
  if (!args.dim.has_value()) return UsageError("sinusoidal needs --dim=D (even, > 0)");
  v1::SinusoidalRequest request;
  if (args.length.has_value()) request.set_length(*args.length);
  if (args.positions.has_value()) {
    absl::StatusOr<std::vector<double>> positions = ParseRealList("positions", *args.positions);
    if (!positions.ok()) return positions.status();
    AddAll(*positions, request.mutable_positions());
  }
  request.set_dim(*args.dim);
  if (absl::Status positive = CheckPositive("base", args.base); !positive.ok()) return positive;
  request.set_base(args.base);
  absl::StatusOr<v1::SinusoidalLayout> layout = ParseLayout(args.layout);
  if (!layout.ok()) return layout.status();
  request.set_layout(*layout);
  return request;
}

absl::Status RunSinusoidal(const SinusoidalArgs& args, const Connection& connection, std::ostream& out) {
  absl::StatusOr<v1::SinusoidalRequest> request = BuildSinusoidalRequest(args);
  if (!request.ok()) return request.status();
  const int64_t rows = request->positions_size() > 0 ? request->positions_size() : request->length();
  if (rows > 0 && request->dim() > 0) {
    // In double: length * dim may overflow int64 for absurd flags; only the magnitude matters.
    absl::Status printable = CheckPrintable(static_cast<double>(rows) * request->dim(), args.output);
    if (!printable.ok()) return printable;
  }
  client::PositionEncodingClient encoding(client::CreateChannel(connection.channel));
  absl::StatusOr<client::Tensor> table = encoding.Sinusoidal(*request, connection.call);
  if (!table.ok()) return table.status();
  return EmitTensor(*table, args.output, out);
}

absl::StatusOr<v1::ApplyRopeRequest> BuildRopeOptions(const RopeArgs& args) {
  if (args.input.empty()) return UsageError("rope needs --input=FILE.npy ([..., seq, dim], float32 or float64)");
  v1::ApplyRopeRequest request;
  absl::StatusOr<v1::RopeKind> kind = ParseRopeKind(args.kind);
  if (!kind.ok()) return kind.status();
  request.set_kind(*kind);
  absl::StatusOr<v1::RopePairing> pairing = ParsePairing(args.pairing);
  if (!pairing.ok()) return pairing.status();
  request.set_pairing(*pairing);

  const bool has_xy = args.positions_x.has_value() || args.positions_y.has_value();
  if (*kind == v1::ROPE_KIND_ROPE_1D) {
    if (has_xy || args.grid.has_value()) {
      return UsageError("--positions_x, --positions_y and --grid need --kind=2d (1d takes --positions)");
    }
    if (args.positions.has_value()) {
      absl::StatusOr<std::vector<double>> positions = ParseRealList("positions", *args.positions);
      if (!positions.ok()) return positions.status();
      AddAll(*positions, request.mutable_positions());
    }
  } else {
    if (args.positions.has_value()) {
      return UsageError("--kind=2d takes --positions_x with --positions_y, or --grid=HxW (not --positions)");
    }
    if (has_xy && args.grid.has_value()) return UsageError("give --positions_x/--positions_y or --grid, not both");
    if (!has_xy && !args.grid.has_value()) {
      return UsageError("--kind=2d needs --grid=HxW, or --positions_x with --positions_y");
    }
    if (has_xy) {
      if (!args.positions_x.has_value() || !args.positions_y.has_value()) {
        return UsageError("--positions_x and --positions_y go together");
      }
      absl::StatusOr<std::vector<double>> x = ParseRealList("positions_x", *args.positions_x);
      if (!x.ok()) return x.status();
      absl::StatusOr<std::vector<double>> y = ParseRealList("positions_y", *args.positions_y);
      if (!y.ok()) return y.status();
      AddAll(*x, request.mutable_positions_x());
      AddAll(*y, request.mutable_positions_y());
    }
    if (args.grid.has_value()) {
      absl::StatusOr<Grid> grid = ParseGrid("grid", *args.grid);
      if (!grid.ok()) return grid.status();
      request.set_grid_height(grid->height);
      request.set_grid_width(grid->width);
    }
  }
  if (absl::Status positive = CheckPositive("base", args.base); !positive.ok()) return positive;
  request.set_base(args.base);
  request.set_rotary_dim(args.rotary_dim);
  request.set_inverse(args.inverse);
  return request;
}

absl::Status RunRope(const RopeArgs& args, const Connection& connection, std::ostream& out) {
  absl::StatusOr<v1::ApplyRopeRequest> options = BuildRopeOptions(args);
  if (!options.ok()) return options.status();
  absl::StatusOr<client::Tensor> input = ReadNpy(args.input);
  if (!input.ok()) return input.status();
  // The output has the input's shape: refuse before calling rather than after computing.
  absl::Status printable = CheckPrintable(static_cast<double>(input->values.size()), args.output);
  if (!printable.ok()) return printable;
  client::PositionEncodingClient encoding(client::CreateChannel(connection.channel));
  absl::StatusOr<client::Tensor> rotated = encoding.ApplyRope(*input, *options, connection.call);
  if (!rotated.ok()) return rotated.status();
  return EmitTensor(*rotated, args.output, out);
}

absl::StatusOr<v1::AttendRequest> BuildAttendOptions(const AttendArgs& args) {
  if (args.query.empty() || args.key.empty() || args.value.empty()) {
    return UsageError("attend needs --query=Q.npy --key=K.npy --value=V.npy "
                      "([batch, heads, len, dim], float32 or float64)");
  }
  if (!args.weights_output.empty() && !args.return_weights) {
    return UsageError("--weights_output needs --return_weights");
  }
  if (absl::Status distinct = CheckDistinctOutputs("output", args.output, "weights_output", args.weights_output);
      !distinct.ok()) {
    return distinct;
  }
  v1::AttendRequest request;
  absl::StatusOr<v1::AttentionKind> kind = ParseAttentionKind(args.kind);
  if (!kind.ok()) return kind.status();
  request.set_kind(*kind);
  request.set_causal(args.causal);
  if (args.key_lengths.has_value()) {
    absl::StatusOr<std::vector<int64_t>> lengths = ParseIntList("key_lengths", *args.key_lengths);
    if (!lengths.ok()) return lengths.status();
    request.mutable_key_lengths()->Add(lengths->begin(), lengths->end());
  }
  request.set_scale(args.scale);
  absl::StatusOr<v1::ComputePrecision> precision = ParsePrecision(args.precision);
  if (!precision.ok()) return precision.status();
  request.set_compute_precision(*precision);
  if (absl::Status rope = SetAttendRope(args, &request); !rope.ok()) return rope;
  request.set_return_weights(args.return_weights);
  return request;
}

absl::Status RunAttend(const AttendArgs& args, const Connection& connection, std::ostream& out) {
  absl::StatusOr<v1::AttendRequest> request = BuildAttendOptions(args);
  if (!request.ok()) return request.status();
  absl::StatusOr<client::Tensor> query = ReadNpy(args.query);
  if (!query.ok()) return query.status();
  absl::StatusOr<client::Tensor> key = ReadNpy(args.key);
  if (!key.ok()) return key.status();
  absl::StatusOr<client::Tensor> value = ReadNpy(args.value);
  if (!value.ok()) return value.status();
  if (!args.bias.empty()) {
    absl::StatusOr<client::Tensor> bias = ReadNpy(args.bias);
    if (!bias.ok()) return bias.status();
    *request->mutable_bias() = client::ToProto(*bias);
  }
  // Refuse before calling rather than after computing: output [B, H, Lq, Dv], weights [B, H, Lq, Lk].
  absl::Status printable = CheckPrintable(ResultElements(*query, *value, 3), args.output);
  if (!printable.ok()) return printable;
  if (args.return_weights) {
    printable = CheckPrintable(ResultElements(*query, *key, 2), args.weights_output);
    if (!printable.ok()) return printable;
  }
  client::AttentionClient attention(client::CreateChannel(connection.channel));
  absl::StatusOr<client::AttendResult> result = attention.Attend(*query, *key, *value, *request, connection.call);
  if (!result.ok()) return result.status();
  if (absl::Status emitted = EmitTensor(result->output, args.output, out); !emitted.ok()) return emitted;
  if (!result->weights.has_value()) return absl::OkStatus();
  if (args.weights_output.empty()) out << "weights:\n";
  return EmitTensor(*result->weights, args.weights_output, out);
}

absl::StatusOr<v1::EstimateCostRequest> BuildCostRequest(const CostArgs& args) {
  if (!args.seq_len.has_value() || !args.head_size.has_value() || !args.num_heads.has_value()) {
    return UsageError("cost needs --seq_len=N --head_size=D --num_heads=H");
  }
  v1::EstimateCostRequest request;
  request.set_seq_len(*args.seq_len);
  request.set_head_size(*args.head_size);
  request.set_num_heads(*args.num_heads);
  if (absl::Status positive = CheckPositive("ffn_multiplier", args.ffn_multiplier); !positive.ok()) return positive;
  if (absl::Status positive = CheckPositive("linear_head_multiplier", args.linear_head_multiplier); !positive.ok()) {
    return positive;
  }
  request.set_ffn_multiplier(args.ffn_multiplier);
  request.set_linear_head_multiplier(args.linear_head_multiplier);
  return request;
}

absl::Status RunCost(const CostArgs& args, const Connection& connection, std::ostream& out) {
  absl::StatusOr<v1::EstimateCostRequest> request = BuildCostRequest(args);
  if (!request.ok()) return request.status();
  client::AttentionClient attention(client::CreateChannel(connection.channel));
  absl::StatusOr<v1::EstimateCostResponse> cost = attention.EstimateCost(*request, connection.call);
  if (!cost.ok()) return cost.status();
  const std::pair<const char*, double> fields[] = {
      {"projections", cost->projections()},
      {"attention_quadratic", cost->attention_quadratic()},
      {"self_attention", cost->self_attention()},
      {"ffn", cost->ffn()},
      {"linear_attention", cost->linear_attention()},
      {"attention_exceeds_ffn_length", cost->attention_exceeds_ffn_length()},
      {"quadratic_dominates_length", cost->quadratic_dominates_length()},
      {"linear_attention_wins_length", cost->linear_attention_wins_length()},
  };
  for (const auto& [name, number] : fields) out << name << ": " << FormatReal(number) << "\n";
  return absl::OkStatus();
}

}  // namespace cli
}  // namespace primserve
