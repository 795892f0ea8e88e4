#include "core/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "core/attention_internal.h"
#include "core/attention_online_softmax.h"
#include "core/dnnl_context.h"
#include "core/number_format.h"
#include "core/parallel.h"
#include "core/status_macros.h"
#include "core/tile_matmul.h"

namespace primserve {
namespace {

using attention_internal::Problem;

absl::Status CheckRank4(const Tensor& t, absl::string_view name, absl::string_view axes) {
  if (t.rank() != 4) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ".shape: expected rank 4 ", axes, ", got ", ShapeToString(t.shape)));
  }
  return absl::OkStatus();
}

absl::Status CheckExtent(const Tensor& t, absl::string_view name, int axis, absl::string_view what,
                         int64_t expected) {
  if (t.dim(axis) != expected) {
    return absl::InvalidArgumentError(absl::StrCat(name, ".shape[", axis, "]: expected ", what, " = ", expected,
                                                   ", got ", t.dim(axis), " (shape ", ShapeToString(t.shape), ")"));
  }
  return absl::OkStatus();
}

// Right-aligned broadcasting of `bias` onto [batch, heads, q_len, k_len]: strides per target axis,
// 0 where the bias axis is 1 (or absent).
absl::Status BiasStrides(const Tensor& bias, const int64_t target[4], int64_t strides[4]) {
  if (bias.rank() > 4) {
    return absl::InvalidArgumentError(absl::StrCat("bias.shape: expected rank <= 4 broadcastable to [",
                                                   target[0], ", ", target[1], ", ", target[2], ", ", target[3],
                                                   "], got ", ShapeToString(bias.shape)));
  }
  const int64_t offset = 4 - bias.rank();
  int64_t stride = 1;
  for (int64_t axis = 3; axis >= 0; --axis) {
    strides[axis] = 0;
    if (axis < offset) continue;
    const int64_t extent = bias.dim(axis - offset);
    if (extent != 1 && extent != target[axis]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bias.shape[", axis - offset, "]: expected 1 or ", target[axis], " to broadcast to [", target[0], ", ",
          target[1], ", ", target[2], ", ", target[3], "], got ", extent, " (shape ", ShapeToString(bias.shape), ")"));
    }
    strides[axis] = extent == 1 ? 0 : stride;
    stride *= extent;
  }
  return absl::OkStatus();
}

// -Inf is a mask; NaN and +Inf have no meaning as an additive logit.
absl::Status CheckBiasValues(const Tensor& bias) {
  for (size_t i = 0; i < bias.values.size(); ++i) {
    const float x = bias.values[i];
    if (std::isnan(x) || x == std::numeric_limits<float>::infinity()) {
      return absl::InvalidArgumentError(absl::StrCat("bias[", i, "]: expected a finite number or -Inf (a mask), got ",
                                                     std::isnan(x) ? "NaN" : "+Inf"));
    }
  }
  return absl::OkStatus();
}

// RopeTable's messages name ApplyRope's fields (positions, grid_height, seq_len, ...); Attend's
// are rope.query_positions / rope.key_positions, rope.grid_*, and its lengths are q_len and k_len.
// Renames the message's leading field (and its length) for the table of the keys or the queries.
absl::Status InAttendTerms(const absl::Status& status, bool keys) {
  if (status.ok()) return status;
  static constexpr std::pair<absl::string_view, absl::string_view> kFields[] = {
      {"grid_height, grid_width", "rope.grid_height, rope.grid_width"},
      {"positions_x", "rope.grid_height"},  // Query positions derived from the grid.
      {"positions_y", "rope.grid_width"},
      {"grid_height", "rope.grid_height"},
      {"grid_width", "rope.grid_width"},
      {"rotary_dim", "rope.rotary_dim"},
      {"base", "rope.base"},
      {"kind", "rope.kind"},
  };
  absl::string_view message = status.message();
  std::string renamed;
  for (const auto& [from, to] : kFields) {
    if (absl::StartsWith(message, from) && message.size() > from.size() &&
        (message[from.size()] == ':' || message[from.size()] == '[')) {
      renamed = absl::StrCat(to, message.substr(from.size()));
      break;
    }
  }
  if (renamed.empty() && absl::StartsWith(message, "positions") && message.size() > 9 &&
      (message[9] == ':' || message[9] == '[')) {
    renamed = absl::StrCat(keys ? "rope.key_positions" : "rope.query_positions", message.substr(9));
  }
  if (renamed.empty()) renamed = absl::StrCat("rope (", keys ? "keys" : "queries", "): ", message);
  return absl::Status(status.code(), absl::StrReplaceAll(renamed, {{"seq_len", keys ? "k_len" : "q_len"}}));
}

