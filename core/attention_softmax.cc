// Blocked ("flash") softmax attention (Dao et al. 2022, on the CPU).
//
// For each (batch, head, tile of kBlockQ query rows), key tiles of kBlockK columns are visited
// in order, keeping per row the running maximum m and normaliser l and an accumulator of
// sum_j exp(s_j - m) v_j. When a tile raises the maximum, the accumulator and l are rescaled by
// exp(m_old - m_new), so after the last tile acc / l is exactly softmax(s) v, while only one
// [kBlockQ, kBlockK] score tile per thread ever exists. Both tile products (q k^T, with the
// scale folded in as an output scale, and p v, accumulated by a sum post-op) run on cached
// oneDNN matmul primitives. Key tiles past the last visible key of a query tile (causal, key
// padding) are never computed, so causal attention costs about half.
//
// The softmax runs in base 2 (attention_online_softmax.h): log2(e) is folded into the q k^T
// output scale (and multiplies the bias as it is added), so each probability is 2^(s - m)
// without a multiplication of its own.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/attention_internal.h"
#include "core/attention_online_softmax.h"
#include "core/dnnl_context.h"
#include "core/multiversion.h"
#include "core/parallel.h"
#include "core/tile_matmul.h"
#include "core/vector_math.h"

namespace primserve {
namespace attention_internal {
namespace {

constexpr int64_t kBlockQ = 128;
constexpr int64_t kBlockK = 512;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kLog2e = 1.44269504088896341f;

// x[i] += log2(e) bias[i * stride] (stride 1, or 0 for a broadcast column axis). A finite bias
// whose base-2 logit would pass float's range (below about -2.4e38, as torch.finfo(float32).min
// masks are) stops at -FLT_MAX instead of becoming a -Inf mask: a row of such logits stays a
// softmax over them (uniform, as in PyTorch), and next to ordinary logits they still get p = 0.
// Only a -Inf bias masks.
PRIMSERVE_MULTIVERSION
void AddBias(float* x, const float* bias, int64_t stride, int64_t n) {
  constexpr float kLowest = -std::numeric_limits<float>::max();
  if (stride == 0) {
    const float b = bias[0] * kLog2e;
    const float floor = bias[0] == kNegInf ? kNegInf : kLowest;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float t = x[i] + b;
      x[i] = t < floor ? floor : t;  // NaN (+Inf q.k against a -Inf bias) stays NaN: reported.
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float t = std::fma(bias[i], kLog2e, x[i]);
      const float floor = bias[i] == kNegInf ? kNegInf : kLowest;
      x[i] = t < floor ? floor : t;
    }
  }
}

// y[i] = x[i] * a (a finished row of the accumulator, times 1 / l).
PRIMSERVE_MULTIVERSION
void ScaleRowInto(const float* x, int64_t n, float a, float* y) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * a;
}

// One tile product shape with its primitive and this thread's bound dnnl::memory arguments.
struct BoundMatmul {
  int64_t m = -1, n = -1;
  std::shared_ptr<const TileMatmul> matmul;
  TileMatmulArgs args;
};

// Tiles are full [kBlockQ, kBlockK] ones except at the end of a query tile's key range (causal,
// padding) or of the sequence, where a few edge shapes recur (causal: key_end - j0 steps by
// kBlockQ, so kBlockK / kBlockQ of them). A handful of slots per thread, found by shape, skip the
// process-wide cache's lock and hash and the memory objects' construction (a malloc each) on all
// but the first tile of a shape; with one slot, causal calls rebound twice per query tile.
struct BoundSlots {
  static constexpr int kSlots = 8;
  BoundMatmul slots[kSlots];
  int next = 0;  // Round-robin victim when no slot holds the shape.

  BoundMatmul& For(int64_t m, int64_t n) {
    for (BoundMatmul& slot : slots) {
      if (slot.m == m && slot.n == n) return slot;
    }
    BoundMatmul& victim = slots[next];
    next = (next + 1) % kSlots;
    return victim;
  }
};

// Per-thread working set: one score tile (and its bfloat16 probabilities for BF16), one
// accumulator tile, row statistics, a stream, the primitives' scratchpad and bound arguments.
struct Workspace {
  std::vector<float> scores;     // [kBlockQ, kBlockK]
  std::vector<uint16_t> probs;   // [kBlockQ, kBlockK] bfloat16 (BF16 only)
  std::vector<float> acc;        // [min(kBlockQ, q_len), value_dim]
  std::vector<float> row_max, row_sum, alpha;
  std::vector<int64_t> visible;  // Per row of the tile: visible keys of the current key tile.
  std::vector<char> scratchpad;
  dnnl::stream stream;
  BoundSlots scores_mm, values_mm;

  void* Scratch(const TileMatmul& matmul) {
    if (scratchpad.size() < matmul.scratchpad_bytes()) scratchpad.resize(matmul.scratchpad_bytes());
    return scratchpad.data();
  }
};

class SoftmaxKernel {
 public:
  explicit SoftmaxKernel(const Problem& p) : p_(p) {}

