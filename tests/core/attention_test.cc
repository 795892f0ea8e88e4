// Tests for core/attention.h: softmax ("flash") and linear attention (MATH.md sections 2 and 6).
//
// Levels (STYLE.md habit 8):
//   1. Goldens: two hand-checkable 2 x 2 problems.
//   2. Differential: Attend against a plain double-precision reference written here from the
//      header's contract (shapes, GQA head mapping, bottom-right causal mask, key_lengths,
//      right-aligned bias broadcasting with -Inf masks, RoPE positions, LINEAR with Su's RoPE),
//      over odd shapes (1, 13, 129, 257) that straddle any tile size.
//   3. Properties: RoPE inside Attend equals ApplyRope first; stability at logits of 1e4;
//      fully masked rows are exact zeros; thread count does not change the result.
// Plus a table of bad inputs (status code and the argument the message names), limits and
// cancellation.
#include "core/attention.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/parallel.h"
#include "core/position_encoding.h"
#include "core/dnnl_context.h"
#include "core/tile_matmul.h"
#include "core/tensor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace primserve {
namespace {

using ::testing::HasSubstr;

#define PS_TEST_CONCAT_INNER_(a, b) a##b
#define PS_TEST_CONCAT_(a, b) PS_TEST_CONCAT_INNER_(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL_(PS_TEST_CONCAT_(statusor_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                               \
  ASSERT_TRUE(statusor.ok()) << statusor.status();      \
  lhs = *std::move(statusor)

// float32 machine epsilon, 2^-23.
constexpr double kEps = std::numeric_limits<float>::epsilon();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Tolerances. The kernel computes in float32 and the reference in double from the same float
// inputs, so their difference is the kernel's own rounding. Rounding errors of n float operations
// add up like a random walk, ~sqrt(n) eps (Higham, Accuracy and Stability, section 3.1 remark);
// kMargin covers the spread of that estimate, blocked and FMA orders, and a few-ulp float exp.
//   SOFTMAX: a logit scale * q.k + bias is a D-term dot, off by about
//     e_ij eps = (sqrt(D) scale sum_d |q_d k_d| + |bias_ij| + [RoPE] 3 scale |q||k|) eps
//     (RoPE rotates q and k in float: 1.5 eps |x| each). Logit errors d_j scale p_j by
//     (1 + d_j - sum_l p_l d_l), which moves p_j by at most p_j |d_j| + p_j sum_l p_l |d_l| and
//     sum_j p_j v_j by at most 2 (sum_j p_j |d_j|) max|v|: the p-weighted mean of e_ij counts,
//     not its max (a far-off key with a huge logit error has p ~ 0). The normaliser and
//     sum_j p_j v_j accumulate Lk terms with sum_j p_j |v_j| <= max|v|: sqrt(Lk) eps max|v|.
//     So |out - ref| <= kMargin eps max|v| (sqrt(Lk) + 2 max_i sum_j p_ij e_ij + 4), and the
//     weights (p <= 1) within the same bound divided by max|v|.
//   LINEAR: phi > 0, so the denominator sum_j phi(q).phi(k_j) has no cancellation; the numerator
//     (running sums of phi(k) v^T, then a D-term dot with phi(q)) is off by
//     (sqrt(Lk) + sqrt(D)) eps sum_j sum_d |phi(q)_d phi(k_j)_d| |v_j|. Relative to the
//     denominator that is (sqrt(Lk) + sqrt(D)) eps max|v| R with
//     R = sum_j sum_d |rot phi(q)_d rot phi(k_j)_d| / sum_j phi(q).phi(k_j) (1 without RoPE).
constexpr double kMargin = 8.0;

// ---------------------------------------------------------------------------------------------
// Helpers.

Tensor MakeTensor(Shape shape, std::vector<float> values) {
  Tensor t;
  t.shape = std::move(shape);
  t.values = std::move(values);
  return t;
}

int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  return n;
}

Tensor RandomTensor(Shape shape, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Tensor t = Tensor::Zeros(std::move(shape));
  for (float& x : t.values) x = dist(rng) * scale;
  return t;
}

// Bias values in [-2, 2] with -Inf entries. Rows (over all leading indices) cycle through
// patterns: random -Inf entries; a fully masked leading 3/4 (an online softmax must not form
// -Inf - -Inf over a fully masked first tile); and fully masked rows (zeros, never NaN).
Tensor RandomBias(const Shape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  Tensor t = Tensor::Zeros(shape);
  for (float& x : t.values) x = dist(rng);
  if (shape.empty()) return t;
  const int64_t width = shape.back();
  const int64_t rows = width == 0 ? 0 : NumElements(shape) / width;
  for (int64_t r = 0; r < rows; ++r) {
    float* row = t.values.data() + r * width;
    for (int64_t j = 0; j < width; ++j) {
      const bool masked = r % 5 == 2 ? j < 3 * width / 4 : r % 5 == 4 ? true : rng() % 10 == 0;
      if (masked) row[j] = -kInf;
    }
  }
  return t;
}

double MaxAbs(const std::vector<float>& v) {
  double m = 0.0;
  for (float x : v) m = std::max(m, std::abs(static_cast<double>(x)));
  return m;
}

// Sets the compute threads for one scope and restores the previous value.
class ScopedComputeThreads {
 public:
  explicit ScopedComputeThreads(int threads) : previous_(ComputeThreads()) { SetComputeThreads(threads); }
  ~ScopedComputeThreads() { SetComputeThreads(previous_); }

 private:
  int previous_;
};

const char* PairingName(RopePairing p) { return p == RopePairing::kInterleaved ? "interleaved" : "half_split"; }

// Prints one line per case and records it as a test property (XML-safe key).
void Report(const std::string& name, double err, double tol, double scale_for_relative) {
  const double rel = scale_for_relative > 0 ? err / scale_for_relative : err;
  std::printf("[ attention ] %-64s max|err| %.3e  (rel %.3e)  tol %.3e\n", name.c_str(), err, rel, tol);
  std::string key = "max_err_";
  for (char c : name) key += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  ::testing::Test::RecordProperty(key, absl::StrCat(err));
}

// ---------------------------------------------------------------------------------------------
// The reference: the header's contract as plain double loops, nothing shared with the core.

struct Dims {
  int64_t batch, num_heads, num_kv_heads, q_len, k_len, head_dim, value_dim;
};

Dims DimsOf(const Tensor& q, const Tensor& k, const Tensor& v) {
  return {q.dim(0), q.dim(1), k.dim(1), q.dim(2), k.dim(2), q.dim(3), v.dim(3)};
}

// 1-D RoPE of dimension `width` on x[0, width) (MATH.md 2): pair i is (2i, 2i+1) interleaved or
// (i, i + width/2) half-split, rotated by pos * theta_i, theta_i = base^(-2i/width).
void ReferenceRotate(double* x, int64_t width, double pos, double base, RopePairing pairing) {
  for (int64_t i = 0; i < width / 2; ++i) {
    const double theta = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(width));
    const double c = std::cos(pos * theta);
    const double s = std::sin(pos * theta);
    const int64_t a = pairing == RopePairing::kInterleaved ? 2 * i : i;
    const int64_t b = pairing == RopePairing::kInterleaved ? 2 * i + 1 : i + width / 2;
    const double xa = x[a];
    const double xb = x[b];
    x[a] = xa * c - xb * s;
    x[b] = xb * c + xa * s;
  }
}

// (x, y) positions of the q_len query rows and the k_len key rows (y unused for 1-D). Keys:
// 0..k_len-1 by default; queries: key index (k_len - q_len) + i (bottom-right aligned).
// 2-D: token t of the grid sits at (t / W, t % W) (MATH.md 3).
struct RopePositions {
  std::vector<double> qx, qy, kx, ky;
};

RopePositions ResolvePositions(const AttentionRope& rope, int64_t q_len, int64_t k_len) {
  RopePositions p;
  p.qx.resize(static_cast<size_t>(q_len));
  p.qy.resize(static_cast<size_t>(q_len));
  p.kx.resize(static_cast<size_t>(k_len));
  p.ky.resize(static_cast<size_t>(k_len));
  for (int64_t j = 0; j < k_len; ++j) {
    const size_t u = static_cast<size_t>(j);
    if (rope.kind == RopeKind::k1D) {
      p.kx[u] = rope.key_positions.empty() ? static_cast<double>(j) : rope.key_positions[u];
    } else {
      p.kx[u] = static_cast<double>(j / rope.grid_width);
      p.ky[u] = static_cast<double>(j % rope.grid_width);
    }
  }
  for (int64_t i = 0; i < q_len; ++i) {
    const size_t u = static_cast<size_t>(i);
    const int64_t index = k_len - q_len + i;
    if (rope.kind == RopeKind::k1D) {
      p.qx[u] = rope.query_positions.empty() ? static_cast<double>(index) : rope.query_positions[u];
    } else {
      p.qx[u] = static_cast<double>(index / rope.grid_width);
      p.qy[u] = static_cast<double>(index % rope.grid_width);
    }
  }
  return p;
}

void ReferenceRopeRow(double* x, int64_t dim, const AttentionRope& rope, double px, double py) {
  const int64_t r = rope.rotary_dim == 0 ? dim : rope.rotary_dim;
  if (rope.kind == RopeKind::k1D) {
    ReferenceRotate(x, r, px, rope.base, rope.pairing);
  } else {
    ReferenceRotate(x, r / 2, px, rope.base, rope.pairing);
    ReferenceRotate(x + r / 2, r / 2, py, rope.base, rope.pairing);
  }
}

// Rows [.., len, dim] of `t` in double, each rotated by its position when `rope` is set;
// `phi` applies elu + 1 first.
std::vector<double> PrepareRows(const Tensor& t, const std::optional<AttentionRope>& rope,
                                const std::vector<double>& px, const std::vector<double>& py, bool phi,
                                bool rotate) {
  const int64_t len = t.dim(2);
  const int64_t dim = t.dim(3);
  std::vector<double> out(t.values.begin(), t.values.end());
  if (phi) {
    for (double& x : out) x = x > 0 ? x + 1.0 : std::exp(x);
  }
  if (rope.has_value() && rotate && dim > 0 && len > 0) {
    const int64_t rows = static_cast<int64_t>(out.size()) / dim;
    for (int64_t row = 0; row < rows; ++row) {
      const size_t s = static_cast<size_t>(row % len);
      ReferenceRopeRow(out.data() + row * dim, dim, *rope, px[s], py[s]);
    }
  }
  return out;
}

// The bias entry broadcast to (b, h, i, j): right-aligned, extent-1 axes repeat.
class BiasView {
 public:
  BiasView(const Tensor* bias, const Dims& d) : bias_(bias) {
    if (bias_ == nullptr) return;
    const int64_t full[4] = {d.batch, d.num_heads, d.q_len, d.k_len};
    const int64_t rank = bias_->rank();
    int64_t stride = 1;
    for (int64_t a = 3; a >= 0; --a) {
      const int64_t ba = a - (4 - rank);
      if (ba < 0) {
        stride_[a] = 0;
        continue;
      }
      const int64_t extent = bias_->dim(ba);
      stride_[a] = extent == 1 && full[a] != 1 ? 0 : stride;
      stride *= extent;
    }
  }
  double operator()(int64_t b, int64_t h, int64_t i, int64_t j) const {
    if (bias_ == nullptr) return 0.0;
    return bias_->values[static_cast<size_t>(b * stride_[0] + h * stride_[1] + i * stride_[2] + j * stride_[3])];
  }

 private:
  const Tensor* bias_;
  int64_t stride_[4] = {0, 0, 0, 0};
};

struct Reference {
  std::vector<double> output;      // [B, H, Lq, Dv]
  std::vector<double> weights;     // [B, H, Lq, Lk] (SOFTMAX)
  std::vector<uint8_t> masked;     // [B, H, Lq, Lk]: 1 where key j is invisible to row i.
  std::vector<uint8_t> row_empty;  // [B, H, Lq]: 1 where the row sees no key.
  double max_abs_value = 0;
  double logit_error = 0;       // SOFTMAX: max_i sum_j p_ij e_ij; LINEAR: R (see kMargin).
  double tolerance = 0;         // Absolute, on the output.
  double weight_tolerance = 0;  // Absolute, on the weights.
};

// Which rounding the SOFTMAX tolerance allows for. Stability tests use integer-valued q, k whose
// products and sums are exact in float (kExactLogits), or bias entries that either absorb every
// logit of their row (a common shift, which softmax ignores) or get p = 0 (kExactBias).
enum class LogitRounding { kModel, kExactLogits, kExactBias };

bool Visible(const Dims& d, const AttentionOptions& o, int64_t b, int64_t i, int64_t j) {
  if (o.causal && j > i + (d.k_len - d.q_len)) return false;
  if (!o.key_lengths.empty() && j >= o.key_lengths[static_cast<size_t>(b)]) return false;
  return true;
}