// The RoPE tables for queries ([q_len] positions) and keys ([k_len]).
struct RopeTables {
  std::shared_ptr<const RopeTable> q, k;
};

// Tables for the positions of an empty call (no batch or no heads, so no data to pay for them),
// as in ApplyRope: a claimed [len, head_dim] table above this is refused before it is built.
constexpr int64_t kMaxEmptyCallTable = int64_t{1} << 16;

absl::StatusOr<RopeTables> BuildRopeTables(const AttentionRope& rope, int64_t q_len, int64_t k_len,
                                           int64_t head_dim) {
  const bool two_d = rope.kind == RopeKind::k2D;
  const int64_t multiple = two_d ? 4 : 2;
  if (head_dim % multiple != 0) {
    return absl::InvalidArgumentError(absl::StrCat("query.shape[3]: rope needs head_dim to be a multiple of ",
                                                   multiple, ", got ", head_dim));
  }
  RopeSpec base_spec;
  base_spec.kind = rope.kind;
  base_spec.pairing = rope.pairing;
  base_spec.base = rope.base;
  base_spec.rotary_dim = rope.rotary_dim;
  RopeSpec k_spec = base_spec;
  RopeSpec q_spec = base_spec;
  const int64_t offset = k_len - q_len;  // Queries sit at the end of the keys (bottom-right).
  if (!two_d) {
    if (rope.grid_height != 0 || rope.grid_width != 0) {
      return absl::InvalidArgumentError("rope.grid_height, rope.grid_width: only for ROPE_2D");
    }
    if (!rope.key_positions.empty() && static_cast<int64_t>(rope.key_positions.size()) != k_len) {
      return absl::InvalidArgumentError(absl::StrCat("rope.key_positions: expected ", k_len,
                                                     " values (k_len) or none, got ", rope.key_positions.size()));
    }
    if (!rope.query_positions.empty() && static_cast<int64_t>(rope.query_positions.size()) != q_len) {
      return absl::InvalidArgumentError(absl::StrCat("rope.query_positions: expected ", q_len,
                                                     " values (q_len) or none, got ", rope.query_positions.size()));
    }
    k_spec.positions = rope.key_positions;
    q_spec.positions = rope.query_positions;
    // Default query positions are offset..k_len-1; with offset 0 those are the defaults
    // (0..q_len-1), left empty so that the table can be shared (RopeTable::Shared).
    if (q_spec.positions.empty() && offset != 0) {
      q_spec.positions.resize(static_cast<size_t>(q_len));
      for (int64_t i = 0; i < q_len; ++i) q_spec.positions[static_cast<size_t>(i)] = static_cast<double>(offset + i);
    }
  } else {
    if (!rope.query_positions.empty() || !rope.key_positions.empty()) {
      return absl::InvalidArgumentError(
          "rope.query_positions, rope.key_positions: ROPE_2D takes grid_height and grid_width");
    }
    k_spec.grid_height = rope.grid_height;
    k_spec.grid_width = rope.grid_width;
    if (offset == 0) {
      q_spec.grid_height = rope.grid_height;  // Queries at the keys' grid positions.
      q_spec.grid_width = rope.grid_width;
    } else if (rope.grid_width > 0) {
      // Query i sits at key index offset + i: (floor(t / W), t mod W).
      q_spec.positions_x.resize(static_cast<size_t>(q_len));
      q_spec.positions_y.resize(static_cast<size_t>(q_len));
      for (int64_t i = 0; i < q_len; ++i) {
        const int64_t t = offset + i;
        const int64_t row = t >= 0 ? t / rope.grid_width : -((-t + rope.grid_width - 1) / rope.grid_width);
        q_spec.positions_x[static_cast<size_t>(i)] = static_cast<double>(row);
        q_spec.positions_y[static_cast<size_t>(i)] = static_cast<double>(t - row * rope.grid_width);
      }
    }
  }
  RopeTables tables;
  absl::StatusOr<std::shared_ptr<const RopeTable>> k_table = RopeTable::Shared(k_spec, k_len, head_dim);
  if (!k_table.ok()) return InAttendTerms(k_table.status(), /*keys=*/true);
  tables.k = *std::move(k_table);
  if (q_len == 0) return tables;  // No query to rotate (a 2-D grid has no positions to give it).
  absl::StatusOr<std::shared_ptr<const RopeTable>> q_table = RopeTable::Shared(q_spec, q_len, head_dim);
  if (!q_table.ok()) return InAttendTerms(q_table.status(), /*keys=*/false);
  tables.q = *std::move(q_table);
  return tables;
}

