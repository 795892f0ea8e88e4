#include "core/position_encoding.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <list>
#include <memory>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/multiversion.h"
#include "core/number_format.h"
#include "core/parallel.h"
#include "core/status_macros.h"

namespace primserve {
namespace {

absl::Status CheckBase(double base) {
  if (!std::isfinite(base) || base <= 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("base: expected a finite number > 0 (0 on the wire means 10000), got ", NumberToString(base)));
  }
  return absl::OkStatus();
}

absl::Status CheckSinusoidalDim(int64_t dim) {
  if (dim <= 0 || dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("dim: expected an even number > 0 (sin/cos pairs), got ", dim));
  }
  return absl::OkStatus();
}

// theta_i = base^(-2i/width) for i = 0 .. width/2 - 1, in double.
std::vector<double> Frequencies(double base, int64_t width) {
  std::vector<double> theta(static_cast<size_t>(width / 2));
  for (size_t i = 0; i < theta.size(); ++i) {
    theta[i] = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(width));
  }
  return theta;
}

// pos * theta must stay finite: with base < 1 the frequencies exceed 1 and a huge position
// could overflow to Inf, whose sin/cos is NaN.
absl::Status CheckAngles(absl::Span<const double> positions, const std::vector<double>& theta,
                         absl::string_view field) {
  double max_theta = 0.0;
  for (double t : theta) max_theta = std::max(max_theta, t);
  for (size_t i = 0; i < positions.size(); ++i) {
    if (!std::isfinite(positions[i] * max_theta)) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "]: position ", positions[i],
                                                     " times the largest frequency ", max_theta,
                                                     " overflows; use a smaller position or base >= 1"));
    }
  }
  return absl::OkStatus();
}

// The rotation kernels. Each output pair depends only on the same input pair, so `in == out`
// is safe: no iteration reads what another writes. `ivdep` tells the compiler so; without it,
// its runtime overlap check sees in == out and falls back to scalar code for in-place calls.
// PRIMSERVE_MULTIVERSION picks an AVX-512, AVX2 or baseline body at load time.

struct RowKernelArgs {
  const float* in;
  float* out;
  const float* cos;  // [seq_len, pairs]
  const float* sin;
  int64_t seq_len;
  int64_t dim;
  int64_t rotary_dim;
  int64_t segments;    // Half-split pairing only: 1 for 1-D, 2 for 2-D.
  int64_t row_offset;  // Row r of `in` sits at position index (r + row_offset) % seq_len.
};

// out[2p] = a cos - b sin, out[2p+1] = b cos + a sin with (a, b) = (x[2p], x[2p+1]).
PRIMSERVE_MULTIVERSION
void RotateRowsInterleaved(const RowKernelArgs& k, int64_t row_begin, int64_t row_end) {
  const int64_t pairs = k.rotary_dim / 2;
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t s = (row + k.row_offset) % k.seq_len;
    const float* x = k.in + row * k.dim;
    float* y = k.out + row * k.dim;
    const float* c = k.cos + s * pairs;
    const float* sn = k.sin + s * pairs;
#pragma GCC ivdep
    for (int64_t p = 0; p < pairs; ++p) {
      const float a = x[2 * p];
      const float b = x[2 * p + 1];
      y[2 * p] = a * c[p] - b * sn[p];
      y[2 * p + 1] = b * c[p] + a * sn[p];
    }
    if (y != x) std::memcpy(y + k.rotary_dim, x + k.rotary_dim, sizeof(float) * (k.dim - k.rotary_dim));
  }
}

// Within each segment of width w: (a, b) = (x[i], x[i + w/2]), the rotate_half convention.
PRIMSERVE_MULTIVERSION
void RotateRowsHalfSplit(const RowKernelArgs& k, int64_t row_begin, int64_t row_end) {
  const int64_t pairs = k.rotary_dim / 2;
  const int64_t width = k.rotary_dim / k.segments;
  const int64_t half = width / 2;
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t s = (row + k.row_offset) % k.seq_len;
    const float* x = k.in + row * k.dim;
    float* y = k.out + row * k.dim;
    for (int64_t seg = 0; seg < k.segments; ++seg) {
      const float* xa = x + seg * width;
      const float* xb = xa + half;
      float* ya = y + seg * width;
      float* yb = ya + half;
      const float* c = k.cos + s * pairs + seg * half;
      const float* sn = k.sin + s * pairs + seg * half;
#pragma GCC ivdep
      for (int64_t i = 0; i < half; ++i) {
        const float a = xa[i];
        const float b = xb[i];
        ya[i] = a * c[i] - b * sn[i];
        yb[i] = b * c[i] + a * sn[i];
      }
    }
    if (y != x) std::memcpy(y + k.rotary_dim, x + k.rotary_dim, sizeof(float) * (k.dim - k.rotary_dim));
  }
}