Reference ReferenceAttend(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o,
                          LogitRounding rounding = LogitRounding::kModel) {
  const Dims d = DimsOf(q, k, v);
  const bool linear = o.kind == AttentionKind::kLinear;
  const double scale = o.scale == 0.0 ? 1.0 / std::sqrt(static_cast<double>(d.head_dim)) : o.scale;
  RopePositions pos;
  if (o.rope.has_value()) pos = ResolvePositions(*o.rope, d.q_len, d.k_len);
  // SOFTMAX: rotated q, k. LINEAR: rotated phi(q), phi(k) (numerator) and plain (denominator).
  const std::vector<double> qr = PrepareRows(q, o.rope, pos.qx, pos.qy, linear, true);
  const std::vector<double> kr = PrepareRows(k, o.rope, pos.kx, pos.ky, linear, true);
  const std::vector<double> qp = linear ? PrepareRows(q, o.rope, pos.qx, pos.qy, true, false) : qr;
  const std::vector<double> kp = linear ? PrepareRows(k, o.rope, pos.kx, pos.ky, true, false) : kr;
  const BiasView bias(o.bias, d);

  Reference ref;
  ref.max_abs_value = MaxAbs(v.values);
  ref.output.assign(static_cast<size_t>(d.batch * d.num_heads * d.q_len * d.value_dim), 0.0);
  ref.weights.assign(static_cast<size_t>(d.batch * d.num_heads * d.q_len * d.k_len), 0.0);
  ref.masked.assign(ref.weights.size(), 1);
  ref.row_empty.assign(static_cast<size_t>(d.batch * d.num_heads * d.q_len), 1);
  const int64_t group = d.num_kv_heads == 0 ? 1 : d.num_heads / d.num_kv_heads;
  double max_logit_err = 0;  // max_i sum_j p_ij e_ij (SOFTMAX) or R (LINEAR), see kMargin.
  std::vector<double> w(static_cast<size_t>(d.k_len));
  std::vector<double> e(static_cast<size_t>(d.k_len));  // e_ij of the row (SOFTMAX).
  for (int64_t b = 0; b < d.batch; ++b) {
    for (int64_t h = 0; h < d.num_heads; ++h) {
      const int64_t hk = h / group;
      for (int64_t i = 0; i < d.q_len; ++i) {
        const int64_t row = (b * d.num_heads + h) * d.q_len + i;
        const double* qi = qr.data() + row * d.head_dim;
        const double* qi_plain = qp.data() + row * d.head_dim;
        double q_norm = 0;
        for (int64_t c = 0; c < d.head_dim; ++c) q_norm += qi[c] * qi[c];
        q_norm = std::sqrt(q_norm);
        double max_w = -std::numeric_limits<double>::infinity();
        double denominator = 0;  // LINEAR
        double abs_numerator = 0;
        bool any = false;
        for (int64_t j = 0; j < d.k_len; ++j) {
          const size_t u = static_cast<size_t>(j);
          w[u] = 0;
          const double bias_ij = bias(b, h, i, j);
          if (!Visible(d, o, b, i, j) || bias_ij == -std::numeric_limits<double>::infinity()) continue;
          ref.masked[static_cast<size_t>(row * d.k_len + j)] = 0;
          any = true;
          const int64_t krow = (b * d.num_kv_heads + hk) * d.k_len + j;
          const double* kj = kr.data() + krow * d.head_dim;
          const double* kj_plain = kp.data() + krow * d.head_dim;
          double dot = 0, abs_dot = 0, k_norm = 0, plain = 0;
          for (int64_t c = 0; c < d.head_dim; ++c) {
            dot += qi[c] * kj[c];
            abs_dot += std::abs(qi[c] * kj[c]);
            k_norm += kj[c] * kj[c];
            plain += qi_plain[c] * kj_plain[c];
          }
          if (linear) {
            w[u] = dot;
            denominator += plain;
            abs_numerator += abs_dot;
          } else {
            w[u] = scale * dot + bias_ij;
            max_w = std::max(max_w, w[u]);
            const double rope_err = o.rope.has_value() ? 3 * scale * q_norm * std::sqrt(k_norm) : 0.0;
            const double dot_err = std::sqrt(static_cast<double>(d.head_dim)) * scale * abs_dot + rope_err;
            e[u] = rounding == LogitRounding::kExactLogits ? 0.0
                   : rounding == LogitRounding::kExactBias ? dot_err
                                                           : dot_err + std::abs(bias_ij);
          }
        }
        if (!any) continue;
        ref.row_empty[static_cast<size_t>(row)] = 0;
        double total = 0;
        if (linear) {
          total = denominator;
          max_logit_err = std::max(max_logit_err, abs_numerator / denominator);
        } else {
          // Max subtraction: every exponent is <= 0, the largest is exp(0) = 1.
          for (int64_t j = 0; j < d.k_len; ++j) {
            if (ref.masked[static_cast<size_t>(row * d.k_len + j)]) continue;
            w[static_cast<size_t>(j)] = std::exp(w[static_cast<size_t>(j)] - max_w);
            total += w[static_cast<size_t>(j)];
          }
        }
        double* out = ref.output.data() + row * d.value_dim;
        double row_err = 0;
        for (int64_t j = 0; j < d.k_len; ++j) {
          if (ref.masked[static_cast<size_t>(row * d.k_len + j)]) continue;
          const double p = w[static_cast<size_t>(j)] / total;
          if (!linear) row_err += p * e[static_cast<size_t>(j)];
          if (!linear) ref.weights[static_cast<size_t>(row * d.k_len + j)] = p;
          const float* vj = v.values.data() + ((b * d.num_kv_heads + hk) * d.k_len + j) * d.value_dim;
          for (int64_t c = 0; c < d.value_dim; ++c) out[c] += p * static_cast<double>(vj[c]);
        }
        if (!linear) max_logit_err = std::max(max_logit_err, row_err);
      }
    }
  }
  const double sqrt_lk = std::sqrt(static_cast<double>(d.k_len));
  const double sqrt_d = std::sqrt(static_cast<double>(d.head_dim));
  ref.logit_error = max_logit_err;
  if (linear) {
    const double r = std::max(1.0, max_logit_err);
    ref.tolerance = kMargin * kEps * ref.max_abs_value * r * (sqrt_lk + sqrt_d + 4 + (o.rope ? 3 : 0));
  } else {
    ref.weight_tolerance = kMargin * kEps * (sqrt_lk + 2 * max_logit_err + 4);
    ref.tolerance = ref.weight_tolerance * ref.max_abs_value;
  }
  return ref;
}