// BF16 runs SOFTMAX's tile products on oneDNN's native bfloat16 kernels; without them (they
// would be emulated, slower than F32) or for LINEAR it is refused rather than silently run as F32.
absl::Status CheckPrecision(ComputePrecision precision, AttentionKind kind) {
  if (precision != ComputePrecision::kBF16) return absl::OkStatus();
  if (kind == AttentionKind::kLinear) {
    return absl::UnimplementedError(
        "compute_precision: BF16 is implemented for SOFTMAX attention only; use F32 for LINEAR");
  }
  if (!HasNativeBf16()) {
    return absl::UnimplementedError(absl::StrCat(
        "compute_precision: BF16 needs a CPU with native bfloat16 instructions (avx512_bf16 or AMX); this CPU's "
        "oneDNN ISA is ", DnnlIsaName(), "; use F32"));
  }
  return absl::OkStatus();
}

// bfloat16 copies of q, k, v for a BF16 call (after RoPE: the rotation runs in float32), in a
// per-thread buffer reused across calls. Fresh megabytes per call cost a page fault per 4 KiB
// on first touch, measured at 13-19% of a BF16 call at L = 4096 here (perf: 173k faults in 20
// calls); reusing the buffer keeps them to the first call. Buffers above kMaxRetainedBf16 are
// released after the call, so a long-context request does not pin its copies on the thread.
constexpr size_t kMaxRetainedBf16 = size_t{16} << 20;  // Elements (32 MiB).

class Bf16Copies {
 public:
  explicit Bf16Copies(size_t elements) {
    Buffer& buffer = ThreadBuffer();
    if (buffer.capacity < elements) {
      buffer.data.reset();  // Free before allocating: never hold both.
      buffer.data.reset(new uint16_t[std::max<size_t>(elements, 1)]);
      buffer.capacity = elements;
    }
    data_ = buffer.data.get();
  }
  ~Bf16Copies() {
    Buffer& buffer = ThreadBuffer();
    if (buffer.capacity > kMaxRetainedBf16) {
      buffer.data.reset();
      buffer.capacity = 0;
    }
  }
  Bf16Copies(const Bf16Copies&) = delete;
  Bf16Copies& operator=(const Bf16Copies&) = delete;

  uint16_t* data() const { return data_; }

 private:
  struct Buffer {
    std::unique_ptr<uint16_t[]> data;  // Uninitialised: every element used is written first.
    size_t capacity = 0;
  };
  static Buffer& ThreadBuffer() {
    thread_local Buffer buffer;
    return buffer;
  }
  uint16_t* data_ = nullptr;
};

size_t Bf16Elements(const Problem& p) {
  return static_cast<size_t>(p.batch * p.heads * p.q_len * p.head_dim + p.batch * p.kv_heads * p.k_len * p.head_dim +
                             p.batch * p.kv_heads * p.k_len * p.value_dim);
}

// CheckFinite with the scan split over the compute threads: reading q, k and v on the calling
// thread alone took about 1 ms of a 25 ms causal call at L = 2048 while the other core idled.
// Only a failing scan reruns serially, for the message naming the first bad index.
absl::Status CheckFiniteInParallel(absl::Span<const float> values, absl::string_view field) {
  const int64_t n = static_cast<int64_t>(values.size());
  std::atomic<bool> finite{true};
  ParallelForRange(n, n >= (int64_t{1} << 18), [&](int64_t begin, int64_t end) {
    if (!CheckFinite(values.subspan(static_cast<size_t>(begin), static_cast<size_t>(end - begin)), field).ok()) {
      finite.store(false, std::memory_order_relaxed);
    }
  });
  return finite.load() ? absl::OkStatus() : CheckFinite(values, field);
}