// Below this many elements a call stays on the calling thread: forking a team costs more.
constexpr int64_t kParallelMinElements = int64_t{1} << 16;

}  // namespace

absl::StatusOr<Tensor> SinusoidalTable(absl::Span<const double> positions,
                                       const SinusoidalOptions& options) {
  RETURN_IF_ERROR(CheckSinusoidalDim(options.dim));
  RETURN_IF_ERROR(CheckBase(options.base));
  if (positions.empty()) {
    return absl::InvalidArgumentError("positions: expected length > 0 or at least one position, got none");
  }
  RETURN_IF_ERROR(CheckFinite(positions, "positions"));
  const int64_t num_positions = static_cast<int64_t>(positions.size());
  const Shape shape = {num_positions, options.dim};
  RETURN_IF_ERROR(CheckedElementCount(shape, "output", options.max_elements).status());

  const std::vector<double> theta = Frequencies(options.base, options.dim);
  RETURN_IF_ERROR(CheckAngles(positions, theta, "positions"));
  const int64_t pairs = options.dim / 2;
  Tensor table = Tensor::Zeros(shape);
  float* out = table.values.data();
  const bool interleaved = options.layout == SinusoidalLayout::kInterleaved;
  const int64_t dim = options.dim;
  ParallelFor(num_positions, num_positions * dim >= kParallelMinElements, [&](int64_t k) {
    float* row = out + k * dim;
    for (int64_t i = 0; i < pairs; ++i) {
      const double angle = positions[static_cast<size_t>(k)] * theta[static_cast<size_t>(i)];
      double sin_angle, cos_angle;
      ::sincos(angle, &sin_angle, &cos_angle);
      const float s = static_cast<float>(sin_angle);
      const float c = static_cast<float>(cos_angle);
      if (interleaved) {
        row[2 * i] = s;
        row[2 * i + 1] = c;
      } else {
        row[i] = s;
        row[pairs + i] = c;
      }
    }
  });
  return table;
}

absl::StatusOr<Tensor> SinusoidalTable(int64_t length, const SinusoidalOptions& options) {
  if (length <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("length: expected > 0 when positions is empty, got ", length));
  }
  // Validate the size before building the positions vector. dim first: with dim <= 0 the
  // element count is <= 0 and would not bound `length` (found by tests/fuzz: length 2^27 with
  // dim 0 allocated a 1 GiB positions vector before failing on dim).
  RETURN_IF_ERROR(CheckSinusoidalDim(options.dim));
  RETURN_IF_ERROR(CheckedElementCount({length, options.dim}, "output", options.max_elements).status());
  std::vector<double> positions(static_cast<size_t>(length));
  for (int64_t k = 0; k < length; ++k) positions[static_cast<size_t>(k)] = static_cast<double>(k);
  return SinusoidalTable(positions, options);
}