// Compares `got` to the reference: finite everywhere, within tolerance, exact zeros in rows that
// see no key (and in masked weights). Returns the max abs error through `max_err`.
::testing::AssertionResult MatchesReference(const AttentionResult& got, const Reference& ref, const Dims& d,
                                            bool expect_weights, double* max_err, double* max_weight_err) {
  *max_err = 0;
  *max_weight_err = 0;
  const Shape out_shape = {d.batch, d.num_heads, d.q_len, d.value_dim};
  if (got.output.shape != out_shape) {
    return ::testing::AssertionFailure() << "output shape " << ShapeToString(got.output.shape) << " want "
                                         << ShapeToString(out_shape);
  }
  if (got.output.values.size() != ref.output.size()) return ::testing::AssertionFailure() << "output size";
  int64_t bad = 0;
  std::string first;
  auto fail = [&](std::string what) {
    if (bad++ == 0) first = std::move(what);
  };
  for (size_t n = 0; n < ref.output.size(); ++n) {
    const double g = got.output.values[n];
    const double err = std::abs(g - ref.output[n]);
    const size_t row = d.value_dim == 0 ? 0 : n / static_cast<size_t>(d.value_dim);
    if (!std::isfinite(g)) {
      fail(absl::StrCat("output[", n, "] = ", g, " is not finite"));
    } else if (ref.row_empty[row] && g != 0.0) {
      fail(absl::StrCat("output[", n, "] = ", g, " in a row that sees no key (want exactly 0)"));
    } else if (!(err <= ref.tolerance)) {
      fail(absl::StrCat("output[", n, "] (row ", row, "): got ", g, " want ", ref.output[n], " |err| ", err,
                        " > tol ", ref.tolerance));
    }
    if (std::isfinite(g)) *max_err = std::max(*max_err, err);
  }
  if (!expect_weights) {
    if (got.weights.has_value()) fail("weights returned without return_weights");
  } else if (!got.weights.has_value()) {
    fail("weights missing with return_weights");
  } else {
    const Tensor& wt = *got.weights;
    const Shape w_shape = {d.batch, d.num_heads, d.q_len, d.k_len};
    if (wt.shape != w_shape || wt.values.size() != ref.weights.size()) {
      fail(absl::StrCat("weights shape ", ShapeToString(wt.shape), " want ", ShapeToString(w_shape)));
    } else {
      for (size_t row = 0; row * static_cast<size_t>(d.k_len) < ref.weights.size(); ++row) {
        double sum = 0;
        for (int64_t j = 0; j < d.k_len; ++j) {
          const size_t n = row * static_cast<size_t>(d.k_len) + static_cast<size_t>(j);
          const double g = wt.values[n];
          sum += g;
          const double err = std::abs(g - ref.weights[n]);
          if (!std::isfinite(g)) {
            fail(absl::StrCat("weights[", n, "] = ", g, " is not finite"));
          } else if (ref.masked[n] && g != 0.0) {
            fail(absl::StrCat("weights[", n, "] = ", g, " for a masked key (want exactly 0)"));
          } else if (!(err <= ref.weight_tolerance)) {
            fail(absl::StrCat("weights[", n, "] (row ", row, " key ", j, "): got ", g, " want ", ref.weights[n],
                              " |err| ", err, " > tol ", ref.weight_tolerance));
          }
          if (std::isfinite(g)) *max_weight_err = std::max(*max_weight_err, err);
        }
        // Rows sum to 1, or exactly 0 when the row sees no key.
        const double want_sum = ref.row_empty[row] ? 0.0 : 1.0;
        if (!(std::abs(sum - want_sum) <= ref.weight_tolerance + d.k_len * kEps)) {
          fail(absl::StrCat("weights row ", row, " sums to ", sum, " want ", want_sum));
        }
      }
    }
  }
  if (bad > 0) return ::testing::AssertionFailure() << bad << " mismatches; first: " << first;
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------------
// Cases.

struct AttentionCase {
  std::string name;
  int64_t batch = 1, num_heads = 1, num_kv_heads = 1, q_len = 1, k_len = 1, head_dim = 8, value_dim = 8;
  AttentionOptions options;           // options.bias is set from bias_shape.
  std::optional<Shape> bias_shape;
  float value_scale = 1.0f;
  uint32_t seed = 1;
};

struct CaseInputs {
  Tensor query, key, value;
  std::optional<Tensor> bias;
};

CaseInputs MakeInputs(const AttentionCase& c) {
  CaseInputs in;
  in.query = RandomTensor({c.batch, c.num_heads, c.q_len, c.head_dim}, c.seed * 4 + 0);
  in.key = RandomTensor({c.batch, c.num_kv_heads, c.k_len, c.head_dim}, c.seed * 4 + 1);
  in.value = RandomTensor({c.batch, c.num_kv_heads, c.k_len, c.value_dim}, c.seed * 4 + 2, c.value_scale);
  if (c.bias_shape.has_value()) in.bias = RandomBias(*c.bias_shape, c.seed * 4 + 3);
  return in;
}

std::string Describe(const AttentionCase& c) {
  return absl::StrCat(c.name, " [B", c.batch, " H", c.num_heads, "/", c.num_kv_heads, " Lq", c.q_len, " Lk",
                      c.k_len, " D", c.head_dim, " Dv", c.value_dim, "]");
}

// Runs one case against the reference; returns the output for further checks.
void RunAgainstReference(const AttentionCase& c, AttentionResult* result_out = nullptr) {
  SCOPED_TRACE(Describe(c));
  const CaseInputs in = MakeInputs(c);
  AttentionOptions options = c.options;
  options.bias = in.bias.has_value() ? &*in.bias : nullptr;
  ASSERT_OK_AND_ASSIGN(AttentionResult result, Attend(in.query, in.key, in.value, options));
  const Reference ref = ReferenceAttend(in.query, in.key, in.value, options);
  double err = 0, weight_err = 0;
  EXPECT_TRUE(MatchesReference(result, ref, DimsOf(in.query, in.key, in.value), options.return_weights, &err,
                               &weight_err));
  Report(Describe(c), err, ref.tolerance, ref.max_abs_value);
  if (options.return_weights) Report(Describe(c) + " weights", weight_err, ref.weight_tolerance, 0);
  if (result_out != nullptr) *result_out = std::move(result);
}

AttentionCase Case(std::string name, int64_t b, int64_t h, int64_t hkv, int64_t lq, int64_t lk, int64_t dim,
                   int64_t value_dim) {
  AttentionCase c;
  c.name = std::move(name);
  c.batch = b;
  c.num_heads = h;
  c.num_kv_heads = hkv;
  c.q_len = lq;
  c.k_len = lk;
  c.head_dim = dim;
  c.value_dim = value_dim;
  c.seed = static_cast<uint32_t>(std::hash<std::string>{}(c.name));
  return c;
}

// =============================================================================================
// 1. Goldens.

TEST(AttentionGoldenTest, SoftmaxTwoByTwo) {
  // q = [1, 0], k = [[1, 0], [0, 1]], scale 1: logits [1, 0], p = [e, 1] / (e + 1)
  // = [0.7310585786, 0.2689414214]; v = [[1, 2], [3, 4]]: out = [1.5378828428, 2.5378828428].
  const Tensor q = MakeTensor({1, 1, 1, 2}, {1, 0});
  const Tensor k = MakeTensor({1, 1, 2, 2}, {1, 0, 0, 1});
  const Tensor v = MakeTensor({1, 1, 2, 2}, {1, 2, 3, 4});
  AttentionOptions options;
  options.scale = 1.0;
  options.return_weights = true;
  ASSERT_OK_AND_ASSIGN(AttentionResult r, Attend(q, k, v, options));
  ASSERT_EQ(r.output.shape, (Shape{1, 1, 1, 2}));
  ASSERT_TRUE(r.weights.has_value());
  ASSERT_EQ(r.weights->shape, (Shape{1, 1, 1, 2}));
  // A few float roundings of values <= 4: 8 eps relative.
  EXPECT_NEAR(r.output.values[0], 1.5378828428, 8 * kEps * 4);
  EXPECT_NEAR(r.output.values[1], 2.5378828428, 8 * kEps * 4);
  EXPECT_NEAR(r.weights->values[0], 0.7310585786, 8 * kEps);
  EXPECT_NEAR(r.weights->values[1], 0.2689414214, 8 * kEps);

  // Default scale 1/sqrt(2): logits [0.7071067812, 0], p0 = 1 / (1 + exp(-0.7071067812)).
  options.scale = 0.0;
  ASSERT_OK_AND_ASSIGN(AttentionResult d, Attend(q, k, v, options));
  const double p0 = 1.0 / (1.0 + std::exp(-1.0 / std::sqrt(2.0)));
  EXPECT_NEAR(d.weights->values[0], p0, 8 * kEps);
  EXPECT_NEAR(d.output.values[0], p0 * 1 + (1 - p0) * 3, 8 * kEps * 4);
}

TEST(AttentionGoldenTest, LinearTwoByTwo) {
  // phi(q) = phi([1, 0]) = [2, 1]; phi(k) = [[2, 1], [1, 2]]: sims 5 and 4;
  // out = (5 [1, 2] + 4 [3, 4]) / 9 = [17/9, 26/9]. Causal with Lq = Lk = 2: row 0 sees key 0 only.
  const Tensor q = MakeTensor({1, 1, 2, 2}, {0, -1, 1, 0});
  const Tensor k = MakeTensor({1, 1, 2, 2}, {1, 0, 0, 1});
  const Tensor v = MakeTensor({1, 1, 2, 2}, {1, 2, 3, 4});
  AttentionOptions options;
  options.kind = AttentionKind::kLinear;
  options.causal = true;
  ASSERT_OK_AND_ASSIGN(AttentionResult r, Attend(q, k, v, options));
  ASSERT_EQ(r.output.shape, (Shape{1, 1, 2, 2}));
  EXPECT_FALSE(r.weights.has_value());
  // Row 0 sees only key 0: out = v_0 = [1, 2] whatever the similarity.
  EXPECT_NEAR(r.output.values[0], 1.0, 8 * kEps);
  EXPECT_NEAR(r.output.values[1], 2.0, 8 * kEps);
  EXPECT_NEAR(r.output.values[2], 17.0 / 9.0, 8 * kEps * 4);
  EXPECT_NEAR(r.output.values[3], 26.0 / 9.0, 8 * kEps * 4);
}

// =============================================================================================
// 2. Differential: SOFTMAX against the reference over odd shapes.

std::vector<AttentionCase> SoftmaxCases() {
  std::vector<AttentionCase> cases;
  auto add = [&](AttentionCase c, auto edit) {
    edit(c);
    cases.push_back(std::move(c));
  };
  auto none = [](AttentionCase&) {};
  // Shapes, GQA ratios 8/8, 8/2, 8/1, causal on and off, D in {1, 8, 80, 128}, Dv != D.
  add(Case("single", 1, 1, 1, 1, 1, 1, 1), none);
  add(Case("decode causal", 1, 1, 1, 1, 257, 8, 3), [](AttentionCase& c) { c.options.causal = true; });
  add(Case("mha 8/8 causal scale 0.3", 2, 8, 8, 13, 13, 80, 80), [](AttentionCase& c) {
    c.options.causal = true;
    c.options.scale = 0.3;
    c.options.return_weights = true;
  });
  add(Case("gqa 8/2 causal Lq<Lk", 1, 8, 2, 13, 129, 128, 64), [](AttentionCase& c) {
    c.options.causal = true;
    c.options.key_lengths = {100};
    c.options.return_weights = true;
  });
  add(Case("mqa 8/1 causal Lq>Lk", 2, 8, 1, 129, 13, 8, 16), [](AttentionCase& c) {
    c.options.causal = true;
    c.options.return_weights = true;
  });
  add(Case("gqa 4/2 causal key_lengths 0 and full", 2, 4, 2, 257, 257, 8, 5), [](AttentionCase& c) {
    c.options.causal = true;
    c.options.key_lengths = {0, 257};
    c.options.return_weights = true;
  });
  add(Case("mqa 2/1 key_lengths 1, 200", 2, 2, 1, 129, 257, 80, 1), [](AttentionCase& c) {
    c.options.key_lengths = {1, 200};
  });
  add(Case("mqa 8/1 D1 scale 2", 1, 8, 1, 257, 129, 1, 8), [](AttentionCase& c) {
    c.options.scale = 2.0;
    c.value_scale = 1000.0f;
  });
  add(Case("decode D128 causal key_lengths", 2, 2, 2, 1, 13, 128, 128), [](AttentionCase& c) {
    c.options.causal = true;
    c.options.key_lengths = {13, 5};
    c.value_scale = 1e-3f;
  });
  add(Case("Lq 257 Lk 1", 1, 2, 1, 257, 1, 8, 4), [](AttentionCase& c) { c.options.return_weights = true; });
  add(Case("Lq 257 Lk 1 causal", 1, 2, 1, 257, 1, 8, 4), [](AttentionCase& c) {
    c.options.causal = true;
    c.options.return_weights = true;
  });
  // Bias broadcasting (RandomBias puts -Inf entries, -Inf leading blocks and fully -Inf rows).
  add(Case("bias [Lk]", 2, 2, 1, 13, 129, 8, 8), [](AttentionCase& c) {
    c.bias_shape = Shape{129};
    c.options.return_weights = true;
  });
  add(Case("bias [Lq,Lk] causal", 1, 4, 2, 129, 129, 8, 8), [](AttentionCase& c) {
    c.bias_shape = Shape{129, 129};
    c.options.causal = true;
    c.options.return_weights = true;
  });
  add(Case("bias [1,H,1,Lk]", 2, 4, 4, 13, 257, 80, 8), [](AttentionCase& c) {
    c.bias_shape = Shape{1, 4, 1, 257};
  });
  add(Case("bias [B,1,Lq,Lk] causal key_lengths", 2, 2, 1, 257, 13, 8, 8), [](AttentionCase& c) {
    c.bias_shape = Shape{2, 1, 257, 13};
    c.options.causal = true;
    c.options.key_lengths = {13, 7};
    c.options.return_weights = true;
  });
  add(Case("bias [B,H,Lq,Lk] gqa 8/2", 2, 8, 2, 13, 13, 8, 8), [](AttentionCase& c) {
    c.bias_shape = Shape{2, 8, 13, 13};
    c.options.return_weights = true;
  });
  add(Case("bias [H,Lq,1] rank 3", 1, 4, 1, 13, 129, 8, 8), [](AttentionCase& c) {
    c.bias_shape = Shape{4, 13, 1};
    c.options.return_weights = true;
  });
  add(Case("bias [1] scale 0.5", 1, 2, 2, 13, 13, 8, 8), [](AttentionCase& c) {
    c.bias_shape = Shape{1};
    c.options.scale = 0.5;
  });
  add(Case("bias [] rank 0", 1, 2, 2, 13, 13, 8, 8), [](AttentionCase& c) { c.bias_shape = Shape{}; });
  add(Case("bias [1,1,1,1] single", 1, 1, 1, 1, 1, 8, 8), [](AttentionCase& c) {
    c.bias_shape = Shape{1, 1, 1, 1};
    c.options.return_weights = true;
  });
  // Several query and key tiles (Lq 300, Lk 1100 straddle tiles of 64..512), causal with
  // padding that ends inside a key tile, bias rows with -Inf blocks.
  add(Case("tiles gqa 4/2 causal key_lengths bias [Lq,Lk]", 2, 4, 2, 300, 1100, 80, 48), [](AttentionCase& c) {
    c.bias_shape = Shape{300, 1100};
    c.options.causal = true;
    c.options.key_lengths = {1100, 777};
  });
  return cases;
}

TEST(AttentionDifferentialTest, SoftmaxMatchesReference) {
  for (const AttentionCase& c : SoftmaxCases()) RunAgainstReference(c);
}

// Zero extents: an empty key axis leaves every row without keys (zeros); the others are empty
// (Dv 0 still has well-defined weights).
TEST(AttentionDifferentialTest, ZeroExtents) {
  std::vector<AttentionCase> cases = {
      Case("Lk 0", 1, 2, 1, 3, 0, 8, 4), Case("Lq 0", 1, 2, 1, 0, 5, 8, 4), Case("B 0", 0, 2, 1, 3, 5, 8, 4),
      Case("Dv 0", 1, 2, 1, 3, 5, 8, 0)};
  cases[0].options.key_lengths = {0};
  for (const AttentionCase& base : cases) {
    for (int variant = 0; variant < 3; ++variant) {
      AttentionCase c = base;
      c.options.return_weights = variant == 1;
      if (variant == 1) c.name += " weights";
      if (variant == 2) {
        c.options.kind = AttentionKind::kLinear;
        c.name += " linear";
      }
      RunAgainstReference(c);
    }
  }
}

// =============================================================================================
// 3. RoPE inside Attend equals ApplyRope first, and both match the reference.

std::vector<AttentionCase> RopeCases(AttentionKind kind) {
  std::vector<AttentionCase> cases;
  for (RopePairing pairing : {RopePairing::kInterleaved, RopePairing::kHalfSplit}) {
    const std::string p = PairingName(pairing);
    AttentionRope rope;
    rope.pairing = pairing;
    {
      AttentionCase c = Case(p + " default positions Lq<Lk causal", 1, 4, 2, 13, 129, 16, 8);
      c.options.rope = rope;
      c.options.causal = true;
      cases.push_back(c);
    }
    {
      // Query positions k_len - q_len + i are negative here.
      AttentionCase c = Case(p + " default positions Lq>Lk", 2, 2, 1, 129, 13, 8, 3);
      c.options.rope = rope;
      c.options.key_lengths = {13, 9};
      cases.push_back(c);
    }
    {
      AttentionCase c = Case(p + " partial rotary 32 of 80 base 500", 1, 8, 1, 13, 129, 80, 16);
      AttentionRope partial = rope;
      partial.rotary_dim = 32;
      partial.base = 500;
      c.options.rope = partial;
      c.options.causal = true;
      cases.push_back(c);
    }
    {
      AttentionCase c = Case(p + " explicit positions", 1, 2, 2, 5, 7, 8, 8);
      AttentionRope explicit_positions = rope;
      explicit_positions.query_positions = {3.5, -2, 100, 7, 0.25};
      explicit_positions.key_positions = {0, 1000, -3, 2.5, 4, 17, 6};
      c.options.rope = explicit_positions;
      cases.push_back(c);
    }
    {
      // Grid 3 x 4 = Lk 12; queries at key indices 7..11.
      AttentionCase c = Case(p + " 2-D grid 3x4 Lq 5", 1, 2, 1, 5, 12, 16, 8);
      AttentionRope two_d = rope;
      two_d.kind = RopeKind::k2D;
      two_d.grid_height = 3;
      two_d.grid_width = 4;
      c.options.rope = two_d;
      c.options.causal = true;
      cases.push_back(c);
    }
    {
      AttentionCase c = Case(p + " 2-D grid 4x4 partial 8 of 16", 1, 2, 2, 16, 16, 16, 4);
      AttentionRope two_d = rope;
      two_d.kind = RopeKind::k2D;
      two_d.grid_height = 4;
      two_d.grid_width = 4;
      two_d.rotary_dim = 8;
      c.options.rope = two_d;
      cases.push_back(c);
    }
  }
  for (AttentionCase& c : cases) {
    c.options.kind = kind;
    if (kind == AttentionKind::kLinear) c.name = "linear " + c.name;
  }
  return cases;
}

// The RopeSpecs that rotate q [.., Lq, D] and k [.., Lk, D] as Attend must (header: keys
// 0..Lk-1, queries at key index Lk - Lq + i; 2-D grid tokens t at (t / W, t % W)).
std::pair<RopeSpec, RopeSpec> EquivalentSpecs(const AttentionRope& rope, int64_t q_len, int64_t k_len) {
  RopeSpec q_spec, k_spec;
  for (RopeSpec* s : {&q_spec, &k_spec}) {
    s->kind = rope.kind;
    s->pairing = rope.pairing;
    s->base = rope.base;
    s->rotary_dim = rope.rotary_dim;
  }
  const RopePositions p = ResolvePositions(rope, q_len, k_len);
  if (rope.kind == RopeKind::k1D) {
    q_spec.positions = p.qx;
    k_spec.positions = p.kx;
  } else {
    q_spec.positions_x = p.qx;
    q_spec.positions_y = p.qy;
    k_spec.grid_height = rope.grid_height;
    k_spec.grid_width = rope.grid_width;
  }
  return {q_spec, k_spec};
}

void CheckRopeEquivalence(const AttentionCase& c) {
  SCOPED_TRACE(Describe(c));
  AttentionResult inside;
  RunAgainstReference(c, &inside);
  if (::testing::Test::HasFatalFailure()) return;

  const CaseInputs in = MakeInputs(c);
  const auto [q_spec, k_spec] = EquivalentSpecs(*c.options.rope, c.q_len, c.k_len);
  ASSERT_OK_AND_ASSIGN(Tensor q_rot, ApplyRope(in.query, q_spec));
  ASSERT_OK_AND_ASSIGN(Tensor k_rot, ApplyRope(in.key, k_spec));
  AttentionOptions plain = c.options;
  plain.rope.reset();
  if (c.options.kind == AttentionKind::kLinear) {
    // LINEAR rotates phi(q), phi(k), not q, k: ApplyRope first is not the same computation.
    // The reference comparison above covers it; here check only that RoPE changed something.
    ASSERT_OK_AND_ASSIGN(AttentionResult unrotated, Attend(in.query, in.key, in.value, plain));
    EXPECT_NE(unrotated.output.values, inside.output.values);
    return;
  }
  ASSERT_OK_AND_ASSIGN(AttentionResult first, Attend(q_rot, k_rot, in.value, plain));
  ASSERT_EQ(first.output.shape, inside.output.shape);
  // Same rotated inputs up to the rotation's rounding (1.5 eps |x|, both use float cos/sin
  // tables), then the same kernel: within the differential tolerance of the reference.
  const Reference ref = ReferenceAttend(in.query, in.key, in.value, c.options);
  double max_diff = 0;
  for (size_t n = 0; n < first.output.values.size(); ++n) {
    const double diff = std::abs(static_cast<double>(first.output.values[n]) - inside.output.values[n]);
    max_diff = std::max(max_diff, diff);
    ASSERT_LE(diff, ref.tolerance) << "output[" << n << "]: inside " << inside.output.values[n]
                                   << " vs ApplyRope first " << first.output.values[n];
  }
  Report(Describe(c) + " inside vs ApplyRope first", max_diff, ref.tolerance, ref.max_abs_value);
}

TEST(AttentionRopeTest, InsideEqualsApplyRopeFirst) {
  for (const AttentionCase& c : RopeCases(AttentionKind::kSoftmax)) CheckRopeEquivalence(c);
}

TEST(AttentionRopeTest, EmptyCallsCheckTheSpecWithoutLargeTables) {
  for (AttentionKind kind : {AttentionKind::kSoftmax, AttentionKind::kLinear}) {
    SCOPED_TRACE(kind == AttentionKind::kLinear ? "linear" : "softmax");
    AttentionOptions options;
    options.kind = kind;
    options.rope = AttentionRope{};
    // No batch: empty output, small claimed tables are fine; a bad spec is still refused.
    ASSERT_OK_AND_ASSIGN(AttentionResult empty,
                         Attend(Tensor::Zeros({0, 2, 5, 8}), Tensor::Zeros({0, 1, 7, 8}), Tensor::Zeros({0, 1, 7, 3}),
                                options));
    EXPECT_EQ(empty.output.shape, (Shape{0, 2, 5, 3}));
    options.rope->rotary_dim = 3;
    EXPECT_EQ(Attend(Tensor::Zeros({0, 2, 5, 8}), Tensor::Zeros({0, 1, 7, 8}), Tensor::Zeros({0, 1, 7, 3}), options)
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument);
    // No query row, 2-D RoPE over a 2 x 2 grid of keys: queries have no grid positions to get
    // (a probe got "rope (queries): ... got neither").
    options.rope = AttentionRope{};
    options.rope->kind = RopeKind::k2D;
    options.rope->grid_height = 2;
    options.rope->grid_width = 2;
    ASSERT_OK_AND_ASSIGN(AttentionResult no_rows,
                         Attend(Tensor::Zeros({1, 1, 0, 8}), RandomTensor({1, 1, 4, 8}, 1), RandomTensor({1, 1, 4, 3}, 2),
                                options));
    EXPECT_EQ(no_rows.output.shape, (Shape{1, 1, 0, 3}));
  }
}

TEST(AttentionRopeTest, RelativePositionsOnly) {
  // Shifting every query and key position by the same offset leaves softmax attention unchanged
  // (MATH.md 2, relativity), up to the rounding of the rotations.
  AttentionCase c = Case("shift", 1, 2, 1, 9, 11, 16, 8);
  const CaseInputs in = MakeInputs(c);
  AttentionOptions a;
  a.causal = true;
  a.rope = AttentionRope{};
  AttentionOptions b = a;
  for (int64_t i = 0; i < 9; ++i) b.rope->query_positions.push_back(static_cast<double>(2 + i + 1000));
  for (int64_t j = 0; j < 11; ++j) b.rope->key_positions.push_back(static_cast<double>(j + 1000));
  ASSERT_OK_AND_ASSIGN(AttentionResult ra, Attend(in.query, in.key, in.value, a));
  ASSERT_OK_AND_ASSIGN(AttentionResult rb, Attend(in.query, in.key, in.value, b));
  const Reference ref = ReferenceAttend(in.query, in.key, in.value, a);
  for (size_t n = 0; n < ra.output.values.size(); ++n) {
    EXPECT_NEAR(ra.output.values[n], rb.output.values[n], 2 * ref.tolerance) << n;
  }
}

// =============================================================================================
// 4. LINEAR against its explicit n x n form (MATH.md 6), with RoPE per Su in the numerator.

std::vector<AttentionCase> LinearCases() {
  std::vector<AttentionCase> cases;
  auto add = [&](AttentionCase c, auto edit) {
    c.options.kind = AttentionKind::kLinear;
    c.name = "linear " + c.name;
    edit(c);
    cases.push_back(std::move(c));
  };
  add(Case("non-causal", 1, 1, 1, 13, 13, 8, 8), [](AttentionCase&) {});
  add(Case("causal gqa 8/2 key_lengths", 2, 8, 2, 129, 129, 8, 16), [](AttentionCase& c) {
    c.options.causal = true;
    c.options.key_lengths = {129, 50};
  });
  add(Case("causal mqa 8/1 Lq<Lk", 1, 8, 1, 13, 257, 80, 8), [](AttentionCase& c) { c.options.causal = true; });
  add(Case("causal Lq>Lk key_lengths 0", 2, 2, 1, 129, 13, 8, 8), [](AttentionCase& c) {
    c.options.causal = true;
    c.options.key_lengths = {0, 13};
  });
  add(Case("causal D1", 1, 2, 2, 257, 257, 1, 3), [](AttentionCase& c) {
    c.options.causal = true;
    c.value_scale = 1000.0f;
  });
  add(Case("decode D128", 1, 2, 1, 1, 129, 128, 128), [](AttentionCase&) {});
  add(Case("non-causal Lq>Lk key_lengths", 2, 4, 4, 257, 129, 8, 1), [](AttentionCase& c) {
    c.options.key_lengths = {1, 128};
    c.value_scale = 1e-3f;
  });
  for (AttentionCase& c : RopeCases(AttentionKind::kLinear)) cases.push_back(std::move(c));
  {
    AttentionCase c = Case("linear rope causal Lq=Lk=129 key_lengths", 2, 4, 2, 129, 129, 16, 8);
    c.options.kind = AttentionKind::kLinear;
    c.options.rope = AttentionRope{};
    c.options.causal = true;
    c.options.key_lengths = {129, 60};
    cases.push_back(c);
  }
  return cases;
}

TEST(AttentionLinearTest, MatchesExplicitForm) {
  for (const AttentionCase& c : LinearCases()) {
    if (c.options.rope.has_value()) {
      CheckRopeEquivalence(c);  // Reference comparison plus "RoPE changed something".
    } else {
      RunAgainstReference(c);
    }
  }
}

TEST(AttentionLinearTest, RopeDenominatorIsUnrotated) {
  // With v = 1 everywhere the unrotated form gives exactly 1 for every visible row. With RoPE in
  // the numerator only (Su) the output is sum_j (R phi(q)).(R phi(k_j)) / sum_j phi(q).phi(k_j),
  // which is not 1; a kernel that also rotated the denominator would give 1 again.
  const int64_t lq = 6, lk = 6, dim = 8;
  Tensor q = RandomTensor({1, 1, lq, dim}, 11);
  Tensor k = RandomTensor({1, 1, lk, dim}, 12);
  Tensor v = MakeTensor({1, 1, lk, 1}, std::vector<float>(lk, 1.0f));
  AttentionOptions options;
  options.kind = AttentionKind::kLinear;
  options.causal = true;
  ASSERT_OK_AND_ASSIGN(AttentionResult plain, Attend(q, k, v, options));
  for (float x : plain.output.values) EXPECT_NEAR(x, 1.0, 8 * kEps);
  options.rope = AttentionRope{};
  options.rope->base = 2.0;  // Fast rotations: large angles already at positions 1..5.
  ASSERT_OK_AND_ASSIGN(AttentionResult rotated, Attend(q, k, v, options));
  const Reference ref = ReferenceAttend(q, k, v, options);
  double max_dev = 0;
  for (size_t n = 0; n < rotated.output.values.size(); ++n) {
    EXPECT_NEAR(rotated.output.values[n], ref.output[n], ref.tolerance) << n;
    max_dev = std::max(max_dev, std::abs(ref.output[n] - 1.0));
  }
  // Row 0 sees only key 0 at the same position (relative angle 0) and stays 1; later rows move.
  EXPECT_GT(max_dev, 1e-3);
}

TEST(AttentionLinearTest, LogitsFarBelowZeroKeepTheirWeights) {
  // phi(x) = exp(x) underflows float below about -87, but out_i does not change when a query
  // row's phi, or a head's phi(k), is multiplied by a common factor: such rows and heads must
  // still average their values, not become 0 / 0 (a probe set a query row to -95 and got zeros).
  // Every third query row near -95, or every key near -100, or both; causal or not; RoPE or not.
  for (bool causal : {false, true}) {
    for (bool rope : {false, true}) {
      for (const char* shifted : {"queries", "keys", "both"}) {
        SCOPED_TRACE(absl::StrCat(shifted, causal ? " causal" : "", rope ? " rope" : ""));
        Tensor q = RandomTensor({1, 2, 13, 8}, 21);
        Tensor k = RandomTensor({1, 1, 13, 8}, 22);
        const Tensor v = RandomTensor({1, 1, 13, 3}, 23);
        if (std::string(shifted) != "keys") {
          for (int64_t row = 0; row < 2 * 13; row += 3) {
            for (int64_t c = 0; c < 8; ++c) q.values[static_cast<size_t>(row * 8 + c)] -= 95.0f;
          }
        }
        if (std::string(shifted) != "queries") {
          for (float& x : k.values) x -= 100.0f;
        }
        AttentionOptions options;
        options.kind = AttentionKind::kLinear;
        options.causal = causal;
        if (rope) options.rope = AttentionRope{};
        ASSERT_OK_AND_ASSIGN(AttentionResult r, Attend(q, k, v, options));
        const Reference ref = ReferenceAttend(q, k, v, options);
        double err = 0, weight_err = 0;
        EXPECT_TRUE(MatchesReference(r, ref, DimsOf(q, k, v), false, &err, &weight_err));
        Report(absl::StrCat("linear, ", shifted, " far below zero", causal ? " causal" : "", rope ? " rope" : ""), err,
               ref.tolerance, ref.max_abs_value);
        // Row 0 sees key 0 at least: an average of values, not zeros.
        EXPECT_GT(std::abs(r.output.values[0]) + std::abs(r.output.values[1]) + std::abs(r.output.values[2]), 1e-3);
      }
    }
  }
}

TEST(AttentionLinearTest, PaddingDoesNotSetTheScaleAndUnderflowIsRefused) {
  // The common factor of the keys comes from the keys some row sees: a padded key far above
  // must not push a visible key at -200 to exp(-200) = 0 (the row would read 0 / 0). (1e33:
  // the fuzzer found the padded key's exp(x - m) argument overflowing int under UBSan.)
  const Tensor q = RandomTensor({1, 1, 2, 4}, 31);
  Tensor k = MakeTensor({1, 1, 2, 4}, {-200, -200, -200, -200, 1e33f, 1e33f, 1e33f, 1e33f});
  const Tensor v = RandomTensor({1, 1, 2, 3}, 32);
  AttentionOptions options;
  options.kind = AttentionKind::kLinear;
  options.key_lengths = {1};
  ASSERT_OK_AND_ASSIGN(AttentionResult padded, Attend(q, k, v, options));
  for (int64_t i = 0; i < 2; ++i) {
    for (int64_t c = 0; c < 3; ++c) EXPECT_NEAR(padded.output.values[i * 3 + c], v.values[c], 8 * kEps);  // v_0.
  }
  // Causal: row 0 sees only key 0, row 1 both, so one factor cannot serve both rows. Row 0's
  // products underflow float: refused, never returned as zeros.
  options.key_lengths.clear();
  options.causal = true;
  const absl::StatusOr<AttentionResult> causal = Attend(q, k, v, options);
  EXPECT_EQ(causal.status().code(), absl::StatusCode::kInvalidArgument) << causal.status();
  EXPECT_THAT(std::string(causal.status().message()), HasSubstr("underflows float32 for query row 0"));
}

TEST(AttentionLinearTest, OverflowIsRefusedNotReturned) {
  // phi(x) = x + 1 for x > 0: logits near 2e19 give phi(q).phi(k) of about 1.6e39, past float's
  // range. The probe got Inf and NaN with status OK; SOFTMAX refuses its overflow the same way.
  const Tensor q = MakeTensor({1, 1, 2, 4}, std::vector<float>(8, 2e19f));
  const Tensor k = MakeTensor({1, 1, 3, 4}, std::vector<float>(12, 2e19f));
  const Tensor v = RandomTensor({1, 1, 3, 2}, 5);
  for (bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "non-causal");
    AttentionOptions options;
    options.kind = AttentionKind::kLinear;
    options.causal = causal;
    const absl::StatusOr<AttentionResult> r = Attend(q, k, v, options);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("overflows float32"));
  }
  // 1e9 is far from it: phi products near 1e18 are fine.
  AttentionOptions options;
  options.kind = AttentionKind::kLinear;
  const Tensor q9 = MakeTensor({1, 1, 2, 4}, std::vector<float>(8, 1e9f));
  const Tensor k9 = MakeTensor({1, 1, 3, 4}, std::vector<float>(12, 1e9f));
  ASSERT_OK_AND_ASSIGN(AttentionResult ok, Attend(q9, k9, v, options));
  for (int64_t c = 0; c < 2; ++c) {  // Equal keys: every row is the mean of v.
    const double mean = (v.values[c] + v.values[2 + c] + v.values[4 + c]) / 3.0;
    EXPECT_NEAR(ok.output.values[c], mean, 8 * kEps);
  }
}