// y = bf16(x) on the compute threads (memory-bound: at L = 2048 one thread took ~1 ms of a
// ~20 ms call); returns whether every x is finite.
bool ParallelConvert(const float* x, uint16_t* y, int64_t n) {
  std::atomic<bool> finite{true};
  ParallelForRange(n, n >= (int64_t{1} << 16), [&](int64_t begin, int64_t end) {
    if (!attention_internal::ConvertToBf16(x + begin, y + begin, end - begin)) {
      finite.store(false, std::memory_order_relaxed);
    }
  });
  return finite.load();
}

// Points p's bf16 inputs into `copies` (Bf16Elements(p) elements) and fills them; returns
// whether every input value is finite.
bool ConvertInputs(Problem& p, uint16_t* copies) {
  const int64_t q_size = p.batch * p.heads * p.q_len * p.head_dim;
  const int64_t k_size = p.batch * p.kv_heads * p.k_len * p.head_dim;
  const int64_t v_size = p.batch * p.kv_heads * p.k_len * p.value_dim;
  bool finite = ParallelConvert(p.q, copies, q_size);
  finite &= ParallelConvert(p.k, copies + q_size, k_size);
  finite &= ParallelConvert(p.v, copies + q_size + k_size, v_size);
  p.bf16 = true;
  p.q_bf16 = copies;
  p.k_bf16 = copies + q_size;
  p.v_bf16 = copies + q_size + k_size;
  return finite;
}

