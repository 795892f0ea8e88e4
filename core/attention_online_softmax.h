// Internal to the SOFTMAX attention kernel: the element-wise work between its two tile products
// (Dao et al. 2022, "online softmax"), one pass per score row, vectorised for AVX-512 or
// AVX2 + FMA, whichever is the widest the CPU has (chosen at run time), with a portable
// fallback, and the float -> bfloat16 rounding the BF16 kernel needs.
//
// Base 2: the logits here are natural logits times log2(e) (the kernel folds log2(e) into the
// scale of its q k^T product), so a probability is 2^(s - m), with no multiplication per element.
//
// Lazy rescaling: m is a reference, not necessarily the running maximum. A key tile whose logits
// stay within kHeadroom above m is exponentiated against m in one pass (no separate maximum
// pass, no rescale of the accumulator); only a logit above m + kHeadroom moves m (to that tile's
// maximum). So p <= 2^kHeadroom, and the normaliser and accumulator stay exact in float.
//
// Layout: a score tile is `rows` rows of `ld` floats, of which the first `cols` belong to the
// tile; row r's first visible[r] columns are visible (the rest are masked by causality or key
// padding).
//
// Example (one key tile of one query tile):
//   OnlineSoftmaxTile tile{scores, ld, rows, cols, visible, row_max, row_sum, alpha, nullptr, 0};
//   UpdateOnlineSoftmax(tile);  // scores now hold 2^(s - m); rescale acc rows by alpha[r].
#ifndef PRIMSERVE_CORE_ATTENTION_ONLINE_SOFTMAX_H_
#define PRIMSERVE_CORE_ATTENTION_ONLINE_SOFTMAX_H_

#include <cstdint>

namespace primserve {
namespace attention_internal {

// A probability is at most 2^kHeadroom: logits up to kHeadroom above the reference m do not move it.
constexpr float kHeadroom = 8.0f;

struct OnlineSoftmaxTile {
  float* scores = nullptr;         // [rows, ld] base-2 logits in; 2^(s - m) out (f32 mode).
  int64_t ld = 0;
  int64_t rows = 0, cols = 0;
  const int64_t* visible = nullptr;  // [rows], each in [0, cols].
  float* row_max = nullptr;          // [rows] reference m (-Inf before any visible key).
  float* row_sum = nullptr;          // [rows] running normaliser l = sum of 2^(s - m).
  float* alpha = nullptr;            // [rows] out: 2^(m_old - m_new), the accumulator's rescale.
  uint16_t* probs_bf16 = nullptr;    // Optional [rows, ld_bf16]: 2^(s - m_new) as bfloat16
  int64_t ld_bf16 = 0;               // (rounded to nearest even) instead of in `scores`.
};

// For each row: m_new = m if every visible logit is at most m + kHeadroom, else the maximum of
// the visible logits (also when m was -Inf); p = 2^(s - m_new) on visible columns and exactly 0
// on the rest (up to `cols`), written to probs_bf16 if given, else in place; l = l * alpha +
// sum(p) with alpha = 2^(m - m_new) (1 when m did not move, 0 when it was -Inf). A row with
// nothing visible so far (m_new = -Inf) gets p = 0, alpha = 1 and keeps m, l. Returns false
// when a visible logit is +Inf or NaN (an overflowed product, alone or meeting a -Inf bias):
// the tile's results are then meaningless.
[[nodiscard]] bool UpdateOnlineSoftmax(const OnlineSoftmaxTile& tile);

// x[i] = 2^(x[i] - m) for i < n (the probabilities of a finished row, times l); x[i] - m must
// be at most kHeadroom.
void Exp2Shifted(float* x, int64_t n, float m);

// x[i] *= a for i < n.
void ScaleRow(float* x, int64_t n, float a);

// The instruction sets of the passes above. The widest the CPU has runs, unless a test caps it
// to check a narrower path against the same reference.
enum class SoftmaxIsa { kPortable = 0, kAvx2 = 1, kAvx512 = 2 };

// The widest instruction set this CPU offers the passes (AVX2 counts only with FMA).
SoftmaxIsa BestSoftmaxIsa();

// Tests only: run the passes on at most `isa` from now on (process-wide); returns the old cap.
SoftmaxIsa CapSoftmaxIsaForTesting(SoftmaxIsa isa);

// y[i] = bfloat16 bits of x[i], rounded to nearest even (on CPUs with AVX512_BF16, float32
// denormals, below 1.2e-38, become 0). Returns whether every x[i] is finite; y is meaningless
// where one is not (and a finite value above bfloat16's largest, about 3.39e38, rounds to Inf).
bool ConvertToBf16(const float* x, uint16_t* y, int64_t n);

}  // namespace attention_internal
}  // namespace primserve

#endif  // PRIMSERVE_CORE_ATTENTION_ONLINE_SOFTMAX_H_