// =============================================================================================
// 5. Stability: logits of 1e4, fully masked rows.

// Integer-valued q, k whose products and sums are exact in float, so the kernel's logits are
// exact and the one-hot softmax can be compared to the reference at the usual tolerance.
TEST(AttentionStabilityTest, HugeLogitsAreOneHot) {
  struct Order {
    std::string name;
    std::vector<float> keys;
  };
  const int64_t lk = 257;
  std::vector<float> increasing(lk), decreasing(lk), tie(lk);
  for (int64_t j = 0; j < lk; ++j) {
    increasing[j] = static_cast<float>(-256 + 2 * j);  // Logit gaps 200 (q = +-100): exp(-200) = 0 in float.
    decreasing[j] = static_cast<float>(256 - 2 * j);
    tie[j] = j == 3 || j == 200 ? 100.0f : static_cast<float>(j % 50);  // Two maxima: p = 1/2 each.
  }
  for (const Order& order : {Order{"increasing", increasing}, Order{"decreasing", decreasing}, Order{"tie", tie}}) {
    for (bool causal : {false, true}) {
      SCOPED_TRACE(absl::StrCat(order.name, causal ? " causal" : ""));
      // Lq 4 rows alternate q = +100 and -100; D = 1 so logits are q k up to +-25600.
      const Tensor q = MakeTensor({1, 1, 4, 1}, {100, -100, 100, -100});
      const Tensor k = MakeTensor({1, 1, lk, 1}, order.keys);
      const Tensor v = RandomTensor({1, 1, lk, 3}, 5);
      AttentionOptions options;
      options.causal = causal;
      options.return_weights = true;
      ASSERT_OK_AND_ASSIGN(AttentionResult r, Attend(q, k, v, options));
      const Reference ref = ReferenceAttend(q, k, v, options, LogitRounding::kExactLogits);
      double err = 0, weight_err = 0;
      EXPECT_TRUE(MatchesReference(r, ref, DimsOf(q, k, v), true, &err, &weight_err));
      Report("huge logits " + order.name + (causal ? " causal" : ""), err, ref.tolerance, ref.max_abs_value);
    }
  }
}