// Attend without the overflow redo (see Attend).
absl::StatusOr<AttentionResult> AttendOnce(const Tensor& query, const Tensor& key, const Tensor& value,
                                           const AttentionOptions& options) {
  RETURN_IF_ERROR(CheckRank4(query, "query", "[batch, num_heads, q_len, head_dim]"));
  RETURN_IF_ERROR(CheckRank4(key, "key", "[batch, num_kv_heads, k_len, head_dim]"));
  RETURN_IF_ERROR(CheckRank4(value, "value", "[batch, num_kv_heads, k_len, value_dim]"));
  Problem p;
  p.batch = query.dim(0);
  p.heads = query.dim(1);
  p.q_len = query.dim(2);
  p.head_dim = query.dim(3);
  p.kv_heads = key.dim(1);
  p.k_len = key.dim(2);
  p.value_dim = value.dim(3);
  RETURN_IF_ERROR(CheckExtent(key, "key", 0, "batch (query.shape[0])", p.batch));
  RETURN_IF_ERROR(CheckExtent(value, "value", 0, "batch (query.shape[0])", p.batch));
  RETURN_IF_ERROR(CheckExtent(key, "key", 3, "head_dim (query.shape[3])", p.head_dim));
  RETURN_IF_ERROR(CheckExtent(value, "value", 1, "num_kv_heads (key.shape[1])", p.kv_heads));
  RETURN_IF_ERROR(CheckExtent(value, "value", 2, "k_len (key.shape[2])", p.k_len));
  if (p.kv_heads <= 0 ? p.heads != 0 : p.heads % p.kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("key.shape[1]: num_kv_heads must divide num_heads = ", p.heads,
                                                   " (grouped-query attention), got ", p.kv_heads));
  }
  if (p.head_dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat("query.shape[3]: expected head_dim >= 1, got ", p.head_dim));
  }
  const bool linear = options.kind == AttentionKind::kLinear;
  if (linear && options.bias != nullptr) {
    return absl::InvalidArgumentError("bias: an additive logit bias applies to SOFTMAX attention only, not LINEAR");
  }
  if (linear && options.return_weights) {
    return absl::InvalidArgumentError("return_weights: LINEAR attention has no probability matrix; use SOFTMAX");
  }
  // The kernels compute in float32: a larger scale would become +Inf there.
  if (!(options.scale >= 0 && options.scale <= std::numeric_limits<float>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "scale: expected a number in [0, 3.4028235e38] (float32; 0 means 1/sqrt(head_dim)), got ", NumberToString(options.scale)));
  }
  if (linear && options.scale != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "scale: LINEAR attention has no logits to scale (phi(q) . phi(k), phi = elu + 1); leave it 0, got ",
        NumberToString(options.scale)));
  }
  RETURN_IF_ERROR(CheckPrecision(options.precision, options.kind));
  if (!options.key_lengths.empty()) {
    if (static_cast<int64_t>(options.key_lengths.size()) != p.batch) {
      return absl::InvalidArgumentError(absl::StrCat("key_lengths: expected ", p.batch, " values (one per batch), got ",
                                                     options.key_lengths.size()));
    }
    for (size_t b = 0; b < options.key_lengths.size(); ++b) {
      if (options.key_lengths[b] < 0 || options.key_lengths[b] > p.k_len) {
        return absl::InvalidArgumentError(absl::StrCat("key_lengths[", b, "]: expected a value in [0, ", p.k_len,
                                                       "] (k_len), got ", options.key_lengths[b]));
      }
    }
    p.key_lengths = options.key_lengths;
  } else {
    p.key_lengths.assign(static_cast<size_t>(p.batch), p.k_len);
  }
  const int64_t target[4] = {p.batch, p.heads, p.q_len, p.k_len};
  if (options.bias != nullptr) {
    RETURN_IF_ERROR(BiasStrides(*options.bias, target, p.bias_stride));
    RETURN_IF_ERROR(CheckBiasValues(*options.bias));
    p.bias = options.bias->values.data();
  }
  RETURN_IF_ERROR(CheckedElementCount(query.shape, "query", options.max_elements).status());
  RETURN_IF_ERROR(CheckedElementCount(key.shape, "key", options.max_elements).status());
  RETURN_IF_ERROR(CheckedElementCount(value.shape, "value", options.max_elements).status());
  const Shape out_shape = {p.batch, p.heads, p.q_len, p.value_dim};
  ASSIGN_OR_RETURN(const int64_t out_elements, CheckedElementCount(out_shape, "output", options.max_elements));
  if (options.return_weights) {
    ASSIGN_OR_RETURN(const int64_t weight_elements,
                     CheckedElementCount({p.batch, p.heads, p.q_len, p.k_len}, "weights (return_weights)",
                                         options.max_weight_elements));
    // Output and weights travel in one response: together they must fit where one tensor may.
    if (weight_elements > options.max_elements - out_elements) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "return_weights: output ", ShapeToString(out_shape), " and weights [", p.batch, ", ", p.heads, ", ", p.q_len,
          ", ", p.k_len, "] hold ", out_elements, " + ", weight_elements, " elements together; at most ",
          options.max_elements, " fit in one response"));
    }
  }
  if (linear) {
    // Each compute thread keeps a [head_dim, value_dim] state, which the inputs do not bound.
    RETURN_IF_ERROR(
        CheckedElementCount({p.head_dim, p.value_dim}, "LINEAR state [head_dim, value_dim]", options.max_elements)
            .status());
  }
  // BF16 without RoPE converts the inputs as they come and checks them in the same pass (one read
  // of q, k and v instead of two); every other call checks them here.
  const bool bf16 = options.precision == ComputePrecision::kBF16;
  const bool check_while_converting = bf16 && !options.rope.has_value();
  auto check_finite = [&]() -> absl::Status {
    RETURN_IF_ERROR(CheckFiniteInParallel(query.values, "query"));
    RETURN_IF_ERROR(CheckFiniteInParallel(key.values, "key"));
    return CheckFiniteInParallel(value.values, "value");
  };
  if (!check_while_converting) RETURN_IF_ERROR(check_finite());
  p.causal = options.causal;
  p.scale = static_cast<float>(options.scale == 0 ? 1.0 / std::sqrt(static_cast<double>(p.head_dim)) : options.scale);
  p.cancelled = options.cancelled ? &options.cancelled : nullptr;
  p.q = query.values.data();
  p.k = key.values.data();
  p.v = value.values.data();

  // RoPE: SOFTMAX rotates q and k here; LINEAR rotates phi(q), phi(k) inside its kernel.
  RopeTables tables;
  std::vector<float> q_rotated, k_rotated;
  if (options.rope.has_value()) {
    if ((p.batch == 0 || p.heads == 0) && std::max(p.q_len, p.k_len) > kMaxEmptyCallTable / p.head_dim) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "rope: an empty call (query ", ShapeToString(query.shape), ", key ", ShapeToString(key.shape),
          ") claims RoPE tables of ", std::max(p.q_len, p.k_len), " x ", p.head_dim, " entries; at most ",
          kMaxEmptyCallTable, " when there is nothing to rotate"));
    }
    ASSIGN_OR_RETURN(tables, BuildRopeTables(*options.rope, p.q_len, p.k_len, p.head_dim));
  }

  AttentionResult result;
  result.output = Tensor::Zeros(out_shape);
  p.out = result.output.values.data();
  if (options.return_weights) {
    result.weights = Tensor::Zeros({p.batch, p.heads, p.q_len, p.k_len});
    p.weights = result.weights->values.data();
  }
  // No query row, or nothing to return: the zeros (or empty tensors) are the answer, once the
  // inputs are known finite (BF16 without RoPE would otherwise check them while converting).
  if (check_while_converting && (p.batch == 0 || p.heads == 0 || p.q_len == 0 || p.value_dim == 0)) {
    RETURN_IF_ERROR(check_finite());
  }
  if (p.batch == 0 || p.heads == 0 || p.q_len == 0 || (p.value_dim == 0 && !options.return_weights)) return result;

  if (options.rope.has_value()) {
    if (linear) {
      p.q_rope = tables.q.get();
      p.k_rope = tables.k.get();
    } else {
      q_rotated.resize(query.values.size());
      k_rotated.resize(key.values.size());
      tables.q->Apply(query.values.data(), q_rotated.data(), p.batch * p.heads);
      tables.k->Apply(key.values.data(), k_rotated.data(), p.batch * p.kv_heads);
      p.q = q_rotated.data();
      p.k = k_rotated.data();
    }
  }

  std::optional<Bf16Copies> bf16_copies;
  if (bf16) {
    bf16_copies.emplace(Bf16Elements(p));
    // A non-finite input: the scan names it. (With RoPE the inputs were checked above, and a
    // rotation can overflow only values near float's maximum, which then go on as in F32.)
    if (!ConvertInputs(p, bf16_copies->data()) && check_while_converting) RETURN_IF_ERROR(check_finite());
  }

  RETURN_IF_ERROR(linear ? attention_internal::RunLinear(p) : attention_internal::RunSoftmax(p));
  return result;
}

