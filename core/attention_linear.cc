// Linear attention (Katharopoulos et al. 2020; MATH.md section 6), phi = elu + 1:
//
//   out_i = phi(q_i)^T S_i / (phi(q_i)^T z_i),  S_i = sum_{j visible} phi(k_j) v_j^T,
//                                               z_i = sum_{j visible} phi(k_j)
//
// One code path serves every mask. Query rows are processed in chunks of kChunk; a running
// state (S, z) holds the keys that every row of the chunk sees, absorbed with one oneDNN matmul
// (phi(K)^T V); keys that only some rows of the chunk see (the causal diagonal block) are added
// by an explicit masked [chunk, keys] product. Non-causal attention absorbs all keys once, so
// the cost is O(L D Dv) either way, never O(L^2). The query heads that share a key/value head
// (grouped-query attention) share its phi(K) and its state: each chunk's keys are absorbed once
// and then serve every head of the group (absorbing them per query head made a 4096-key call of
// 8192 query heads on one key/value head take 15 s instead of about 0.2).
//
// With RoPE (Su, archive 8265) the numerator uses rotated phi(q), phi(k) and the denominator
// the unrotated ones, so S is built from rotated phi(k) and z from unrotated phi(k).
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/attention_internal.h"
#include "core/dnnl_context.h"
#include "core/parallel.h"
#include "core/tile_matmul.h"
#include "core/vector_math.h"

namespace primserve {
namespace attention_internal {
namespace {

constexpr int64_t kChunk = 64;
// Below this a row's denominator (and with it the float numerator) has lost float's precision.
constexpr double kMinDenominator = 1e-30;

// phi(x) = elu(x) + 1 of a block of n values, up to one positive factor: x + 1 for x > 0,
// exp(x) otherwise (always > 0). out_i is unchanged when every phi(q_i) value of a row, or every
// phi(k_j) value of a head, is multiplied by one c > 0 (numerator and denominator both scale by
// c; a rotation is linear). So a block whose largest x is m <= 0 gets exp(x - m) = phi(x) / phi(m):
// its largest value is 1, and a row or a head of logits far below zero (all under about -87,
// where exp underflows float) keeps its weights instead of becoming 0 / 0. m is taken over the
// first n_max values (the keys some row sees: padding must not set the scale), n_max >= 1.
void Phi(const float* x, float* y, int64_t n, int64_t n_max) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n_max; ++i) m = std::max(m, x[i]);
  if (m > 0.0f) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] + 1.0f : ExpNonPositive(x[i]);
  } else {
    // Values past n_max (keys no row sees) may lie above m; their phi is never used, and the
    // clamp keeps ExpNonPositive's argument <= 0 (fuzzer: a padded key of 1e33).
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = ExpNonPositive(std::min(x[i] - m, 0.0f));
  }
}

struct Workspace {
  std::vector<float> phi_q, phi_k;          // [kChunk, D] (one chunk of one head), [k_len, D] unrotated
  std::vector<float> phi_q_rot, phi_k_rot;  // rotated copies (RoPE only)
  std::vector<float> state;                 // S: [D, Dv]
  std::vector<double> z;                    // [D]
  std::vector<float> sim, sim_plain;        // [kChunk, max diagonal keys]
  std::vector<char> scratchpad;
  dnnl::stream stream;
};

class LinearKernel {
 public:
  explicit LinearKernel(const Problem& p) : p_(p) {}

  // A unit is a slice of the query heads of one (batch, key/value head): one slice per group
  // when there are units enough for the threads, else as many as keep them busy (each slice
  // absorbs the keys once).
  absl::Status Run() {
    const int64_t group = p_.heads / p_.kv_heads;
    const int64_t groups = p_.batch * p_.kv_heads;
    const int64_t slices = std::min<int64_t>(group, (ComputeThreads() + groups - 1) / groups);
    auto init = [](Workspace& ws) { ws.stream = dnnl::stream(DnnlEngine()); };
    auto run = [&](int64_t unit, Workspace& ws) {
      const int64_t slice = unit % slices, g = unit / slices;
      const int64_t b = g / p_.kv_heads, first = (g % p_.kv_heads) * group;
      return RunUnit(b, first + slice * group / slices, first + (slice + 1) * group / slices, ws);
    };
    return ForEachUnit<Workspace>(p_, groups * slices, "linear attention", init, run);
  }