TEST(AttentionStabilityTest, HugeEqualNegativeLogitsAverage) {
  // Every logit is -1e4 (q = -100, k = 100, D = 1): exp(-1e4) underflows, so a kernel without
  // max subtraction returns 0/0. The softmax is uniform: the output is the mean of v.
  const int64_t lk = 129;
  const Tensor q = MakeTensor({1, 1, 2, 1}, {-100, -100});
  const Tensor k = MakeTensor({1, 1, lk, 1}, std::vector<float>(lk, 100.0f));
  const Tensor v = RandomTensor({1, 1, lk, 4}, 9);
  AttentionOptions options;
  options.return_weights = true;
  ASSERT_OK_AND_ASSIGN(AttentionResult r, Attend(q, k, v, options));
  const Reference ref = ReferenceAttend(q, k, v, options, LogitRounding::kExactLogits);
  double err = 0, weight_err = 0;
  EXPECT_TRUE(MatchesReference(r, ref, DimsOf(q, k, v), true, &err, &weight_err));
  Report("huge equal negative logits", err, ref.tolerance, ref.max_abs_value);
  for (float w : r.weights->values) EXPECT_NEAR(w, 1.0 / lk, ref.weight_tolerance);
}

TEST(AttentionStabilityTest, HugeFiniteBiasIsNotAMask) {
  // A finite bias, however large, is a logit, not a mask: a row where every entry is the bias
  // absorbs q.k and is uniform; a row with some of it and some 0 puts all weight on the zeros.
  // torch.finfo(float32).min (-FLT_MAX) and -2.5e38 pass float's range once multiplied by
  // log2(e) in the kernel's base-2 softmax, and must still not turn into -Inf masks.
  const int64_t lk = 5;
  const Tensor q = RandomTensor({1, 1, 2, 4}, 1);
  const Tensor k = RandomTensor({1, 1, lk, 4}, 2);
  const Tensor v = RandomTensor({1, 1, lk, 2}, 3);
  for (float huge : {-1e30f, -2.5e38f, -std::numeric_limits<float>::max()}) {
    SCOPED_TRACE(absl::StrCat("bias ", huge));
    const float x = huge;
    const Tensor bias = MakeTensor({2, lk}, {x, x, x, x, x, x, 0, x, 0, x});
    AttentionOptions options;
    options.bias = &bias;
    options.return_weights = true;
    ASSERT_OK_AND_ASSIGN(AttentionResult r, Attend(q, k, v, options));
    const Reference ref = ReferenceAttend(q, k, v, options, LogitRounding::kExactBias);
    double err = 0, weight_err = 0;
    EXPECT_TRUE(MatchesReference(r, ref, DimsOf(q, k, v), true, &err, &weight_err));
    for (int64_t j = 0; j < lk; ++j) EXPECT_NEAR(r.weights->values[j], 0.2, ref.weight_tolerance) << j;
    EXPECT_EQ(r.weights->values[lk + 0], 0.0f);
    EXPECT_GT(r.weights->values[lk + 1], 0.0f);
    // The same per row, broadcast along the keys (bias [2, 1]): both rows uniform.
    const Tensor row_bias = MakeTensor({2, 1}, {x, 0});
    options.bias = &row_bias;
    ASSERT_OK_AND_ASSIGN(AttentionResult rows, Attend(q, k, v, options));
    const Reference row_ref = ReferenceAttend(q, k, v, options, LogitRounding::kExactBias);
    EXPECT_TRUE(MatchesReference(rows, row_ref, DimsOf(q, k, v), true, &err, &weight_err));
    for (int64_t j = 0; j < lk; ++j) EXPECT_NEAR(rows.weights->values[j], 0.2, row_ref.weight_tolerance) << j;
  }
}

TEST(AttentionStabilityTest, ValuesNearFloatMaxGiveTheirWeightedMean) {
  // The output is a convex combination of values, so it is finite whenever they are; the
  // kernel's unnormalised sum of p_j v_j is not (it overflowed to +Inf here before).
  const Tensor q0 = Tensor::Zeros({1, 1, 1, 4});
  const Tensor k0 = Tensor::Zeros({1, 1, 2, 4});
  ASSERT_OK_AND_ASSIGN(AttentionResult two, Attend(q0, k0, MakeTensor({1, 1, 2, 1}, {2e38f, 2e38f}), {}));
  EXPECT_EQ(two.output.values[0], 2e38f);  // Power-of-two scaling is exact.

  // Batch 0: values of 1e35 over 4096 keys (their sum passes float's maximum); batch 1: values of
  // order 1, whose outputs must be exactly what they are without the large batch beside them.
  const int64_t lk = 4096;
  const Tensor q = RandomTensor({2, 2, 7, 8}, 21);
  const Tensor k = RandomTensor({2, 1, lk, 8}, 22);
  Tensor v = RandomTensor({2, 1, lk, 3}, 23);
  for (int64_t i = 0; i < lk * 3; ++i) v.values[i] = v.values[i] >= 0 ? 1e35f : -0.9e35f;
  for (bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "not causal");
    AttentionOptions options;
    options.causal = causal;
    options.return_weights = true;
    ASSERT_OK_AND_ASSIGN(AttentionResult r, Attend(q, k, v, options));
    const Reference ref = ReferenceAttend(q, k, v, options);
    double err = 0, weight_err = 0;
    EXPECT_TRUE(MatchesReference(r, ref, DimsOf(q, k, v), true, &err, &weight_err));
    Report(absl::StrCat("values near float max", causal ? " causal" : ""), err, ref.tolerance, ref.max_abs_value);
    for (float x : r.output.values) ASSERT_TRUE(std::isfinite(x));

    Tensor q1 = Tensor::Zeros({1, 2, 7, 8}), k1 = Tensor::Zeros({1, 1, lk, 8}), v1 = Tensor::Zeros({1, 1, lk, 3});
    std::copy(q.values.begin() + 2 * 7 * 8, q.values.end(), q1.values.begin());
    std::copy(k.values.begin() + lk * 8, k.values.end(), k1.values.begin());
    std::copy(v.values.begin() + lk * 3, v.values.end(), v1.values.begin());
    options.return_weights = false;
    ASSERT_OK_AND_ASSIGN(AttentionResult alone, Attend(q1, k1, v1, options));
    EXPECT_TRUE(std::equal(alone.output.values.begin(), alone.output.values.end(),
                           r.output.values.begin() + 2 * 7 * 3));
  }
}

TEST(AttentionStabilityTest, FullyMaskedRowsAreExactZeros) {
  // Every way a row can see nothing, with weights: key_lengths 0; causal with Lq > Lk (the first
  // Lq - Lk rows); a bias row of -Inf; a bias -Inf exactly where key_lengths leaves keys open.
  const Tensor q = RandomTensor({2, 2, 20, 8}, 21);
  const Tensor k = RandomTensor({2, 1, 7, 8}, 22);
  const Tensor v = RandomTensor({2, 1, 7, 3}, 23);
  Tensor bias = RandomTensor({20, 7}, 24);
  for (int64_t j = 0; j < 7; ++j) bias.values[static_cast<size_t>(15 * 7 + j)] = -kInf;  // Row 15.
  for (int64_t j = 0; j < 4; ++j) bias.values[static_cast<size_t>(18 * 7 + j)] = -kInf;  // Row 18, j < 4.
  for (AttentionKind kind : {AttentionKind::kSoftmax, AttentionKind::kLinear}) {
    for (bool causal : {false, true}) {
      for (bool with_bias : {false, true}) {
        if (with_bias && kind == AttentionKind::kLinear) continue;
        SCOPED_TRACE(absl::StrCat(kind == AttentionKind::kLinear ? "linear" : "softmax", causal ? " causal" : "",
                                  with_bias ? " bias" : ""));
        AttentionOptions options;
        options.kind = kind;
        options.causal = causal;
        options.key_lengths = {0, 4};
        options.bias = with_bias ? &bias : nullptr;
        options.return_weights = kind == AttentionKind::kSoftmax;
        ASSERT_OK_AND_ASSIGN(AttentionResult r, Attend(q, k, v, options));
        const Reference ref = ReferenceAttend(q, k, v, options);
        double err = 0, weight_err = 0;
        EXPECT_TRUE(MatchesReference(r, ref, DimsOf(q, k, v), options.return_weights, &err, &weight_err));
        // Batch 0 sees nothing at all: every output is exactly +0 or -0, never NaN.
        for (size_t n = 0; n < r.output.values.size() / 2; ++n) ASSERT_EQ(r.output.values[n], 0.0f) << n;
      }
    }
  }
}

// =============================================================================================
// 6. Bad inputs: status code and the argument the message names.

enum class Poison { kNone, kQuery, kKey, kValue, kBias };