absl::StatusOr<RopeTable> RopeTable::Create(const RopeSpec& spec, int64_t seq_len, int64_t dim) {
  if (seq_len < 0 || dim < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("input.shape: expected seq_len, dim >= 0, got ", seq_len, ", ", dim));
  }
  // The tables hold seq_len positions (and seq_len x dim / 2 angles). A non-empty input bounds
  // them already; an empty one (a zero extent) may claim any seq_len or dim: refuse before
  // allocating (found by the fuzzer: shape [0, 2^60, 24] asked for a 2^60-entry vector).
  if (dim > kDefaultMaxElements || seq_len > kDefaultMaxElements / std::max<int64_t>(dim, 1)) {
    return absl::ResourceExhaustedError(absl::StrCat("input.shape: seq_len x dim = ", seq_len, " x ", dim,
                                                     " exceeds the limit of ", kDefaultMaxElements,
                                                     " table entries"));
  }
  const bool two_d = spec.kind == RopeKind::k2D;
  const int64_t multiple = two_d ? 4 : 2;
  const char* why = two_d ? "2-D RoPE splits it into two halves of rotation pairs" : "features rotate in pairs";
  if (dim % multiple != 0) {
    return absl::InvalidArgumentError(absl::StrCat("input.shape[-1]: expected dim to be a multiple of ",
                                                   multiple, " (", why, "), got ", dim));
  }
  const int64_t rotary_dim = spec.rotary_dim == 0 ? dim : spec.rotary_dim;
  if (rotary_dim < 0 || rotary_dim > dim || rotary_dim % multiple != 0) {
    return absl::InvalidArgumentError(absl::StrCat("rotary_dim: expected 0 (all) or a multiple of ", multiple,
                                                   " in [", multiple, ", ", dim, "] (", why, "), got ",
                                                   spec.rotary_dim));
  }
  RETURN_IF_ERROR(CheckBase(spec.base));

  // Resolve one (1-D) or two (2-D) position lists of length seq_len.
  std::vector<double> pos_x;
  std::vector<double> pos_y;
  if (!two_d) {
    if (!spec.positions_x.empty() || !spec.positions_y.empty() || spec.grid_height != 0 ||
        spec.grid_width != 0) {
      return absl::InvalidArgumentError(
          "kind: positions_x, positions_y, grid_height and grid_width are for ROPE_2D; 1-D RoPE takes positions");
    }
    if (spec.positions.empty()) {
      pos_x.resize(static_cast<size_t>(seq_len));
      for (int64_t s = 0; s < seq_len; ++s) pos_x[static_cast<size_t>(s)] = static_cast<double>(s);
    } else {
      if (static_cast<int64_t>(spec.positions.size()) != seq_len) {
        return absl::InvalidArgumentError(absl::StrCat("positions: expected ", seq_len,
                                                       " values (one per row of the seq axis), got ",
                                                       spec.positions.size()));
      }
      RETURN_IF_ERROR(CheckFinite(spec.positions, "positions"));
      pos_x = spec.positions;
    }
  } else {
    if (!spec.positions.empty()) {
      return absl::InvalidArgumentError(
          "positions: ROPE_2D takes positions_x + positions_y or grid_height + grid_width, not positions");
    }
    const bool explicit_xy = !spec.positions_x.empty() || !spec.positions_y.empty();
    const bool grid = spec.grid_height != 0 || spec.grid_width != 0;
    if (explicit_xy == grid) {
      return absl::InvalidArgumentError(absl::StrCat(
          "kind: ROPE_2D needs exactly one of positions_x + positions_y or grid_height + grid_width, got ",
          explicit_xy ? "both" : "neither"));
    }
    if (explicit_xy) {
      for (const auto& [field, values] : {std::pair<const char*, const std::vector<double>*>{"positions_x", &spec.positions_x},
                                          {"positions_y", &spec.positions_y}}) {
        if (static_cast<int64_t>(values->size()) != seq_len) {
          return absl::InvalidArgumentError(absl::StrCat(field, ": expected ", seq_len,
                                                         " values (one per row of the seq axis), got ",
                                                         values->size()));
        }
        RETURN_IF_ERROR(CheckFinite(*values, field));
      }
      pos_x = spec.positions_x;
      pos_y = spec.positions_y;
    } else {
      // Division, not h * w, so that huge extents cannot overflow.
      if (spec.grid_height <= 0 || spec.grid_width <= 0 || seq_len % spec.grid_width != 0 ||
          seq_len / spec.grid_width != spec.grid_height) {
        return absl::InvalidArgumentError(absl::StrCat(
            "grid_height, grid_width: expected positive extents whose product is seq_len = ", seq_len, ", got ",
            spec.grid_height, " x ", spec.grid_width));
      }
      pos_x.resize(static_cast<size_t>(seq_len));
      pos_y.resize(static_cast<size_t>(seq_len));
      for (int64_t t = 0; t < seq_len; ++t) {
        pos_x[static_cast<size_t>(t)] = static_cast<double>(t / spec.grid_width);
        pos_y[static_cast<size_t>(t)] = static_cast<double>(t % spec.grid_width);
      }
    }
  }

  RopeTable table;
  table.kind_ = spec.kind;
  table.pairing_ = spec.pairing;
  table.seq_len_ = seq_len;
  table.dim_ = dim;
  table.rotary_dim_ = rotary_dim;
  const int64_t pairs = rotary_dim / 2;
  // 2-D: each half is a 1-D RoPE of width rotary_dim / 2 (theta_i = base^(-4i/r)).
  const int64_t width = two_d ? rotary_dim / 2 : rotary_dim;
  const std::vector<double> theta = Frequencies(spec.base, width);
  if (two_d) {
    RETURN_IF_ERROR(CheckAngles(pos_x, theta, spec.positions_x.empty() ? "grid_height" : "positions_x"));
    RETURN_IF_ERROR(CheckAngles(pos_y, theta, spec.positions_y.empty() ? "grid_width" : "positions_y"));
  } else {
    RETURN_IF_ERROR(CheckAngles(pos_x, theta, "positions"));
  }
  const int64_t half_pairs = width / 2;
  table.cos_.resize(static_cast<size_t>(seq_len * pairs));
  table.sin_.resize(static_cast<size_t>(seq_len * pairs));
  const double sign = spec.inverse ? -1.0 : 1.0;
  ParallelFor(seq_len, seq_len * pairs >= kParallelMinElements / 4, [&](int64_t s) {
    for (int64_t p = 0; p < pairs; ++p) {
      const bool y_half = p >= half_pairs && two_d;
      const double pos = y_half ? pos_y[static_cast<size_t>(s)] : pos_x[static_cast<size_t>(s)];
      const double angle = sign * pos * theta[static_cast<size_t>(p % half_pairs)];
      double sin_angle, cos_angle;
      ::sincos(angle, &sin_angle, &cos_angle);  // glibc: both from one argument reduction.
      table.cos_[static_cast<size_t>(s * pairs + p)] = static_cast<float>(cos_angle);
      table.sin_[static_cast<size_t>(s * pairs + p)] = static_cast<float>(sin_angle);
    }
  });
  return table;
}