 private:
  // C (+)= A B for row-major buffers; A optionally stored transposed. No-op for empty products.
  absl::Status Matmul(Workspace& ws, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, bool a_t,
                      const float* b, int64_t ldb, bool b_t, float* c, int64_t ldc, bool accumulate) const {
    if (m == 0 || n == 0 || k == 0) return absl::OkStatus();
    MatmulShape shape;
    shape.m = m;
    shape.n = n;
    shape.k = k;
    shape.lda = lda;
    shape.ldb = ldb;
    shape.ldc = ldc;
    shape.a_transposed = a_t;
    shape.b_transposed = b_t;
    shape.accumulate = accumulate;
    absl::StatusOr<std::shared_ptr<const TileMatmul>> matmul = TileMatmul::Get(shape);
    if (!matmul.ok()) return matmul.status();
    if (ws.scratchpad.size() < (*matmul)->scratchpad_bytes()) ws.scratchpad.resize((*matmul)->scratchpad_bytes());
    (*matmul)->Execute(ws.stream, a, b, c, ws.scratchpad.data());
    return absl::OkStatus();
  }

  // Query heads [h_begin, h_end) of batch b, all on one key/value head.
  absl::Status RunUnit(int64_t b, int64_t h_begin, int64_t h_end, Workspace& ws) const {
    const int64_t d = p_.head_dim, dv = p_.value_dim, lq = p_.q_len, lk = p_.k_len;
    const bool rope = p_.q_rope != nullptr;
    ws.phi_q.resize(static_cast<size_t>(kChunk * d));
    ws.phi_k.resize(static_cast<size_t>(lk * d));
    // One c for every key of the head, from the keys the last row sees (all that any row sees).
    const int64_t seen = std::max<int64_t>(p_.VisibleEnd(b, lq - 1), 1);
    Phi(p_.k_rows(b, h_begin), ws.phi_k.data(), lk * d, std::min(seen, lk) * d);
    const float* num_q = ws.phi_q.data();
    const float* num_k = ws.phi_k.data();
    if (rope) {
      ws.phi_q_rot.resize(ws.phi_q.size());
      ws.phi_k_rot.resize(ws.phi_k.size());
      p_.k_rope->Apply(ws.phi_k.data(), ws.phi_k_rot.data(), 1);
      num_q = ws.phi_q_rot.data();
      num_k = ws.phi_k_rot.data();
    }
    const float* v = p_.v_rows(b, h_begin);
    ws.state.assign(static_cast<size_t>(d * dv), 0.0f);
    ws.z.assign(static_cast<size_t>(d), 0.0);
    ws.sim.resize(static_cast<size_t>(kChunk * (kChunk + 1)));
    ws.sim_plain.resize(ws.sim.size());
    int64_t absorbed = 0;  // Keys [0, absorbed) are in (S, z).
    std::vector<double> den(kChunk);
    for (int64_t i0 = 0; i0 < lq; i0 += kChunk) {
      if (i0 > 0 && p_.Cancelled()) return absl::CancelledError("attention: cancelled by the caller");
      const int64_t rows = std::min(kChunk, lq - i0);
      const int64_t e0 = p_.VisibleEnd(b, i0);
      const int64_t e1 = p_.VisibleEnd(b, i0 + rows - 1);
      // Keys every row of the chunk sees join the state: S += phi(K)^T V, z += sum phi(k).
      if (e0 > absorbed) {
        absl::Status s = Matmul(ws, d, dv, e0 - absorbed, num_k + absorbed * d, d, /*a_t=*/true, v + absorbed * dv, dv,
                                false, ws.state.data(), dv, /*accumulate=*/true);
        if (!s.ok()) return s;
        for (int64_t j = absorbed; j < e0; ++j) {
          const float* phi = ws.phi_k.data() + j * d;
          for (int64_t c = 0; c < d; ++c) ws.z[static_cast<size_t>(c)] += phi[c];
        }
        absorbed = e0;
      }
      for (int64_t h = h_begin; h < h_end; ++h) {
        const float* q = p_.q_rows(b, h) + i0 * d;
        for (int64_t r = 0; r < rows; ++r) Phi(q + r * d, ws.phi_q.data() + r * d, d, d);  // c per row.
        if (rope) {
          for (int64_t r = 0; r < rows; ++r) {
            p_.q_rope->ApplyRow(ws.phi_q.data() + r * d, ws.phi_q_rot.data() + r * d, i0 + r);
          }
        }
        absl::Status s = RunChunk(b, h, i0, rows, e0, e1, num_q, num_k, v, den, ws);
        if (!s.ok()) return s;
      }
    }
    return absl::OkStatus();
  }