struct BadCase {
  std::string name;
  Shape query, key, value;
  AttentionOptions options;
  std::optional<Shape> bias_shape;
  std::vector<std::string> substrings;  // All must appear in the message.
  absl::StatusCode code = absl::StatusCode::kInvalidArgument;
  Poison poison = Poison::kNone;
  int64_t poison_index = 0;
  float poison_value = 0;
};

TEST(AttentionBadInputTest, CodeAndArgumentName) {
  const Shape q = {2, 4, 5, 8}, k = {2, 2, 6, 8}, v = {2, 2, 6, 3};
  auto opts = [](auto edit) {
    AttentionOptions o;
    edit(o);
    return o;
  };
  const AttentionOptions base;
  const AttentionOptions linear = opts([](AttentionOptions& o) { o.kind = AttentionKind::kLinear; });
  const AttentionOptions rope = opts([](AttentionOptions& o) { o.rope = AttentionRope{}; });
  const auto kRE = absl::StatusCode::kResourceExhausted;
  const auto kIA = absl::StatusCode::kInvalidArgument;
  std::vector<BadCase> cases = {
      // Ranks.
      {"query rank 3", {2, 4, 8}, k, v, base, {}, {"query"}},
      {"query rank 5", {1, 2, 4, 5, 8}, k, v, base, {}, {"query"}},
      {"key rank 3", q, {2, 6, 8}, v, base, {}, {"key"}},
      {"key rank 5", q, {1, 2, 2, 6, 8}, v, base, {}, {"key"}},
      {"value rank 3", q, k, {2, 6, 3}, base, {}, {"value"}},
      {"value rank 0", q, k, {}, base, {}, {"value"}},
      // Mismatches.
      {"batch key", q, {3, 2, 6, 8}, {3, 2, 6, 3}, base, {}, {"key"}},
      {"batch value", q, k, {1, 2, 6, 3}, base, {}, {"value"}},
      {"head_dim q vs k", q, {2, 2, 6, 6}, v, base, {}, {"key"}},
      {"k_len k vs v", q, k, {2, 2, 7, 3}, base, {}, {"value"}},
      {"kv heads k vs v", q, k, {2, 1, 6, 3}, base, {}, {"value"}},
      {"num_heads % num_kv_heads", q, {2, 3, 6, 8}, {2, 3, 6, 3}, base, {}, {"heads"}},
      {"num_kv_heads 0", q, {2, 0, 6, 8}, {2, 0, 6, 3}, base, {}, {}},
      // key_lengths.
      {"key_lengths count 1", q, k, v, opts([](AttentionOptions& o) { o.key_lengths = {6}; }), {},
       {"key_lengths"}},
      {"key_lengths count 3", q, k, v, opts([](AttentionOptions& o) { o.key_lengths = {6, 6, 6}; }), {},
       {"key_lengths"}},
      {"key_lengths negative", q, k, v, opts([](AttentionOptions& o) { o.key_lengths = {6, -1}; }), {},
       {"key_lengths"}},
      {"key_lengths > k_len", q, k, v, opts([](AttentionOptions& o) { o.key_lengths = {7, 6}; }), {},
       {"key_lengths"}},
      // Bias.
      {"bias wrong Lk", q, k, v, base, Shape{5, 7}, {"bias"}},
      {"bias wrong Lq", q, k, v, base, Shape{4, 6}, {"bias"}},
      {"bias wrong heads", q, k, v, base, Shape{2, 2, 5, 6}, {"bias"}},
      {"bias wrong batch", q, k, v, base, Shape{3, 1, 1, 6}, {"bias"}},
      {"bias kv heads is not query heads", q, k, v, base, Shape{1, 2, 1, 1}, {"bias"}},
      {"bias rank 5", q, k, v, base, Shape{1, 2, 4, 5, 6}, {"bias"}},
      {"bias with LINEAR", q, k, v, linear, Shape{5, 6}, {"bias"}},
      {"return_weights with LINEAR", q, k, v,
       opts([](AttentionOptions& o) {
         o.kind = AttentionKind::kLinear;
         o.return_weights = true;
       }),
       {}, {"return_weights"}},
      // Scale.
      {"scale negative", q, k, v, opts([](AttentionOptions& o) { o.scale = -0.5; }), {}, {"scale"}},
      {"scale NaN", q, k, v, opts([](AttentionOptions& o) { o.scale = std::nan(""); }), {}, {"scale"}},
      {"scale +Inf", q, k, v,
       opts([](AttentionOptions& o) { o.scale = std::numeric_limits<double>::infinity(); }), {}, {"scale"}},
      {"scale with LINEAR", q, k, v,
       opts([](AttentionOptions& o) {
         o.kind = AttentionKind::kLinear;
         o.scale = 0.125;
       }),
       {}, {"scale", "LINEAR"}},
      // Non-finite values.
      {"query NaN", q, k, v, base, {}, {"query"}, kIA, Poison::kQuery, 17, kNaN},
      {"key +Inf", q, k, v, base, {}, {"key"}, kIA, Poison::kKey, 95, kInf},
      {"key -Inf", q, k, v, base, {}, {"key"}, kIA, Poison::kKey, 0, -kInf},
      {"value NaN", q, k, v, base, {}, {"value"}, kIA, Poison::kValue, 35, kNaN},
      {"linear query Inf", q, k, v, linear, {}, {"query"}, kIA, Poison::kQuery, 3, kInf},
      {"bias NaN", q, k, v, base, Shape{5, 6}, {"bias"}, kIA, Poison::kBias, 7, kNaN},
      {"bias +Inf", q, k, v, base, Shape{5, 6}, {"bias"}, kIA, Poison::kBias, 29, kInf},
      // Limits: weights [2, 4, 5, 6] = 240 elements; each tensor of {q, k, v, output} over the cap.
      {"weights over max_weight_elements", q, k, v,
       opts([](AttentionOptions& o) {
         o.return_weights = true;
         o.max_weight_elements = 239;
       }),
       {}, {"weights"}, kRE},
      {"query over max_elements", {1, 1, 4, 8}, {1, 1, 2, 8}, {1, 1, 2, 1},
       opts([](AttentionOptions& o) { o.max_elements = 31; }), {}, {"query"}, kRE},
      {"key over max_elements", {1, 1, 1, 8}, {1, 1, 4, 8}, {1, 1, 4, 1},
       opts([](AttentionOptions& o) { o.max_elements = 31; }), {}, {"key"}, kRE},
      {"value over max_elements", {1, 1, 1, 1}, {1, 1, 4, 1}, {1, 1, 4, 8},
       opts([](AttentionOptions& o) { o.max_elements = 31; }), {}, {"value"}, kRE},
      {"output over max_elements", {1, 1, 4, 1}, {1, 1, 1, 1}, {1, 1, 1, 8},
       opts([](AttentionOptions& o) { o.max_elements = 31; }), {}, {"output"}, kRE},
      // Output [2, 4, 5, 3] = 120 and weights 240 share one response: 359 is one short.
      {"output and weights together over max_elements", q, k, v,
       opts([](AttentionOptions& o) {
         o.return_weights = true;
         o.max_elements = 359;
       }),
       {}, {"return_weights", "120 + 240 elements together; at most 359"}, kRE},
      // LINEAR keeps a [head_dim, value_dim] state per thread: 8 x 6 = 48 here, above every tensor
      // (the probe that found this sent [1, 1, 1, 8192] tensors: 256 MiB of state from 96 KiB).
      {"LINEAR state over max_elements", {1, 1, 1, 8}, {1, 1, 1, 8}, {1, 1, 1, 6},
       opts([](AttentionOptions& o) {
         o.kind = AttentionKind::kLinear;
         o.max_elements = 47;
       }),
       {}, {"LINEAR state [head_dim, value_dim]: shape [8, 6] has 48 elements, above the limit of 47"}, kRE},
      {"scale above float's range", q, k, v, opts([](AttentionOptions& o) { o.scale = 1e39; }), {},
       {"scale: expected a number in [0, 3.4028235e38]", "got 1e+39"}},
      // An empty call pays for no table: a claimed 2^24 x 8 (or 2^61 x 8) table is refused first.
      {"rope on an empty call with a huge q_len", {0, 1, int64_t{1} << 24, 8}, {0, 1, 0, 8}, {0, 1, 0, 8}, rope, {},
       {"rope: an empty call", "16777216 x 8", "at most 65536"}, kRE},
      {"rope on an empty call with q_len 2^61", {0, 1, int64_t{1} << 61, 8}, {0, 1, 0, 8}, {0, 1, 0, 8}, rope, {},
       {"rope: an empty call"}, kRE},
      {"rope on an empty call with a huge k_len", {1, 0, 1, 8}, {1, 0, int64_t{1} << 20, 8}, {1, 0, int64_t{1} << 20, 8},
       rope, {}, {"rope: an empty call", "1048576 x 8"}, kRE},
      // RoPE (errors as RopeTable::Create).
      {"rope odd head_dim", {2, 4, 5, 7}, {2, 2, 6, 7}, v, rope, {}, {"dim"}},
      {"rope rotary_dim odd", q, k, v, opts([](AttentionOptions& o) {
         o.rope = AttentionRope{};
         o.rope->rotary_dim = 3;
       }),
       {}, {"rope.rotary_dim:", "[2, 8]"}},
      {"rope query_positions wrong length", q, k, v,
       opts([](AttentionOptions& o) {
         o.rope = AttentionRope{};
         o.rope->query_positions = {0, 1, 2, 3};
       }),
       {}, {"query_positions"}},
      {"rope key_positions wrong length", q, k, v,
       opts([](AttentionOptions& o) {
         o.rope = AttentionRope{};
         o.rope->key_positions = {0, 1, 2, 3, 4, 5, 6};
       }),
       {}, {"key_positions"}},
      {"rope key_positions NaN", q, k, v,
       opts([](AttentionOptions& o) {
         o.rope = AttentionRope{};
         o.rope->key_positions = {0, 1, std::nan(""), 3, 4, 5};
       }),
       {}, {"rope.key_positions[2]:"}},
      {"rope query_positions +Inf", q, k, v,
       opts([](AttentionOptions& o) {
         o.rope = AttentionRope{};
         o.rope->query_positions = {0, std::numeric_limits<double>::infinity(), 2, 3, 4};
       }),
       {}, {"rope.query_positions[1]:"}},
      {"rope key position overflows with base < 1", q, k, v,
       opts([](AttentionOptions& o) {
         o.rope = AttentionRope{};
         o.rope->base = 1e-300;
         o.rope->key_positions = {0, 1, 2, 3, 1e300, 5};
       }),
       {}, {"rope.key_positions[4]:", "overflows"}},
      {"rope base 0", q, k, v, opts([](AttentionOptions& o) {
         o.rope = AttentionRope{};
         o.rope->base = 0;
       }),
       {}, {"rope.base:"}},
      {"rope 2-D grid does not cover k_len", q, k, v,
       opts([](AttentionOptions& o) {
         o.rope = AttentionRope{};
         o.rope->kind = RopeKind::k2D;
         o.rope->grid_height = 2;
         o.rope->grid_width = 2;
       }),
       {}, {"rope.grid_height, rope.grid_width:", "k_len = 6", "2 x 2"}},
      {"rope 2-D head_dim not a multiple of 4", {2, 4, 5, 6}, {2, 2, 6, 6}, v,
       opts([](AttentionOptions& o) {
         o.rope = AttentionRope{};
         o.rope->kind = RopeKind::k2D;
         o.rope->grid_height = 2;
         o.rope->grid_width = 3;
       }),
       {}, {"dim"}},
      {"rope 1-D with a grid", q, k, v,
       opts([](AttentionOptions& o) {
         o.rope = AttentionRope{};
         o.rope->grid_height = 2;
         o.rope->grid_width = 3;
       }),
       {}, {"grid"}},
  };

  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    Tensor query = Tensor::Zeros(c.query), key = Tensor::Zeros(c.key), value = Tensor::Zeros(c.value);
    for (Tensor* t : {&query, &key, &value}) {
      for (size_t i = 0; i < t->values.size(); ++i) t->values[i] = 0.25f * static_cast<float>(i % 5) - 0.5f;
    }
    std::optional<Tensor> bias;
    if (c.bias_shape.has_value()) bias = Tensor::Zeros(*c.bias_shape);
    Tensor* target = c.poison == Poison::kQuery ? &query
                     : c.poison == Poison::kKey ? &key
                     : c.poison == Poison::kValue ? &value
                     : c.poison == Poison::kBias ? &*bias
                                                 : nullptr;
    if (target != nullptr) target->values[static_cast<size_t>(c.poison_index)] = c.poison_value;
    AttentionOptions options = c.options;
    options.bias = bias.has_value() ? &*bias : nullptr;
    const absl::StatusOr<AttentionResult> out = Attend(query, key, value, options);
    if (out.ok()) {
      ADD_FAILURE() << "accepted; want " << absl::StatusCodeToString(c.code);
      continue;
    }
    EXPECT_EQ(out.status().code(), c.code) << out.status();
    for (const std::string& s : c.substrings) {
      EXPECT_THAT(std::string(out.status().message()), HasSubstr(s));
    }
  }
}