  absl::Status Run() {
    const int64_t q_tiles = (p_.q_len + kBlockQ - 1) / kBlockQ;
    auto init = [&](Workspace& ws) {
      ws.stream = dnnl::stream(DnnlEngine());
      ws.scores.resize(static_cast<size_t>(kBlockQ * kBlockK));
      if (p_.bf16) ws.probs.resize(static_cast<size_t>(kBlockQ * kBlockK));
      // Sized by the rows a tile really has: with a few query rows and a wide value_dim, a full
      // kBlockQ-row accumulator per thread could outgrow the whole output many times over.
      ws.acc.resize(static_cast<size_t>(std::min(kBlockQ, p_.q_len) * p_.value_dim));
      ws.row_max.resize(kBlockQ);
      ws.row_sum.resize(kBlockQ);
      ws.alpha.resize(kBlockQ);
      ws.visible.resize(kBlockQ);
    };
    auto run = [&](int64_t unit, Workspace& ws) {
      // Last query tiles first: under a causal mask they see the most keys, and starting the
      // longest units first balances the dynamic schedule.
      const int64_t qt = q_tiles - 1 - unit % q_tiles;
      const int64_t bh = unit / q_tiles;
      return RunUnit(bh / p_.heads, bh % p_.heads, qt * kBlockQ, ws);
    };
    return ForEachUnit<Workspace>(p_, p_.batch * p_.heads * q_tiles, "attention", init, run);
  }

 private:
  // The slot holding the primitive for an [m, n] tile product, from the workspace's slots or
  // the process-wide cache.
  absl::StatusOr<BoundMatmul*> Bind(BoundSlots& slots, int64_t m, int64_t n, const MatmulShape& shape) const {
    BoundMatmul& slot = slots.For(m, n);
    if (slot.m == m && slot.n == n) return &slot;
    absl::StatusOr<std::shared_ptr<const TileMatmul>> matmul = TileMatmul::Get(shape);
    if (!matmul.ok()) return matmul.status();
    slot.matmul = *std::move(matmul);
    slot.m = m;
    slot.n = n;
    return &slot;
  }

  // S = log2(e) scale q k^T: [mq, head_dim] x [nk, head_dim]^T into rows of kBlockK.
  absl::StatusOr<BoundMatmul*> BindScores(int64_t mq, int64_t nk, Workspace& ws) const {
    MatmulShape shape;
    shape.m = mq;
    shape.n = nk;
    shape.k = p_.head_dim;
    shape.lda = p_.head_dim;
    shape.ldb = p_.head_dim;
    shape.ldc = kBlockK;
    shape.b_transposed = true;
    shape.scale = p_.scale * kLog2e;
    shape.bf16 = p_.bf16;
    return Bind(ws.scores_mm, mq, nk, shape);
  }

  // acc += P v: [mq, nk] (rows of kBlockK) x [nk, value_dim].
  absl::StatusOr<BoundMatmul*> BindValues(int64_t mq, int64_t nk, Workspace& ws) const {
    MatmulShape shape;
    shape.m = mq;
    shape.n = p_.value_dim;
    shape.k = nk;
    shape.lda = kBlockK;
    shape.ldb = p_.value_dim;
    shape.ldc = p_.value_dim;
    shape.accumulate = true;
    shape.bf16 = p_.bf16;
    return Bind(ws.values_mm, mq, nk, shape);
  }

  // S = log2(e) (scale q k^T + bias) for rows [i0, i0 + mq) and keys [j0, j0 + nk) into ws.scores.
  absl::Status Scores(int64_t b, int64_t h, int64_t i0, int64_t mq, int64_t j0, int64_t nk, Workspace& ws) const {
    absl::StatusOr<BoundMatmul*> bound = BindScores(mq, nk, ws);
    if (!bound.ok()) return bound.status();
    const TileMatmul& matmul = *(*bound)->matmul;
    const void* q = p_.bf16 ? static_cast<const void*>(p_.q_bf16_rows(b, h) + i0 * p_.head_dim)
                            : static_cast<const void*>(p_.q_rows(b, h) + i0 * p_.head_dim);
    const void* k = p_.bf16 ? static_cast<const void*>(p_.k_bf16_rows(b, h) + j0 * p_.head_dim)
                            : static_cast<const void*>(p_.k_rows(b, h) + j0 * p_.head_dim);
    matmul.Execute(ws.stream, (*bound)->args, q, k, ws.scores.data(), ws.Scratch(matmul));
    if (p_.bias != nullptr) {
      for (int64_t r = 0; r < mq; ++r) {
        const float* bias_row = p_.bias + b * p_.bias_stride[0] + h * p_.bias_stride[1] +
                                (i0 + r) * p_.bias_stride[2] + j0 * p_.bias_stride[3];
        AddBias(ws.scores.data() + r * kBlockK, bias_row, p_.bias_stride[3], nk);
      }
    }
    return absl::OkStatus();
  }