bool AllFiniteInParallel(absl::Span<const float> values) {
  const int64_t n = static_cast<int64_t>(values.size());
  std::atomic<bool> finite{true};
  ParallelForRange(n, n >= (int64_t{1} << 18), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      if (!std::isfinite(values[static_cast<size_t>(i)])) {
        finite.store(false, std::memory_order_relaxed);
        return;
      }
    }
  });
  return finite.load();
}

}  // namespace

absl::StatusOr<AttentionResult> Attend(const Tensor& query, const Tensor& key, const Tensor& value,
                                       const AttentionOptions& options) {
  ASSIGN_OR_RETURN(AttentionResult result, AttendOnce(query, key, value, options));
  // SOFTMAX accumulates sum_j p_j v_j (p_j <= 1) before dividing by sum_j p_j (>= 1): with values
  // near float32's maximum over k_len that sum overflows although the answer, a convex
  // combination of values, is finite. (The inputs, the logits and LINEAR's sums are checked
  // before and inside the kernels, so nothing else leaves a non-finite output.) Those elements
  // are computed again with the values scaled down by a power of two, exactly, and scaled back;
  // the others keep their first, unscaled result.
  if (options.kind != AttentionKind::kSoftmax || AllFiniteInParallel(result.output.values)) return result;
  float max_abs = 0.0f;
  for (float x : value.values) max_abs = std::max(max_abs, std::abs(x));
  const int64_t k_len = key.dim(2);
  // 2^-shift * max_abs * k_len <= float32's maximum / 4.
  const int shift = std::max(
      1, static_cast<int>(std::ceil(std::log2(static_cast<double>(max_abs) * static_cast<double>(k_len) /
                                              (std::numeric_limits<float>::max() / 4.0)))));
  Tensor scaled = value;
  for (float& x : scaled.values) x = std::ldexp(x, -shift);
  AttentionOptions again_options = options;
  again_options.return_weights = false;  // The probabilities do not depend on the values.
  ASSIGN_OR_RETURN(AttentionResult again, AttendOnce(query, key, scaled, again_options));
  for (size_t i = 0; i < result.output.values.size(); ++i) {
    float& out = result.output.values[i];
    if (std::isfinite(out)) continue;
    out = std::ldexp(again.output.values[i], shift);
    if (!std::isfinite(out)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "output[", i, "]: a weighted mean of values up to ", NumberToString(max_abs),
          " in magnitude rounds beyond float32's maximum"));
    }
  }
  return result;
}

}  // namespace primserve