TEST(AttentionBadInputTest, NonFiniteInALargeTensorNamesItsIndex) {
  // Above 2^18 elements the finiteness scan is split over the threads; the message still names
  // the first bad element of the whole tensor.
  const Tensor q = RandomTensor({1, 2, 2048, 64}, 1);
  Tensor v = RandomTensor({1, 2, 2048, 64}, 2);
  v.values[200000] = kInf;
  v.values[250000] = kNaN;
  for (int threads : {1, 2}) {
    ScopedComputeThreads scoped(threads);
    const absl::Status status = Attend(q, q, v, AttentionOptions()).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr("value[200000]: expected a finite number, got +Inf"));
  }
}

TEST(AttentionBadInputTest, Bf16ChecksFinitenessWhileConvertingAndNamesTheSameIndex) {
  // BF16 without RoPE checks the inputs in its conversion pass; the message must be the F32 one.
  // Odd sizes put bad values in the vector body and in the tail of a thread's range.
  if (!HasNativeBf16()) GTEST_SKIP() << "no native bf16 on this CPU (" << DnnlIsaName() << ")";
  const Tensor good = RandomTensor({1, 2, 1031, 24}, 1);
  const int64_t n = static_cast<int64_t>(good.values.size());
  for (const char* field : {"query", "key", "value"}) {
    for (int64_t index : {int64_t{0}, int64_t{17}, n / 2 + 5, n - 1}) {
      for (float bad : {kInf, -kInf, kNaN}) {
        for (bool rope : {false, true}) {
          SCOPED_TRACE(absl::StrCat(field, "[", index, "] = ", bad, rope ? " with RoPE" : ""));
          Tensor q = good, k = good, v = good;
          Tensor& target = std::string(field) == "query" ? q : std::string(field) == "key" ? k : v;
          target.values[static_cast<size_t>(index)] = bad;
          AttentionOptions options;
          options.precision = ComputePrecision::kBF16;
          if (rope) options.rope = AttentionRope();
          const absl::Status status = Attend(q, k, v, options).status();
          EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
          EXPECT_THAT(std::string(status.message()),
                      HasSubstr(absl::StrCat(field, "[", index, "]: expected a finite number, got ",
                                             std::isnan(bad) ? "NaN" : bad > 0 ? "+Inf" : "-Inf")));
        }
      }
    }
  }
}

TEST(AttentionBadInputTest, NegativeInfinityBiasIsAllowed) {
  const Tensor q = RandomTensor({1, 1, 2, 4}, 1), k = RandomTensor({1, 1, 3, 4}, 2), v = RandomTensor({1, 1, 3, 2}, 3);
  const Tensor bias = MakeTensor({3}, {-kInf, 0, -kInf});
  AttentionOptions options;
  options.bias = &bias;
  ASSERT_OK_AND_ASSIGN(AttentionResult r, Attend(q, k, v, options));
  // Only key 1 is visible: the output is v_1 (p = 1 exactly up to exp(0) / exp(0)).
  for (int64_t i = 0; i < 2; ++i) {
    EXPECT_NEAR(r.output.values[i * 2 + 0], v.values[2], 4 * kEps) << i;
    EXPECT_NEAR(r.output.values[i * 2 + 1], v.values[3], 4 * kEps) << i;
  }
}

// Finite inputs whose product overflows float32 (q.k = 4e40): a clear INVALID_ARGUMENT, not
// zeros or NaN, in any row and whichever the precision.
TEST(AttentionBadInputTest, OverflowingLogitsAreRefused) {
  for (ComputePrecision precision : {ComputePrecision::kF32, ComputePrecision::kBF16}) {
    if (precision == ComputePrecision::kBF16 && !HasNativeBf16()) continue;
    for (int64_t row : {0, 140}) {
      SCOPED_TRACE(absl::StrCat(precision == ComputePrecision::kBF16 ? "BF16" : "F32", " row ", row));
      Tensor q = RandomTensor({1, 2, 150, 4}, 1);
      const Tensor k = MakeTensor({1, 1, 3, 4}, std::vector<float>(12, 1e20f));
      const Tensor v = RandomTensor({1, 1, 3, 2}, 3);
      for (int64_t c = 0; c < 4; ++c) q.values[(150 + row) * 4 + c] = 1e20f;  // Head 1.
      AttentionOptions options;
      options.precision = precision;
      options.scale = 1.0;
      const absl::Status status = Attend(q, k, v, options).status();
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
      EXPECT_THAT(std::string(status.message()), HasSubstr("overflows float32"));
    }
  }
}

TEST(AttentionBadInputTest, AnOverflowedLogitMaskedByMinusInfinityIsRefused) {
  // q.k = 1e40 overflows to +Inf; a -Inf bias on that key makes the logit NaN (PyTorch returns a
  // NaN row). Wherever the key sits in its tile, and whatever its neighbours are (finite, masked,
  // overflowed too), the call is refused rather than answered with zeros or NaN.
  for (ComputePrecision precision : {ComputePrecision::kF32, ComputePrecision::kBF16}) {
    if (precision == ComputePrecision::kBF16 && !HasNativeBf16()) continue;
    for (int64_t at : {0, 16, 31, 512, 528, 543}) {
      for (int neighbours = 0; neighbours < 3; ++neighbours) {
        SCOPED_TRACE(absl::StrCat(precision == ComputePrecision::kBF16 ? "BF16" : "F32", " key ", at,
                                  neighbours == 0 ? " finite" : neighbours == 1 ? " masked" : " overflowed"));
        const int64_t lk = at < 512 ? 32 : 544;
        const Tensor q = MakeTensor({1, 1, 1, 1}, {1e20f});
        std::vector<float> keys(lk, 1.0f), bias_values(lk, 0.0f);
        keys[at] = 1e20f;
        bias_values[at] = -kInf;
        for (int64_t j = lk - 32; j < lk; ++j) {
          if (j == at) continue;
          if (neighbours == 1) bias_values[j] = -kInf;
          if (neighbours == 2) keys[j] = 1e20f;
        }
        const Tensor k = MakeTensor({1, 1, lk, 1}, keys);
        const Tensor v = RandomTensor({1, 1, lk, 2}, 3);
        const Tensor bias = MakeTensor({lk}, bias_values);
        AttentionOptions options;
        options.precision = precision;
        options.scale = 1.0;
        options.bias = &bias;
        options.return_weights = true;
        const absl::Status status = Attend(q, k, v, options).status();
        EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
        EXPECT_THAT(std::string(status.message()), HasSubstr("overflows float32"));
      }
    }
  }
}

TEST(AttentionLimitsTest, AtTheCapsIsAccepted) {
  const Tensor q = RandomTensor({2, 4, 5, 8}, 1), k = RandomTensor({2, 2, 6, 8}, 2), v = RandomTensor({2, 2, 6, 3}, 3);
  AttentionOptions options;
  options.return_weights = true;
  options.max_weight_elements = 2 * 4 * 5 * 6;
  // Output and weights together (120 + 240) are above the largest tensor, the query (320).
  options.max_elements = 2 * 4 * 5 * 3 + 2 * 4 * 5 * 6;
  ASSERT_OK_AND_ASSIGN(AttentionResult r, Attend(q, k, v, options));
  ASSERT_TRUE(r.weights.has_value());
  EXPECT_EQ(r.weights->shape, (Shape{2, 4, 5, 6}));
}

TEST(AttentionLimitsTest, WeightCapOnlyAppliesToReturnedWeights) {
  // The flash kernel never materialises [Lq, Lk]: a score matrix far above max_weight_elements
  // is fine when weights are not requested.
  const Tensor q = RandomTensor({1, 2, 300, 8}, 1), k = RandomTensor({1, 1, 400, 8}, 2);
  const Tensor v = RandomTensor({1, 1, 400, 4}, 3);
  AttentionOptions options;
  options.max_weight_elements = 16;
  options.causal = true;
  ASSERT_OK_AND_ASSIGN(AttentionResult r, Attend(q, k, v, options));
  EXPECT_EQ(r.output.shape, (Shape{1, 2, 300, 4}));
  EXPECT_FALSE(r.weights.has_value());
}

// Peak resident memory since the last ResetPeakRss(), in bytes; -1 where /proc does not tell.
int64_t PeakRssBytes() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  int64_t kib = -1;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
  }
  std::fclose(f);
  return kib < 0 ? -1 : kib * 1024;
}

