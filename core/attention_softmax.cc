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
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/attention_internal.h"
#include "core/dnnl_context.h"
#include "core/multiversion.h"
#include "core/parallel.h"
#include "core/tile_matmul.h"
#include "core/vector_math.h"

namespace primserve {
namespace attention_internal {
namespace {

constexpr int64_t kBlockQ = 128;
constexpr int64_t kBlockK = 256;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The row maximum with GCC vector types: a max reduction of floats does not auto-vectorise
// (std::max is not IEEE maxNum), but an element-wise select on 8-float vectors does.
PRIMSERVE_MULTIVERSION
float RowMax(const float* x, int64_t n) {
  typedef float Vec8 __attribute__((vector_size(32)));
  Vec8 lanes = {kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf};
  const int64_t full = n - n % 8;
  for (int64_t i = 0; i < full; i += 8) {
    Vec8 v;
    std::memcpy(&v, x + i, sizeof v);
    lanes = v > lanes ? v : lanes;
  }
  float m = kNegInf;
  for (int64_t i = full; i < n; ++i) m = x[i] > m ? x[i] : m;
  for (int t = 0; t < 8; ++t) m = lanes[t] > m ? lanes[t] : m;
  return m;
}

// x[i] = exp(x[i] - m) for i < n; returns their sum.
PRIMSERVE_MULTIVERSION
float ExpShiftedAndSum(float* x, int64_t n, float m) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    const float e = ExpNonPositive(x[i] - m);
    x[i] = e;
    sum += e;
  }
  return sum;
}

PRIMSERVE_MULTIVERSION
void ScaleRow(float* x, int64_t n, float a) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

// x[i] += bias[i * stride] (stride 1, or 0 for a broadcast column axis).
PRIMSERVE_MULTIVERSION
void AddBias(float* x, const float* bias, int64_t stride, int64_t n) {
  if (stride == 0) {
    const float b = bias[0];
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) x[i] += b;
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) x[i] += bias[i];
  }
}

// Per-thread working set: one score tile, one accumulator tile, row statistics, a stream and
// the primitives' scratchpad.
struct Workspace {
  std::vector<float> scores;  // [kBlockQ, kBlockK]
  std::vector<float> acc;     // [kBlockQ, value_dim]
  std::vector<float> row_max, row_sum;
  std::vector<char> scratchpad;
  dnnl::stream stream;

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
      ws.acc.resize(static_cast<size_t>(kBlockQ * p_.value_dim));
      ws.row_max.resize(kBlockQ);
      ws.row_sum.resize(kBlockQ);
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
  absl::StatusOr<std::shared_ptr<const TileMatmul>> ScoresMatmul(int64_t mq, int64_t nk) const {
    MatmulShape shape;
    shape.m = mq;
    shape.n = nk;
    shape.k = p_.head_dim;
    shape.lda = p_.head_dim;
    shape.ldb = p_.head_dim;
    shape.ldc = kBlockK;
    shape.b_transposed = true;
    shape.scale = p_.scale;
    return TileMatmul::Get(shape);
  }

  absl::StatusOr<std::shared_ptr<const TileMatmul>> ValuesMatmul(int64_t mq, int64_t nk) const {
    MatmulShape shape;
    shape.m = mq;
    shape.n = p_.value_dim;
    shape.k = nk;
    shape.lda = kBlockK;
    shape.ldb = p_.value_dim;
    shape.ldc = p_.value_dim;
    shape.accumulate = true;
    return TileMatmul::Get(shape);
  }

  // S = scale * q k^T (+ bias) for rows [i0, i0 + mq) and keys [j0, j0 + nk) into ws.scores.
  absl::Status Scores(int64_t b, int64_t h, int64_t i0, int64_t mq, int64_t j0, int64_t nk, Workspace& ws) const {
    absl::StatusOr<std::shared_ptr<const TileMatmul>> matmul = ScoresMatmul(mq, nk);
    if (!matmul.ok()) return matmul.status();
    const float* q = p_.q_rows(b, h) + i0 * p_.head_dim;
    const float* k = p_.k_rows(b, h) + j0 * p_.head_dim;
    (*matmul)->Execute(ws.stream, q, k, ws.scores.data(), ws.Scratch(**matmul));
    if (p_.bias != nullptr) {
      for (int64_t r = 0; r < mq; ++r) {
        const float* bias_row = p_.bias + b * p_.bias_stride[0] + h * p_.bias_stride[1] +
                                (i0 + r) * p_.bias_stride[2] + j0 * p_.bias_stride[3];
        AddBias(ws.scores.data() + r * kBlockK, bias_row, p_.bias_stride[3], nk);
      }
    }
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
        float* row = ws.scores.data() + r * kBlockK;
        const int64_t visible = std::clamp<int64_t>(p_.VisibleEnd(b, i0 + r) - j0, 0, nk);
        const float tile_max = visible > 0 ? RowMax(row, visible) : kNegInf;
        const float m_new = std::max(ws.row_max[r], tile_max);
        if (m_new == kNegInf) {  // Nothing visible yet (masked, or every bias -Inf).
          std::fill(row, row + nk, 0.0f);
          continue;
        }
        const float alpha = ExpNonPositive(ws.row_max[r] - m_new);  // 0 when m_old = -Inf.
        const float tile_sum = ExpShiftedAndSum(row, visible, m_new);
        std::fill(row + visible, row + nk, 0.0f);
        ws.row_sum[r] = ws.row_sum[r] * alpha + tile_sum;
        ws.row_max[r] = m_new;
        if (alpha != 1.0f) ScaleRow(ws.acc.data() + r * dv, dv, alpha);
      }
      if (dv == 0) continue;  // Empty values: only the weights (if asked) are non-trivial.
      absl::StatusOr<std::shared_ptr<const TileMatmul>> pv = ValuesMatmul(mq, nk);
      if (!pv.ok()) return pv.status();
      (*pv)->Execute(ws.stream, ws.scores.data(), p_.v_rows(b, h) + j0 * dv, ws.acc.data(), ws.Scratch(**pv));
    }
    float* out = p_.out_rows(b, h) + i0 * dv;
    for (int64_t r = 0; r < mq; ++r) {
      // l = 0: the row saw no key; its output stays zero (never 0/0).
      if (ws.row_sum[r] > 0.0f) {
        const float inv = 1.0f / ws.row_sum[r];
        const float* acc = ws.acc.data() + r * dv;
        for (int64_t c = 0; c < dv; ++c) out[r * dv + c] = acc[c] * inv;
      }
    }
    if (p_.weights != nullptr) return Weights(b, h, i0, mq, key_end, ws);
    return absl::OkStatus();
  }

  // Probabilities exp(s - m) / l with the final m and l: a second q k^T pass over the visible
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
        ExpShiftedAndSum(row, visible, ws.row_max[r]);
        const float inv = 1.0f / ws.row_sum[r];
        float* w = weights + r * p_.k_len + j0;
        for (int64_t c = 0; c < visible; ++c) w[c] = row[c] * inv;
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
