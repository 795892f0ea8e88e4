#include "client/cli/commands.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli/flag_values.h"
#include "client/cli/npy.h"
#include "client/cli/tensor_text.h"
#include "client/cli/usage_error.h"
#include "primserve/client/health.h"
#include "primserve/client/position_encoding.h"

namespace primserve {
namespace cli {
namespace {

// Refuses, before any call, to print a result of `elements` values.
absl::Status CheckPrintable(double elements, const std::string& output) {
  if (!output.empty() || elements <= kMaxPrintElements) return absl::OkStatus();
  return UsageError(absl::StrFormat("the result has %.0f elements, more than the %d printed as text: "
                                    "pass --output=FILE.npy", elements, kMaxPrintElements));
}

// Writes the result to `output` when set, otherwise prints it.
absl::Status Emit(const client::Tensor& result, const std::string& output, std::ostream& out) {
  if (output.empty()) {
    out << FormatTensorText(result);
    return absl::OkStatus();
  }
  if (absl::Status written = WriteNpy(output, result); !written.ok()) return written;
  out << "wrote " << output << " (shape " << ShapeText(result.shape) << ", float32)\n";
  return absl::OkStatus();
}

void AddAll(const std::vector<double>& values, google::protobuf::RepeatedField<double>* field) {
  field->Add(values.begin(), values.end());
}

}  // namespace

absl::Status RunHealth(const HealthArgs& args, const Connection& connection, std::ostream& out) {
  client::HealthClient health(client::CreateChannel(connection.channel));
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
  return Emit(*table, args.output, out);
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
  return Emit(*rotated, args.output, out);
}

}  // namespace cli
}  // namespace primserve