// Resets VmHWM to the current resident size (Linux: "5" into clear_refs); false if refused.
bool ResetPeakRss() {
  FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (f == nullptr) return false;
  const bool ok = std::fputs("5", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

TEST(AttentionLimitsTest, WorkspaceFollowsTheRowsNotTheTile) {
  // One query row against a value_dim of 2^21: the output is 8 MiB. The accumulator of every
  // thread was sized for a full 128-row tile, 1 GiB each (a probe raised the server's memory by
  // 530 MB with a 4 MB request); it now holds the rows a tile has.
  const int64_t value_dim = int64_t{1} << 21;
  const Tensor q = RandomTensor({1, 1, 1, 4}, 1), k = RandomTensor({1, 1, 3, 4}, 2);
  const Tensor v = RandomTensor({1, 1, 3, value_dim}, 3);
  if (!ResetPeakRss()) GTEST_SKIP() << "/proc/self/clear_refs is not writable here";
  const int64_t before = PeakRssBytes();
  ASSERT_GT(before, 0);
  ASSERT_OK_AND_ASSIGN(AttentionResult r, Attend(q, k, v, AttentionOptions{}));
  const int64_t growth = PeakRssBytes() - before;
  std::printf("value_dim 2^21: peak resident memory grew by %.1f MiB (output 8 MiB, %d threads)\n",
              static_cast<double>(growth) / (1 << 20), ComputeThreads());
  EXPECT_LT(growth, int64_t{400} << 20);  // Sanitizers double or triple the ~24 MiB; 1 GiB per thread before.
  // The output is right too: softmax weights over 3 keys applied to v.
  ASSERT_EQ(r.output.values.size(), static_cast<size_t>(value_dim));
  const Reference ref = ReferenceAttend(q, k, v, AttentionOptions{});
  for (int64_t c = 0; c < value_dim; c += 4099) EXPECT_NEAR(r.output.values[c], ref.output[c], ref.tolerance) << c;
}

// =============================================================================================
// 7. Cancellation.

TEST(AttentionCancelTest, CancelledCallbackAbandonsTheCall) {
  // One head, Lq = Lk = 1024: many query tiles or chunks in any blocking, so "polled between
  // tiles" means more than one poll even without batch or head parallelism. cancel_after 0
  // cancels at the first poll; 1 needs a poll after the work started.
  const Tensor q = RandomTensor({1, 1, 1024, 16}, 1), k = RandomTensor({1, 1, 1024, 16}, 2);
  const Tensor v = RandomTensor({1, 1, 1024, 8}, 3);
  for (AttentionKind kind : {AttentionKind::kSoftmax, AttentionKind::kLinear}) {
    for (bool causal : {false, true}) {
      const std::string name =
          absl::StrCat(kind == AttentionKind::kLinear ? "linear" : "softmax", causal ? " causal" : "");
      for (int64_t cancel_after : {0, 1}) {
        SCOPED_TRACE(absl::StrCat(name, ", cancel after ", cancel_after, " polls"));
        std::atomic<int64_t> polls{0};
        AttentionOptions options;
        options.kind = kind;
        options.causal = causal;
        options.cancelled = [&polls, cancel_after] { return polls.fetch_add(1) >= cancel_after; };
        const absl::StatusOr<AttentionResult> r = Attend(q, k, v, options);
        if (r.ok()) {
          ADD_FAILURE() << "completed after " << polls.load() << " polls; want CANCELLED";
          continue;
        }
        EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
        EXPECT_GT(polls.load(), cancel_after);
      }
      // Never cancelled: the callback is polled and the call completes.
      SCOPED_TRACE(name + ", never cancelled");
      std::atomic<int64_t> polls{0};
      AttentionOptions options;
      options.kind = kind;
      options.causal = causal;
      options.cancelled = [&polls] {
        polls.fetch_add(1);
        return false;
      };
      ASSERT_OK_AND_ASSIGN(AttentionResult r, Attend(q, k, v, options));
      std::printf("[ attention ] %s, 1 x 1024 x 1024: %ld polls\n", name.c_str(), static_cast<long>(polls.load()));
      EXPECT_GE(polls.load(), 2);
      EXPECT_EQ(r.output.shape, (Shape{1, 1, 1024, 8}));
    }
  }
}

// =============================================================================================
// 8. Threads, precision.

TEST(AttentionThreadTest, OneAndTwoThreadsAgree) {
  // Large enough that any row- or head-parallel split forks. Each output row is one reduction
  // over keys whatever the split, so the results should agree to the last bit; the assertion
  // allows the differential tolerance (the header does not promise bit-identity), and the
  // printed line reports whether they were bitwise equal.
  std::vector<AttentionCase> cases = {Case("threads softmax", 2, 4, 2, 300, 300, 64, 32),
                                      Case("threads linear", 2, 4, 2, 300, 300, 64, 32),
                                      Case("threads decode", 1, 8, 1, 1, 2000, 64, 64)};
  cases[0].options.causal = true;
  cases[0].options.return_weights = true;
  cases[0].bias_shape = Shape{300, 300};
  cases[1].options.kind = AttentionKind::kLinear;
  cases[1].options.causal = true;
  cases[1].options.rope = AttentionRope{};
  cases[2].options.key_lengths = {1500};
  for (const AttentionCase& c : cases) {
    SCOPED_TRACE(Describe(c));
    const CaseInputs in = MakeInputs(c);
    AttentionOptions options = c.options;
    options.bias = in.bias.has_value() ? &*in.bias : nullptr;
    std::optional<AttentionResult> results[2];
    for (int threads : {1, 2}) {
      ScopedComputeThreads scoped(threads);
      ASSERT_OK_AND_ASSIGN(AttentionResult r, Attend(in.query, in.key, in.value, options));
      results[threads - 1] = std::move(r);
    }
    const Reference ref = ReferenceAttend(in.query, in.key, in.value, options);
    double max_diff = 0;
    for (size_t n = 0; n < results[0]->output.values.size(); ++n) {
      const double diff = std::abs(static_cast<double>(results[0]->output.values[n]) - results[1]->output.values[n]);
      max_diff = std::max(max_diff, diff);
    }
    EXPECT_LE(max_diff, ref.tolerance);
    if (options.return_weights) {
      ASSERT_TRUE(results[0]->weights.has_value() && results[1]->weights.has_value());
      double max_weight_diff = 0;
      for (size_t n = 0; n < results[0]->weights->values.size(); ++n) {
        max_weight_diff = std::max(max_weight_diff, std::abs(static_cast<double>(results[0]->weights->values[n]) -
                                                             results[1]->weights->values[n]));
      }
      EXPECT_LE(max_weight_diff, ref.weight_tolerance);
    }
    const bool bitwise = results[0]->output.values == results[1]->output.values;
    Report(Describe(c) + (bitwise ? " 1 vs 2 threads (bitwise)" : " 1 vs 2 threads (NOT bitwise)"), max_diff,
           ref.tolerance, ref.max_abs_value);
    double err = 0, weight_err = 0;
    EXPECT_TRUE(MatchesReference(*results[1], ref, DimsOf(in.query, in.key, in.value), options.return_weights,
                                 &err, &weight_err));
  }
}

// BF16 error model (on top of the float32 tolerance of the same case). bfloat16 keeps 8
// significant bits, unit roundoff u = 2^-9, and the kernel rounds q, k, v and each probability
// tile to it (nearest even):
//   - q_d k_d with both rounded is off by up to 2u |q_d k_d|, so a logit by
//     d_ij <= 2u scale sum_d |q_d k_d|; the reference's p-weighted e_ij carries that sum times
//     sqrt(D) (its float32 random-walk factor), so sum_j p_ij d_ij <= 2u logit_error / sqrt(D)
//     (an overestimate when a bias contributes to e_ij: the bias is not rounded).
//   - As for float32 (see kMargin), logit errors move the output by at most
//     2 (sum_j p_j d_j) max|v| and a weight by at most 2 sum_j p_j d_j.
//   - Rounding p and v moves sum_j p_j v_j by at most u max|v| each; the normaliser is the sum of
//     the unrounded p, so the rounded ones sum to 1 within u.
// Twice the sum, for second-order terms and float32 accumulation order. The float32 model
// assumes rounding errors that partly cancel (sqrt(n)); the bf16 terms are worst-case sums.
constexpr double kBf16UnitRoundoff = 1.0 / 512;

Reference WithBf16Tolerance(Reference ref, const Dims& d) {
  const double u = kBf16UnitRoundoff;
  const double logit_shift = 2 * u * ref.logit_error / std::sqrt(static_cast<double>(d.head_dim));
  ref.weight_tolerance += 2 * (2 * logit_shift);
  ref.tolerance += 2 * ref.max_abs_value * (2 * logit_shift + 2 * u);
  return ref;
}

// Runs `c` in BF16 and F32 against the float64 reference; returns the max error of each
// relative to the case's output scale max|v|.
struct PrecisionErrors {
  double bf16 = 0, f32 = 0;
};

PrecisionErrors RunBf16AgainstReference(const AttentionCase& c) {
  SCOPED_TRACE(Describe(c));
  PrecisionErrors errors;
  const CaseInputs in = MakeInputs(c);
  AttentionOptions options = c.options;
  options.bias = in.bias.has_value() ? &*in.bias : nullptr;
  options.precision = ComputePrecision::kF32;
  const Dims d = DimsOf(in.query, in.key, in.value);
  const Reference ref = ReferenceAttend(in.query, in.key, in.value, options);
  const Reference bf16_ref = WithBf16Tolerance(ref, d);
  const double scale = ref.max_abs_value > 0 ? ref.max_abs_value : 1.0;
  for (ComputePrecision precision : {ComputePrecision::kBF16, ComputePrecision::kF32}) {
    options.precision = precision;
    const bool bf16 = precision == ComputePrecision::kBF16;
    absl::StatusOr<AttentionResult> r = Attend(in.query, in.key, in.value, options);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return errors;
    double err = 0, weight_err = 0;
    EXPECT_TRUE(MatchesReference(*r, bf16 ? bf16_ref : ref, d, options.return_weights, &err, &weight_err))
        << (bf16 ? "BF16" : "F32");
    (bf16 ? errors.bf16 : errors.f32) = err / scale;
    if (bf16) Report(Describe(c) + " BF16", err, bf16_ref.tolerance, ref.max_abs_value);
  }
  return errors;
}

// BF16 must run on CPUs with native bfloat16 (this one: avx512_core_bf16) and be refused
// clearly elsewhere; the tests below skip only where HasNativeBf16() is false.
bool Bf16Available() {
  if (HasNativeBf16()) return true;
  const Tensor t = Tensor::Zeros({1, 1, 1, 8});
  AttentionOptions options;
  options.precision = ComputePrecision::kBF16;
  const absl::Status status = Attend(t, t, t, options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("native bfloat16"));
  return false;
}

TEST(AttentionPrecisionTest, Bf16IsCloseOrUnimplemented) {
  if (!Bf16Available()) GTEST_SKIP() << "no native bf16 on this CPU (" << DnnlIsaName() << ")";
  AttentionCase c = Case("bf16", 1, 4, 2, 129, 129, 64, 32);
  c.options.causal = true;
  const PrecisionErrors errors = RunBf16AgainstReference(c);
  // Not bit-equal to F32 (the rounding must have happened) yet far closer than chance.
  EXPECT_GT(errors.bf16, errors.f32);
}

// The SOFTMAX differential table (odd shapes 1, 13, 129, 257; GQA 8/8, 8/2, 8/1; causal,
// key_lengths, every bias broadcast with -Inf masks and fully masked rows; weights) in BF16.
TEST(AttentionPrecisionTest, Bf16SoftmaxMatchesReference) {
  if (!Bf16Available()) GTEST_SKIP() << "no native bf16 on this CPU (" << DnnlIsaName() << ")";
  std::vector<AttentionCase> cases = SoftmaxCases();
  AttentionCase rope = Case("bf16 rope half split", 1, 4, 4, 129, 257, 64, 64);
  rope.options.rope = AttentionRope{};
  rope.options.rope->pairing = RopePairing::kHalfSplit;
  cases.push_back(rope);
  PrecisionErrors worst;
  for (const AttentionCase& c : cases) {
    const PrecisionErrors e = RunBf16AgainstReference(c);
    worst.bf16 = std::max(worst.bf16, e.bf16);
    worst.f32 = std::max(worst.f32, e.f32);
  }
  std::printf("[ attention ] max |err| / max|v| over %zu SOFTMAX cases: BF16 %.3e, F32 %.3e\n", cases.size(),
              worst.bf16, worst.f32);
  ::testing::Test::RecordProperty("bf16_max_rel_err", absl::StrCat(worst.bf16));
  ::testing::Test::RecordProperty("f32_max_rel_err", absl::StrCat(worst.f32));
}

TEST(AttentionPrecisionTest, Bf16HugeLogitsStayFiniteAndOneHot) {
  if (!Bf16Available()) GTEST_SKIP() << "no native bf16 on this CPU (" << DnnlIsaName() << ")";
  // Integers below 256 are exact in bfloat16, so the logits (up to +-25600) are exact as in the
  // float32 test; only v (and p, here 1, 1/2 or 0: exact) are rounded.
  const int64_t lk = 257;
  std::vector<float> increasing(lk), tie(lk);
  for (int64_t j = 0; j < lk; ++j) {
    increasing[j] = static_cast<float>(-256 + 2 * j);
    tie[j] = j == 3 || j == 200 ? 100.0f : static_cast<float>(j % 50);
  }
  for (const std::vector<float>* keys : {&increasing, &tie}) {
    for (bool causal : {false, true}) {
      SCOPED_TRACE(absl::StrCat(keys == &tie ? "tie" : "increasing", causal ? " causal" : ""));
      const Tensor q = MakeTensor({1, 1, 4, 1}, {100, -100, 100, -100});
      const Tensor k = MakeTensor({1, 1, lk, 1}, *keys);
      const Tensor v = RandomTensor({1, 1, lk, 3}, 5);
      AttentionOptions options;
      options.causal = causal;
      options.return_weights = true;
      options.precision = ComputePrecision::kBF16;
      ASSERT_OK_AND_ASSIGN(AttentionResult r, Attend(q, k, v, options));
      Reference ref = ReferenceAttend(q, k, v, options, LogitRounding::kExactLogits);
      ref.tolerance += 2 * kBf16UnitRoundoff * ref.max_abs_value;  // v rounded.
      double err = 0, weight_err = 0;
      EXPECT_TRUE(MatchesReference(r, ref, DimsOf(q, k, v), true, &err, &weight_err));
      Report(absl::StrCat("BF16 huge logits", keys == &tie ? " tie" : "", causal ? " causal" : ""), err,
             ref.tolerance, ref.max_abs_value);
    }
  }
}

TEST(AttentionPrecisionTest, Bf16EmptyCallsStillRefuseNonFiniteInputs) {
  // BF16 without RoPE checks finiteness while converting; a call that returns before converting
  // (no query row, or value_dim 0) must still refuse NaN as F32 does.
  if (!Bf16Available()) GTEST_SKIP() << "no native bf16 on this CPU (" << DnnlIsaName() << ")";
  AttentionOptions options;
  options.precision = ComputePrecision::kBF16;
  Tensor k = RandomTensor({1, 1, 3, 8}, 1);
  k.values[5] = std::numeric_limits<float>::quiet_NaN();
  const absl::StatusOr<AttentionResult> no_rows =
      Attend(Tensor::Zeros({1, 1, 0, 8}), k, RandomTensor({1, 1, 3, 2}, 2), options);
  EXPECT_EQ(no_rows.status().code(), absl::StatusCode::kInvalidArgument) << no_rows.status();
  EXPECT_THAT(std::string(no_rows.status().message()), HasSubstr("key[5]"));
  const absl::StatusOr<AttentionResult> no_values =
      Attend(RandomTensor({1, 1, 2, 8}, 3), k, Tensor::Zeros({1, 1, 3, 0}), options);
  EXPECT_EQ(no_values.status().code(), absl::StatusCode::kInvalidArgument) << no_values.status();
}

TEST(AttentionPrecisionTest, Bf16FullyMaskedRowsAreExactZeros) {
  if (!Bf16Available()) GTEST_SKIP() << "no native bf16 on this CPU (" << DnnlIsaName() << ")";
  const Tensor q = RandomTensor({2, 2, 20, 8}, 21);
  const Tensor k = RandomTensor({2, 1, 7, 8}, 22);
  const Tensor v = RandomTensor({2, 1, 7, 3}, 23);
  Tensor bias = RandomTensor({20, 7}, 24);
  for (int64_t j = 0; j < 7; ++j) bias.values[static_cast<size_t>(15 * 7 + j)] = -kInf;  // Row 15.
  for (bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "not causal");
    AttentionOptions options;
    options.causal = causal;
    options.key_lengths = {0, 4};
    options.bias = &bias;
    options.return_weights = true;
    options.precision = ComputePrecision::kBF16;
    ASSERT_OK_AND_ASSIGN(AttentionResult r, Attend(q, k, v, options));
    const Reference ref = WithBf16Tolerance(ReferenceAttend(q, k, v, options), DimsOf(q, k, v));
    double err = 0, weight_err = 0;
    EXPECT_TRUE(MatchesReference(r, ref, DimsOf(q, k, v), true, &err, &weight_err));
    for (size_t n = 0; n < r.output.values.size() / 2; ++n) ASSERT_EQ(r.output.values[n], 0.0f) << n;
  }
}

TEST(AttentionPrecisionTest, Bf16LinearIsUnimplementedWithAReason) {
  const Tensor t = RandomTensor({1, 1, 4, 8}, 3);
  AttentionOptions options;
  options.kind = AttentionKind::kLinear;
  options.precision = ComputePrecision::kBF16;
  const absl::Status status = Attend(t, t, t, options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("compute_precision: BF16 is implemented for SOFTMAX"));
}

}  // namespace
}  // namespace primserve