namespace {

// Everything a default-positions table depends on (the base by value: 10000 and 10000.5 differ).
using SharedRopeKey = std::tuple<int, int, double, int64_t, bool, int64_t, int64_t, int64_t, int64_t>;

// The tables RopeTable::Shared keeps: a list in recency order (front = most recent) and an
// index into it, within RopeTable::kSharedCacheBytes.
class SharedRopeTables {
 public:
  std::shared_ptr<const RopeTable> Find(const SharedRopeKey& key) {
    absl::MutexLock lock(&mu_);
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second);
    return it->second->table;
  }

  // `bytes` is the table's floats plus a fixed overhead per entry (kEntryOverheadBytes), so many
  // small tables cannot hide behind the byte budget; the entry count is capped as well.
  void Insert(const SharedRopeKey& key, std::shared_ptr<const RopeTable> table, int64_t bytes) {
    absl::MutexLock lock(&mu_);
    if (index_.contains(key)) return;  // Another call built the same table meanwhile.
    order_.push_front(Entry{key, std::move(table), bytes});
    index_[key] = order_.begin();
    bytes_ += bytes;
    while (bytes_ > RopeTable::kSharedCacheBytes || static_cast<int64_t>(order_.size()) > kMaxEntries) {
      bytes_ -= order_.back().bytes;
      index_.erase(order_.back().key);
      order_.pop_back();
    }
  }

  static constexpr int64_t kEntryOverheadBytes = 512;  // List node, control block, vectors, slot.
  static constexpr int64_t kMaxEntries = 256;