  // Query rows [i0, i0 + rows) of head h, whose phi (rotated: num_q) the workspace holds, against
  // the state of keys [0, e0) and the diagonal block [e0, e1).
  absl::Status RunChunk(int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t e0, int64_t e1, const float* num_q,
                        const float* num_k, const float* v, std::vector<double>& den, Workspace& ws) const {
    const int64_t d = p_.head_dim, dv = p_.value_dim;
    const bool rope = p_.q_rope != nullptr;
    float* out_chunk = p_.out_rows(b, h) + i0 * dv;
    // Inter-chunk part: out = phi(q) S, den = phi(q) . z.
    absl::Status s = Matmul(ws, rows, dv, d, num_q, d, false, ws.state.data(), dv, false, out_chunk, dv,
                            /*accumulate=*/false);
    if (!s.ok()) return s;
    if (e0 == 0) std::fill(out_chunk, out_chunk + rows * dv, 0.0f);  // No product ran.
    for (int64_t r = 0; r < rows; ++r) {
      const float* phi = ws.phi_q.data() + r * d;
      double sum = 0.0;
      for (int64_t c = 0; c < d; ++c) sum += static_cast<double>(phi[c]) * ws.z[static_cast<size_t>(c)];
      den[static_cast<size_t>(r)] = sum;
    }
    // Diagonal block: keys [e0, e1) that only later rows of the chunk see, masked per row.
    const int64_t extra = e1 - e0;
    if (extra > 0) {
      if (static_cast<int64_t>(ws.sim.size()) < rows * extra) {
        ws.sim.resize(static_cast<size_t>(rows * extra));
        ws.sim_plain.resize(ws.sim.size());
      }
      s = Matmul(ws, rows, extra, d, num_q, d, false, num_k + e0 * d, d, /*b_t=*/true, ws.sim.data(), extra, false);
      if (!s.ok()) return s;
      float* plain = ws.sim.data();
      if (rope) {
        s = Matmul(ws, rows, extra, d, ws.phi_q.data(), d, false, ws.phi_k.data() + e0 * d, d, true,
                   ws.sim_plain.data(), extra, false);
        if (!s.ok()) return s;
        plain = ws.sim_plain.data();
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t visible = p_.VisibleEnd(b, i0 + r) - e0;  // In [0, extra].
        float* row = ws.sim.data() + r * extra;
        const float* plain_row = plain + r * extra;
        double sum = 0.0;
        for (int64_t c = 0; c < visible; ++c) sum += plain_row[c];
        den[static_cast<size_t>(r)] += sum;
        std::fill(row + std::max<int64_t>(visible, 0), row + extra, 0.0f);
      }
      s = Matmul(ws, rows, dv, extra, ws.sim.data(), extra, false, v + e0 * dv, dv, false, out_chunk, dv,
                 /*accumulate=*/true);
      if (!s.ok()) return s;
    }
    bool finite = true;
    for (int64_t r = 0; r < rows; ++r) {
      float* o = out_chunk + r * dv;
      const double dd = den[static_cast<size_t>(r)];
      if (p_.VisibleEnd(b, i0 + r) == 0) {  // The row sees no key: its output is zero.
        std::fill(o, o + dv, 0.0f);
        continue;
      }
      // The row's largest phi(q) value is at least 1, and so is the largest phi(k) of the keys
      // the last row sees; still, a row may see only keys far below that one, or meet it in a
      // column where its own phi(q) is tiny. Then the float products underflow (den near 0,
      // the numerator in denormals or zero): refused, never returned as zeros.
      if (!(dd >= kMinDenominator)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "attention (LINEAR): phi(q).phi(k) underflows float32 for query row ", i0 + r, " of batch ", b,
            ", head ", h, " (its visible logits sit far below the others'); shift the query or key logits up"));
      }
      const double inv = 1.0 / dd;  // In double: 1 / dd is a float denormal for dd above 1e38.
      for (int64_t c = 0; c < dv; ++c) {
        o[c] = static_cast<float>(static_cast<double>(o[c]) * inv);
        finite &= std::isfinite(o[c]);
      }
    }
    // phi(x) = x + 1 grows with x: products of logits near 1e19, or sums of huge values, pass
    // float's range in S = phi(K)^T V or phi(q) S.
    if (!finite) {
      return absl::InvalidArgumentError(
          "attention (LINEAR): phi(q).phi(k) v overflows float32; scale the query, key or value down");
    }
    return absl::OkStatus();
  }

  const Problem& p_;
};

}  // namespace

absl::Status RunLinear(const Problem& problem) { return LinearKernel(problem).Run(); }

}  // namespace attention_internal
}  // namespace primserve