  // acc = acc * alpha (per row) + P v for keys [j0, j0 + nk), P from ws.scores or ws.probs.
  absl::Status Values(int64_t b, int64_t h, int64_t mq, int64_t j0, int64_t nk, Workspace& ws) const {
    const int64_t dv = p_.value_dim;
    for (int64_t r = 0; r < mq; ++r) {
      if (ws.alpha[r] != 1.0f) ScaleRow(ws.acc.data() + r * dv, dv, ws.alpha[r]);
    }
    absl::StatusOr<BoundMatmul*> bound = BindValues(mq, nk, ws);
    if (!bound.ok()) return bound.status();
    const TileMatmul& matmul = *(*bound)->matmul;
    const void* probs = p_.bf16 ? static_cast<const void*>(ws.probs.data()) : ws.scores.data();
    const void* v = p_.bf16 ? static_cast<const void*>(p_.v_bf16_rows(b, h) + j0 * dv)
                            : static_cast<const void*>(p_.v_rows(b, h) + j0 * dv);
    matmul.Execute(ws.stream, (*bound)->args, probs, v, ws.acc.data(), ws.Scratch(matmul));
    return absl::OkStatus();
  }

  absl::Status RunUnit(int64_t b, int64_t h, int64_t i0, Workspace& ws) const {
    const int64_t mq = std::min(kBlockQ, p_.q_len - i0);
    const int64_t dv = p_.value_dim;
    // Rows see monotonically more keys, so the last row bounds the key range of the tile.
    const int64_t key_end = p_.VisibleEnd(b, i0 + mq - 1);
    std::fill(ws.row_max.begin(), ws.row_max.end(), kNegInf);
    std::fill(ws.row_sum.begin(), ws.row_sum.end(), 0.0f);
    std::fill(ws.acc.begin(), ws.acc.begin() + mq * dv, 0.0f);
    for (int64_t j0 = 0; j0 < key_end; j0 += kBlockK) {
      // Poll between key tiles too: one unit of a long-context call can be long.
      if (j0 > 0 && p_.Cancelled()) return absl::CancelledError("attention: cancelled by the caller");
      const int64_t nk = std::min(kBlockK, key_end - j0);
      absl::Status s = Scores(b, h, i0, mq, j0, nk, ws);
      if (!s.ok()) return s;
      for (int64_t r = 0; r < mq; ++r) {
        ws.visible[r] = std::clamp<int64_t>(p_.VisibleEnd(b, i0 + r) - j0, 0, nk);
      }
      OnlineSoftmaxTile tile;
      tile.scores = ws.scores.data();
      tile.ld = kBlockK;
      tile.rows = mq;
      tile.cols = nk;
      tile.visible = ws.visible.data();
      tile.row_max = ws.row_max.data();
      tile.row_sum = ws.row_sum.data();
      tile.alpha = ws.alpha.data();
      tile.probs_bf16 = p_.bf16 ? ws.probs.data() : nullptr;
      tile.ld_bf16 = kBlockK;
      if (!UpdateOnlineSoftmax(tile)) {
        return absl::InvalidArgumentError(
            "attention: a logit (scale * q.k + bias) overflows float32; scale the query or key down");
      }
      if (dv == 0) continue;  // Empty values: only the weights (if asked) are non-trivial.
      s = Values(b, h, mq, j0, nk, ws);
      if (!s.ok()) return s;
    }
    float* out = p_.out_rows(b, h) + i0 * dv;
    for (int64_t r = 0; r < mq; ++r) {
      // l = 0: the row saw no key; its output stays zero (never 0/0).
      if (ws.row_sum[r] > 0.0f) ScaleRowInto(ws.acc.data() + r * dv, dv, 1.0f / ws.row_sum[r], out + r * dv);
    }
    if (p_.weights != nullptr) return Weights(b, h, i0, mq, key_end, ws);
    return absl::OkStatus();
  }

  // Probabilities 2^(s - m) / l with the final m and l: a second q k^T pass over the visible
  // keys, only when the caller asked for the weights.
  absl::Status Weights(int64_t b, int64_t h, int64_t i0, int64_t mq, int64_t key_end, Workspace& ws) const {
    float* weights = p_.weights + ((b * p_.heads + h) * p_.q_len + i0) * p_.k_len;
    for (int64_t j0 = 0; j0 < key_end; j0 += kBlockK) {
      const int64_t nk = std::min(kBlockK, key_end - j0);
      absl::Status s = Scores(b, h, i0, mq, j0, nk, ws);
      if (!s.ok()) return s;
      for (int64_t r = 0; r < mq; ++r) {
        const int64_t visible = std::clamp<int64_t>(p_.VisibleEnd(b, i0 + r) - j0, 0, nk);
        if (visible == 0 || ws.row_sum[r] <= 0.0f) continue;
        float* row = ws.scores.data() + r * kBlockK;
        Exp2Shifted(row, visible, ws.row_max[r]);
        ScaleRowInto(row, visible, 1.0f / ws.row_sum[r], weights + r * p_.k_len + j0);
      }
    }
    return absl::OkStatus();
  }

  const Problem& p_;
};

}  // namespace

absl::Status RunSoftmax(const Problem& problem) { return SoftmaxKernel(problem).Run(); }

}  // namespace attention_internal
}  // namespace primserve