 private:
  struct Entry {
    SharedRopeKey key;
    std::shared_ptr<const RopeTable> table;
    int64_t bytes;
  };
  absl::Mutex mu_;
  std::list<Entry> order_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<SharedRopeKey, std::list<Entry>::iterator> index_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

SharedRopeTables& SharedTables() {
  static auto* tables = new SharedRopeTables();
  return *tables;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const RopeTable>> RopeTable::Shared(const RopeSpec& spec, int64_t seq_len,
                                                                   int64_t dim) {
  const bool default_positions = spec.positions.empty() && spec.positions_x.empty() && spec.positions_y.empty();
  const SharedRopeKey key{static_cast<int>(spec.kind), static_cast<int>(spec.pairing), spec.base,
                          spec.rotary_dim, spec.inverse, spec.grid_height, spec.grid_width, seq_len, dim};
  if (default_positions) {
    // Found means an identical spec and shape passed Create before, so it is valid now.
    if (std::shared_ptr<const RopeTable> table = SharedTables().Find(key)) return table;
  }
  ASSIGN_OR_RETURN(RopeTable created, Create(spec, seq_len, dim));
  auto table = std::make_shared<const RopeTable>(std::move(created));
  const int64_t floats = static_cast<int64_t>(table->cos_.size() + table->sin_.size());
  // Small tables cost less to build than to keep (and a request chooses the key: a stream of
  // tiny distinct specs must not crowd out the useful entries); one huge shape must not flush
  // the rest.
  const int64_t bytes = floats * static_cast<int64_t>(sizeof(float)) + SharedRopeTables::kEntryOverheadBytes;
  if (default_positions && floats >= kMinSharedFloats && bytes <= kSharedCacheBytes / 4) {
    SharedTables().Insert(key, table, bytes);
  }
  return table;
}

void RopeTable::Apply(const float* input, float* output, int64_t num_slices) const {
  const int64_t rows = num_slices * seq_len_;
  if (rows == 0 || dim_ == 0) return;
  RowKernelArgs args{input, output, cos_.data(), sin_.data(), seq_len_, dim_, rotary_dim_,
                     kind_ == RopeKind::k2D ? 2 : 1, /*row_offset=*/0};
  auto kernel = pairing_ == RopePairing::kInterleaved ? RotateRowsInterleaved : RotateRowsHalfSplit;
  ParallelForRange(rows, rows * dim_ >= kParallelMinElements,
                   [&](int64_t begin, int64_t end) { kernel(args, begin, end); });
}

void RopeTable::ApplyRow(const float* input, float* output, int64_t s) const {
  RowKernelArgs args{input, output, cos_.data(), sin_.data(), seq_len_, dim_,
                     rotary_dim_, kind_ == RopeKind::k2D ? 2 : 1, /*row_offset=*/s};
  if (pairing_ == RopePairing::kInterleaved) {
    RotateRowsInterleaved(args, 0, 1);
  } else {
    RotateRowsHalfSplit(args, 0, 1);
  }
}

absl::StatusOr<Tensor> ApplyRope(Tensor input, const RopeSpec& spec) {
  // In place: each cache line is read once and written once, the traffic of a copy, with no
  // second buffer (an out-of-place write would also pay a read-for-ownership of the output).
  RETURN_IF_ERROR(ApplyRope(input.values, input.shape, spec, absl::MakeSpan(input.values)));
  return input;
}

absl::Status ApplyRope(absl::Span<const float> input, absl::Span<const int64_t> shape, const RopeSpec& spec,
                       absl::Span<float> output) {
  if (shape.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat("input.shape: expected rank >= 2 ([..., seq, dim]), got ",
                                                   ShapeToString(shape)));
  }
  ASSIGN_OR_RETURN(const int64_t count, ElementCount(shape, "input.shape"));
  if (static_cast<int64_t>(input.size()) != count || static_cast<int64_t>(output.size()) != count) {
    return absl::InvalidArgumentError(absl::StrCat("input: expected ", count, " elements for shape ",
                                                   ShapeToString(shape), ", got ", input.size(), " in and ",
                                                   output.size(), " out"));
  }
  const int64_t seq_len = shape[shape.size() - 2];
  const int64_t dim = shape[shape.size() - 1];
  // A non-empty input pays for its tables (seq_len x dim <= its element count). An empty one (a
  // zero extent) pays nothing, so it may only claim small tables (found by the fuzzer: [0, 2^24,
  // 8] computed 2^26 angles for nothing).
  constexpr int64_t kMaxEmptyInputTable = int64_t{1} << 16;
  if (count == 0 && (dim > kMaxEmptyInputTable || seq_len > kMaxEmptyInputTable / std::max<int64_t>(dim, 1))) {
    return absl::ResourceExhaustedError(absl::StrCat("input.shape: an empty input ", ShapeToString(shape),
                                                     " claims seq_len x dim = ", seq_len, " x ", dim,
                                                     " table entries; at most ", kMaxEmptyInputTable,
                                                     " when there is nothing to rotate"));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const RopeTable> table, RopeTable::Shared(spec, seq_len, dim));
  ASSIGN_OR_RETURN(const float max_abs, CheckFiniteMaxAbs(input, "input"));
  const int64_t slice = seq_len * dim;
  const int64_t num_slices = slice == 0 ? 0 : count / slice;
  table->Apply(input.data(), output.data(), num_slices);
  // A rotated pair keeps its length, so a component can grow by up to sqrt(2): only inputs
  // within that of float's maximum can overflow, and only then is the output scanned.
  if (max_abs > std::numeric_limits<float>::max() / 2) {
    for (size_t i = 0; i < output.size(); ++i) {
      if (!std::isfinite(output[i])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "input: rotating values up to ", NumberToString(max_abs),
            " in magnitude overflows float32 (output[", i, "]); scale the input down"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace primserve
