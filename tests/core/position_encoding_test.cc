// Tests for core/position_encoding.h: the sinusoidal table, 1-D RoPE and 2-D RoPE.
//
// Three levels (STYLE.md habit 8):
//   1. Goldens: every "check" value of MATH.md sections 1-3, hand-checkable.
//   2. Properties: relativity, norm preservation, inverse round trip, R_0 = I, the pairing
//      permutation, fractional and negative positions.
//   3. Differential: the fast (vectorised, threaded) kernels against a plain double-precision
//      reference written here straight from the MATH.md formulas, over odd shapes.
// Plus a table of bad inputs: status code and the field the message names.
#include "core/position_encoding.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/parallel.h"
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

// float32 machine epsilon, 2^-23: one ulp at 1.0.
constexpr double kEps = std::numeric_limits<float>::epsilon();

// Sinusoidal tolerance (absolute; every entry is in [-1, 1]): the core computes sin/cos in double
// and rounds once to float, an error of at most half an ulp (eps/2). One full ulp leaves room
// for a different libm.
constexpr double kSinusoidalTol = kEps;

// RoPE tolerance, relative to the norm of the row: each output is a*c - b*s where c and s are
// rounded from double to float (eps/2 relative each), then two float products and one float
// add/sub (eps/2 relative each). Summed: |error| <= 1.5 eps * |(a, b)| <= 1.5 eps * ||row||.
// 4 eps leaves margin for FMA contraction and libm differences, and is still a few ulps.
constexpr double kRopeRowTol = 4 * kEps;

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

// Values in [-2, 2], with rows scaled over five decades so the tolerance must be relative.
std::vector<float> RandomValues(int64_t n, uint32_t seed, int64_t row_width = 0) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    float scale = 1.0f;
    if (row_width > 0) scale = std::pow(10.0f, static_cast<float>((i / row_width) % 5) - 2.0f);
    v[static_cast<size_t>(i)] = dist(rng) * scale;
  }
  return v;
}

Tensor RandomTensor(Shape shape, uint32_t seed) {
  const int64_t n = NumElements(shape);
  const int64_t width = shape.empty() ? 0 : shape.back();
  return MakeTensor(std::move(shape), RandomValues(n, seed, width));
}

template <typename A, typename B>
double Dot(const A& a, const B& b, size_t offset_a = 0, size_t offset_b = 0, size_t n = 0) {
  if (n == 0) n = a.size() - offset_a;
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    sum += static_cast<double>(a[offset_a + i]) * static_cast<double>(b[offset_b + i]);
  }
  return sum;
}

template <typename A>
double Norm(const A& a, size_t offset = 0, size_t n = 0) {
  return std::sqrt(Dot(a, a, offset, offset, n));
}

// ---------------------------------------------------------------------------------------------
// The reference: MATH.md sections 2 and 3 as plain double loops, nothing shared with the core.

// 1-D RoPE of dimension `width` on x[0, width): pair i is (2i, 2i+1) interleaved or
// (i, i + width/2) half-split, rotated by pos * theta_i with theta_i = base^(-2i/width).
void ReferenceRotate(double* x, int64_t width, double pos, double base, RopePairing pairing) {
  for (int64_t i = 0; i < width / 2; ++i) {
    const double theta = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(width));
    const double angle = pos * theta;
    const double c = std::cos(angle);
    const double s = std::sin(angle);
    const int64_t a = pairing == RopePairing::kInterleaved ? 2 * i : i;
    const int64_t b = pairing == RopePairing::kInterleaved ? 2 * i + 1 : i + width / 2;
    const double xa = x[a];
    const double xb = x[b];
    x[a] = xa * c - xb * s;
    x[b] = xb * c + xa * s;
  }
}

// ApplyRope in double: [..., seq, dim], every leading index shares the positions of the seq axis.
std::vector<double> ReferenceRope(const Tensor& input, const RopeSpec& spec) {
  const int64_t seq = input.dim(input.rank() - 2);
  const int64_t dim = input.dim(input.rank() - 1);
  const int64_t r = spec.rotary_dim == 0 ? dim : spec.rotary_dim;
  std::vector<double> px(static_cast<size_t>(seq));
  std::vector<double> py(static_cast<size_t>(seq));
  for (int64_t s = 0; s < seq; ++s) {
    const size_t i = static_cast<size_t>(s);
    if (spec.kind == RopeKind::k1D) {
      px[i] = spec.positions.empty() ? static_cast<double>(s) : spec.positions[i];
    } else if (spec.grid_width > 0) {
      // MATH.md 3: token r*W + c sits at (r, c).
      px[i] = static_cast<double>(s / spec.grid_width);
      py[i] = static_cast<double>(s % spec.grid_width);
    } else {
      px[i] = spec.positions_x[i];
      py[i] = spec.positions_y[i];
    }
  }
  // The inverse is R_{-m} (MATH.md 2).
  const double sign = spec.inverse ? -1.0 : 1.0;
  std::vector<double> out(input.values.begin(), input.values.end());
  const int64_t rows = dim == 0 ? 0 : static_cast<int64_t>(out.size()) / dim;
  for (int64_t row = 0; row < rows; ++row) {
    const size_t s = static_cast<size_t>(row % seq);
    double* x = out.data() + row * dim;
    if (spec.kind == RopeKind::k1D) {
      ReferenceRotate(x, r, sign * px[s], spec.base, spec.pairing);
    } else {
      // Two 1-D RoPEs of dimension r/2: x on [0, r/2), y on [r/2, r).
      ReferenceRotate(x, r / 2, sign * px[s], spec.base, spec.pairing);
      ReferenceRotate(x + r / 2, r / 2, sign * py[s], spec.base, spec.pairing);
    }
  }
  return out;
}

// got ~ want row by row within rel_tol * ||want row||.
::testing::AssertionResult RowsNear(absl::Span<const float> got, absl::Span<const double> want,
                                    int64_t dim, double rel_tol) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  }
  int64_t bad = 0;
  std::string first;
  for (size_t row = 0; row * static_cast<size_t>(dim) < want.size(); ++row) {
    const size_t begin = row * static_cast<size_t>(dim);
    const double tol = rel_tol * Norm(want, begin, static_cast<size_t>(dim));
    for (int64_t j = 0; j < dim; ++j) {
      const double diff = std::abs(static_cast<double>(got[begin + j]) - want[begin + j]);
      if (!(diff <= tol)) {
        if (bad == 0) {
          first = absl::StrCat("row ", row, " feature ", j, ": got ", got[begin + j], " want ",
                               want[begin + j], " |diff| ", diff, " > tol ", tol);
        }
        ++bad;
      }
    }
  }
  if (bad > 0) return ::testing::AssertionFailure() << bad << " mismatches; first at " << first;
  return ::testing::AssertionSuccess();
}

std::vector<double> ToDouble(absl::Span<const float> v) { return std::vector<double>(v.begin(), v.end()); }

// Sets the compute threads for one scope and restores the previous value.
class ScopedComputeThreads {
 public:
  explicit ScopedComputeThreads(int threads) : previous_(ComputeThreads()) { SetComputeThreads(threads); }
  ~ScopedComputeThreads() { SetComputeThreads(previous_); }

 private:
  int previous_;
};

const char* PairingName(RopePairing p) {
  return p == RopePairing::kInterleaved ? "interleaved" : "half_split";
}

// =============================================================================================
// 1. Goldens: MATH.md section 1, sinusoidal.

TEST(SinusoidalGoldenTest, FirstRowsD4) {
  // d = 4: theta = [1, 0.01].
  SinusoidalOptions options;
  options.dim = 4;
  ASSERT_OK_AND_ASSIGN(Tensor table, SinusoidalTable(2, options));
  ASSERT_EQ(table.shape, (Shape{2, 4}));
  const std::vector<double> p0 = {0, 1, 0, 1};
  const std::vector<double> p1 = {0.8414709848, 0.5403023059, 0.0099998333, 0.9999500004};
  for (size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    // sin(0) = 0 and cos(0) = 1 are exact in float.
    EXPECT_EQ(table.values[i], p0[i]);
    EXPECT_NEAR(table.values[4 + i], p1[i], kSinusoidalTol);
  }
}

TEST(SinusoidalGoldenTest, DotDependsOnlyOnOffset) {
  // p_m . p_{m+3} = sum_i cos(3 theta_i) = cos(3) + cos(0.03) for d = 4, any m, either layout.
  constexpr double kExpected = 0.009557537148542;
  for (SinusoidalLayout layout : {SinusoidalLayout::kInterleaved, SinusoidalLayout::kSplit}) {
    for (double m : {0.0, 5.0, 100.0}) {
      SCOPED_TRACE(absl::StrCat("layout ", static_cast<int>(layout), " m ", m));
      SinusoidalOptions options;
      options.dim = 4;
      options.layout = layout;
      const std::vector<double> positions = {m, m + 3};
      ASSERT_OK_AND_ASSIGN(Tensor table, SinusoidalTable(positions, options));
      ASSERT_EQ(table.values.size(), 8u);
      // Each of the 8 entries is within eps/2 of exact and |entries| <= 1, so the 4-term dot
      // is within 4 * 2 * eps/2 = 4 eps.
      EXPECT_NEAR(Dot(table.values, table.values, 0, 4, 4), kExpected, 4 * kEps);
    }
  }
}

TEST(SinusoidalGoldenTest, SquaredNormIsHalfDim) {
  const std::vector<double> positions = {0, 1, 7, -3, 2.5, 1000, 123456.75};
  for (int64_t dim : {2, 4, 6, 130}) {
    for (SinusoidalLayout layout : {SinusoidalLayout::kInterleaved, SinusoidalLayout::kSplit}) {
      SCOPED_TRACE(absl::StrCat("dim ", dim, " layout ", static_cast<int>(layout)));
      SinusoidalOptions options;
      options.dim = dim;
      options.layout = layout;
      ASSERT_OK_AND_ASSIGN(Tensor table, SinusoidalTable(positions, options));
      for (size_t k = 0; k < positions.size(); ++k) {
        SCOPED_TRACE(positions[k]);
        // sin^2 + cos^2 = 1 per pair; each squared entry is within eps of exact: dim * eps.
        const double sq = Dot(table.values, table.values, k * dim, k * dim, static_cast<size_t>(dim));
        EXPECT_NEAR(sq, static_cast<double>(dim) / 2, static_cast<double>(dim) * kEps);
      }
    }
  }
}

TEST(SinusoidalGoldenTest, SplitIsPermutedInterleaved) {
  const std::vector<double> positions = {0, 1, 2.5, -7, 1e5};
  for (int64_t dim : {2, 4, 6, 130}) {
    SCOPED_TRACE(dim);
    SinusoidalOptions options;
    options.dim = dim;
    ASSERT_OK_AND_ASSIGN(Tensor interleaved, SinusoidalTable(positions, options));
    options.layout = SinusoidalLayout::kSplit;
    ASSERT_OK_AND_ASSIGN(Tensor split, SinusoidalTable(positions, options));
    ASSERT_EQ(split.shape, interleaved.shape);
    const int64_t half = dim / 2;
    for (size_t k = 0; k < positions.size(); ++k) {
      for (int64_t i = 0; i < half; ++i) {
        SCOPED_TRACE(absl::StrCat("k ", k, " i ", i));
        // The same sin/cos values, only moved: equal to the last few ulps.
        EXPECT_FLOAT_EQ(split.values[k * dim + i], interleaved.values[k * dim + 2 * i]);
        EXPECT_FLOAT_EQ(split.values[k * dim + half + i], interleaved.values[k * dim + 2 * i + 1]);
      }
    }
  }
}

// =============================================================================================
// 1. Goldens: MATH.md section 2, RoPE.

const std::vector<float> kQ = {1, 2, 3, 4};
const std::vector<float> kK = {0.5f, -1, 2, 0.25f};

TEST(RopeGoldenTest, RotateByOne) {
  struct Case {
    RopePairing pairing;
    std::vector<double> expected;
  };
  const std::vector<Case> cases = {
      {RopePairing::kInterleaved, {-1.1426396637, 1.9220755965, 2.9598506679, 4.0297995017}},
      {RopePairing::kHalfSplit, {-1.9841106486, 1.9599006675, 2.4623779024, 4.0197996683}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(PairingName(c.pairing));
    RopeSpec spec;
    spec.pairing = c.pairing;
    spec.positions = {1};
    ASSERT_OK_AND_ASSIGN(Tensor out, ApplyRope(MakeTensor({1, 4}, kQ), spec));
    ASSERT_EQ(out.shape, (Shape{1, 4}));
    EXPECT_TRUE(RowsNear(out.values, c.expected, 4, kRopeRowTol));
  }
}

TEST(RopeGoldenTest, RelativeDotProduct) {
  constexpr double kExpected = 9.586405488664786;
  for (double m : {3.0, 10.0, 100.0}) {
    SCOPED_TRACE(m);
    RopeSpec spec;  // Interleaved.
    spec.positions = {m, m + 2};
    std::vector<float> qk = kQ;
    qk.insert(qk.end(), kK.begin(), kK.end());
    ASSERT_OK_AND_ASSIGN(Tensor out, ApplyRope(MakeTensor({2, 4}, qk), spec));
    ASSERT_EQ(out.values.size(), 8u);
    // Each rotated vector is within 1.5 eps of its norm (kRopeRowTol reasoning), so the dot is
    // within ~3 eps |q||k|; 8 eps leaves margin.
    EXPECT_NEAR(Dot(out.values, out.values, 0, 4, 4), kExpected, 8 * kEps * Norm(kQ) * Norm(kK));
  }
}

TEST(RopeGoldenTest, NormOfR7q) {
  for (RopePairing pairing : {RopePairing::kInterleaved, RopePairing::kHalfSplit}) {
    SCOPED_TRACE(PairingName(pairing));
    RopeSpec spec;
    spec.pairing = pairing;
    spec.positions = {7};
    ASSERT_OK_AND_ASSIGN(Tensor out, ApplyRope(MakeTensor({1, 4}, kQ), spec));
    EXPECT_NEAR(Norm(out.values), 5.4772255751, kRopeRowTol * 5.4772255751);
  }
}

// =============================================================================================
// 1. Goldens: MATH.md section 3, 2-D RoPE (d = 8).

const std::vector<float> kQ8 = {1, 2, 3, 4, -0.5f, 1.5f, 2.5f, -3};
const std::vector<float> kK8 = {0.5f, -1, 2, 0.25f, 1, -2, 0.75f, 3};

RopeSpec Spec2D(RopePairing pairing, std::vector<double> xs, std::vector<double> ys) {
  RopeSpec spec;
  spec.kind = RopeKind::k2D;
  spec.pairing = pairing;
  spec.positions_x = std::move(xs);
  spec.positions_y = std::move(ys);
  return spec;
}

TEST(Rope2DGoldenTest, DotDependsOnlyOnOffsets) {
  std::vector<float> qk = kQ8;
  qk.insert(qk.end(), kK8.begin(), kK8.end());
  const Tensor input = MakeTensor({2, 8}, qk);
  for (RopePairing pairing : {RopePairing::kInterleaved, RopePairing::kHalfSplit}) {
    SCOPED_TRACE(PairingName(pairing));
    // q^T R_{3,5} k from the reference: the value both dots must equal.
    const std::vector<double> rk =
        ReferenceRope(MakeTensor({1, 8}, kK8), Spec2D(pairing, {3}, {5}));
    const double expected = Dot(kQ8, rk);
    const double tol = 8 * kEps * Norm(kQ8) * Norm(kK8);  // As RelativeDotProduct.

    ASSERT_OK_AND_ASSIGN(Tensor a, ApplyRope(input, Spec2D(pairing, {1, 4}, {2, 7})));
    ASSERT_OK_AND_ASSIGN(Tensor b, ApplyRope(input, Spec2D(pairing, {11, 14}, {-3, 2})));
    const double dot_a = Dot(a.values, a.values, 0, 8, 8);
    const double dot_b = Dot(b.values, b.values, 0, 8, 8);
    EXPECT_NEAR(dot_a, dot_b, tol);
    EXPECT_NEAR(dot_a, expected, tol);
    EXPECT_NEAR(dot_b, expected, tol);
  }
}

TEST(Rope2DGoldenTest, ZeroYIsOneDRopeOnFirstHalf) {
  const Tensor q = MakeTensor({1, 8}, kQ8);
  const Tensor q_first_half = MakeTensor({1, 4}, std::vector<float>(kQ8.begin(), kQ8.begin() + 4));
  for (RopePairing pairing : {RopePairing::kInterleaved, RopePairing::kHalfSplit}) {
    for (double x : {1.0, 5.0, -2.5, 100.0}) {
      SCOPED_TRACE(absl::StrCat(PairingName(pairing), " x ", x));
      ASSERT_OK_AND_ASSIGN(Tensor two_d, ApplyRope(q, Spec2D(pairing, {x}, {0})));
      RopeSpec one_d;
      one_d.pairing = pairing;
      one_d.positions = {x};
      ASSERT_OK_AND_ASSIGN(Tensor first, ApplyRope(q_first_half, one_d));
      ASSERT_EQ(two_d.values.size(), 8u);
      EXPECT_TRUE(RowsNear(absl::MakeConstSpan(two_d.values).subspan(0, 4), ToDouble(first.values), 4,
                           kRopeRowTol));
      // Angle 0 has cos = 1, sin = 0 exactly: the second half is the input, bit for bit.
      for (size_t j = 4; j < 8; ++j) EXPECT_EQ(two_d.values[j], kQ8[j]) << "feature " << j;
    }
  }
}

TEST(Rope2DGoldenTest, NotTheDegenerateSumRotation) {
  // A rotation by (x + y) theta would make R_{x,y} = R_{y,x}; 2-D RoPE must tell them apart.
  const Tensor q = MakeTensor({1, 8}, kQ8);
  for (RopePairing pairing : {RopePairing::kInterleaved, RopePairing::kHalfSplit}) {
    for (auto [x, y] : std::vector<std::pair<double, double>>{{1, 2}, {3, 7}, {0, 5}}) {
      SCOPED_TRACE(absl::StrCat(PairingName(pairing), " (", x, ", ", y, ")"));
      ASSERT_OK_AND_ASSIGN(Tensor xy, ApplyRope(q, Spec2D(pairing, {x}, {y})));
      ASSERT_OK_AND_ASSIGN(Tensor yx, ApplyRope(q, Spec2D(pairing, {y}, {x})));
      double max_diff = 0;
      for (size_t j = 0; j < 8; ++j) max_diff = std::max(max_diff, std::abs(double{xy.values[j]} - yx.values[j]));
      EXPECT_GT(max_diff, 0.1);
      // And each is the reference 2-D rotation.
      EXPECT_TRUE(RowsNear(xy.values, ReferenceRope(q, Spec2D(pairing, {x}, {y})), 8, kRopeRowTol));
    }
  }
}

TEST(Rope2DGoldenTest, GridEqualsExplicitPositions) {
  for (RopePairing pairing : {RopePairing::kInterleaved, RopePairing::kHalfSplit}) {
    for (auto [h, w] : std::vector<std::pair<int64_t, int64_t>>{{3, 5}, {5, 3}, {1, 7}, {7, 1}, {16, 16}}) {
      SCOPED_TRACE(absl::StrCat(PairingName(pairing), " grid ", h, "x", w));
      const int64_t seq = h * w;
      const Tensor input = RandomTensor({2, seq, 8}, 7);
      RopeSpec grid;
      grid.kind = RopeKind::k2D;
      grid.pairing = pairing;
      grid.grid_height = h;
      grid.grid_width = w;
      std::vector<double> xs, ys;
      for (int64_t t = 0; t < seq; ++t) {
        xs.push_back(static_cast<double>(t / w));
        ys.push_back(static_cast<double>(t % w));
      }
      ASSERT_OK_AND_ASSIGN(Tensor from_grid, ApplyRope(input, grid));
      ASSERT_OK_AND_ASSIGN(Tensor from_xy, ApplyRope(input, Spec2D(pairing, xs, ys)));
      // The same positions through the same arithmetic: identical.
      EXPECT_EQ(from_grid.values, from_xy.values);
      // And (row, column), not (column, row): checked against the reference on explicit xy.
      EXPECT_TRUE(RowsNear(from_grid.values, ReferenceRope(input, Spec2D(pairing, xs, ys)), 8, kRopeRowTol));
    }
  }
}

// =============================================================================================
// 2. Properties.

// Dot of row 0 and row 1 of ApplyRope([q; k]) at positions (m, n) for 1-D, or (x1, y1), (x2, y2).
double RotatedDot(const std::vector<float>& q, const std::vector<float>& k, RopeSpec spec) {
  std::vector<float> qk = q;
  qk.insert(qk.end(), k.begin(), k.end());
  absl::StatusOr<Tensor> out = ApplyRope(MakeTensor({2, static_cast<int64_t>(q.size())}, qk), spec);
  EXPECT_TRUE(out.ok()) << out.status();
  if (!out.ok()) return std::numeric_limits<double>::quiet_NaN();
  return Dot(out->values, out->values, 0, q.size(), q.size());
}

TEST(RopePropertyTest, Relativity1D) {
  const int64_t dim = 64;
  const std::vector<float> q = RandomValues(dim, 1);
  const std::vector<float> k = RandomValues(dim, 2);
  const double tol = 8 * kEps * Norm(q) * Norm(k);  // As RopeGoldenTest.RelativeDotProduct.
  for (RopePairing pairing : {RopePairing::kInterleaved, RopePairing::kHalfSplit}) {
    for (int64_t rotary_dim : {0, 32}) {
      for (double delta : {5.0, -3.0, 0.5, 250.0}) {
        RopeSpec spec;
        spec.pairing = pairing;
        spec.rotary_dim = rotary_dim;
        // q^T R_delta k, with R_0 q = q.
        const std::vector<double> r_k = ReferenceRope(MakeTensor({1, dim}, k), [&] {
          RopeSpec s = spec;
          s.positions = {delta};
          return s;
        }());
        const double expected = Dot(q, r_k);
        for (double m : {0.0, 3.0, 100.0, 1000.0, -7.0, 2.25, 1e5}) {
          SCOPED_TRACE(absl::StrCat(PairingName(pairing), " rotary_dim ", rotary_dim, " delta ", delta,
                                    " m ", m));
          spec.positions = {m, m + delta};
          EXPECT_NEAR(RotatedDot(q, k, spec), expected, tol);
        }
      }
    }
  }
}

TEST(RopePropertyTest, Relativity2D) {
  const int64_t dim = 16;
  const std::vector<float> q = RandomValues(dim, 3);
  const std::vector<float> k = RandomValues(dim, 4);
  const double tol = 8 * kEps * Norm(q) * Norm(k);
  for (RopePairing pairing : {RopePairing::kInterleaved, RopePairing::kHalfSplit}) {
    for (auto [dx, dy] : std::vector<std::pair<double, double>>{{3, 5}, {-2, 0}, {0, 4}, {1.5, -6.25}}) {
      const double expected =
          Dot(q, ReferenceRope(MakeTensor({1, dim}, k), Spec2D(pairing, {dx}, {dy})));
      for (auto [x, y] : std::vector<std::pair<double, double>>{{0, 0}, {1, 2}, {11, -3}, {-4.5, 0.25}, {300, 7}}) {
        SCOPED_TRACE(absl::StrCat(PairingName(pairing), " d=(", dx, ",", dy, ") at (", x, ",", y, ")"));
        EXPECT_NEAR(RotatedDot(q, k, Spec2D(pairing, {x, x + dx}, {y, y + dy})), expected, tol);
      }
    }
  }
}

TEST(RopePropertyTest, TransposeIsNegativePosition) {
  // <R_{-m} q, k> = <q, R_m k>: R_m^T = R_{-m}, and so the inverse flag is R_{-m} too.
  const int64_t dim = 12;
  const std::vector<float> q = RandomValues(dim, 5);
  const std::vector<float> k = RandomValues(dim, 6);
  const double tol = 8 * kEps * Norm(q) * Norm(k);
  for (RopePairing pairing : {RopePairing::kInterleaved, RopePairing::kHalfSplit}) {
    for (double m : {1.0, 7.5, -3.0, 4096.0}) {
      SCOPED_TRACE(absl::StrCat(PairingName(pairing), " m ", m));
      RopeSpec neg;
      neg.pairing = pairing;
      neg.positions = {-m};
      RopeSpec pos = neg;
      pos.positions = {m};
      RopeSpec inv = pos;
      inv.inverse = true;
      ASSERT_OK_AND_ASSIGN(Tensor rq_neg, ApplyRope(MakeTensor({1, dim}, q), neg));
      ASSERT_OK_AND_ASSIGN(Tensor rq_inv, ApplyRope(MakeTensor({1, dim}, q), inv));
      ASSERT_OK_AND_ASSIGN(Tensor rk, ApplyRope(MakeTensor({1, dim}, k), pos));
      EXPECT_NEAR(Dot(rq_neg.values, k), Dot(q, rk.values), tol);
      EXPECT_TRUE(RowsNear(rq_inv.values, ToDouble(rq_neg.values), dim, kRopeRowTol));
    }
  }
}

// Specs covering both kinds, both pairings and partial rotary, for the property tests.
std::vector<std::pair<std::string, RopeSpec>> PropertySpecs(int64_t seq) {
  std::vector<std::pair<std::string, RopeSpec>> specs;
  std::vector<double> pos, xs, ys;
  for (int64_t s = 0; s < seq; ++s) {
    pos.push_back(s % 2 == 0 ? -0.75 * static_cast<double>(s) : 1000.5 + static_cast<double>(s));
    xs.push_back(0.5 * static_cast<double>(s) - 3);
    ys.push_back(static_cast<double>(seq - s) * 1.25);
  }
  for (RopePairing pairing : {RopePairing::kInterleaved, RopePairing::kHalfSplit}) {
    for (int64_t rotary_dim : {0, 8}) {
      const std::string suffix = absl::StrCat(" ", PairingName(pairing), " rotary_dim ", rotary_dim);
      RopeSpec one;
      one.pairing = pairing;
      one.rotary_dim = rotary_dim;
      specs.emplace_back("1-D default" + suffix, one);
      one.positions = pos;
      specs.emplace_back("1-D fractional/negative" + suffix, one);
      RopeSpec two = Spec2D(pairing, xs, ys);
      two.rotary_dim = rotary_dim;
      specs.emplace_back("2-D xy" + suffix, two);
    }
  }
  return specs;
}

TEST(RopePropertyTest, NormPreserved) {
  const Tensor input = RandomTensor({3, 9, 20}, 11);
  for (const auto& [name, spec] : PropertySpecs(9)) {
    SCOPED_TRACE(name);
    ASSERT_OK_AND_ASSIGN(Tensor out, ApplyRope(input, spec));
    for (size_t row = 0; row < 27; ++row) {
      const double norm = Norm(input.values, row * 20, 20);
      // Each pair is off by <= 1.5 eps of its norm (kRopeRowTol), so the row norm is too.
      EXPECT_NEAR(Norm(out.values, row * 20, 20), norm, kRopeRowTol * norm) << "row " << row;
    }
  }
}

TEST(RopePropertyTest, InverseRoundTrip) {
  const Tensor input = RandomTensor({2, 9, 20}, 12);
  for (const auto& [name, spec] : PropertySpecs(9)) {
    SCOPED_TRACE(name);
    ASSERT_OK_AND_ASSIGN(Tensor rotated, ApplyRope(input, spec));
    RopeSpec inverse = spec;
    inverse.inverse = true;
    ASSERT_OK_AND_ASSIGN(Tensor back, ApplyRope(rotated, inverse));
    // Two rotations, each within kRopeRowTol of the row norm.
    EXPECT_TRUE(RowsNear(back.values, ToDouble(input.values), 20, 2 * kRopeRowTol));
    // The rotation itself moved something (a no-op would pass the round trip too).
    EXPECT_FALSE(RowsNear(rotated.values, ToDouble(input.values), 20, 1e-3));
  }
}

TEST(RopePropertyTest, PositionZeroIsIdentityExactly) {
  const Tensor input = RandomTensor({2, 5, 12}, 13);
  for (RopePairing pairing : {RopePairing::kInterleaved, RopePairing::kHalfSplit}) {
    for (bool inverse : {false, true}) {
      SCOPED_TRACE(absl::StrCat(PairingName(pairing), " inverse ", inverse));
      RopeSpec one;
      one.pairing = pairing;
      one.inverse = inverse;
      one.positions = std::vector<double>(5, 0.0);
      RopeSpec two = Spec2D(pairing, std::vector<double>(5, 0.0), std::vector<double>(5, 0.0));
      two.inverse = inverse;
      // cos 0 = 1 and sin 0 = 0 are exact, so R_0 returns the input bit for bit.
      for (const RopeSpec& spec : {one, two}) {
        ASSERT_OK_AND_ASSIGN(Tensor out, ApplyRope(input, spec));
        EXPECT_EQ(out.values, input.values);
      }
      // Default 1-D positions start at 0: a single-row sequence is unchanged.
      RopeSpec first_row;
      first_row.pairing = pairing;
      const Tensor row = RandomTensor({3, 1, 12}, 14);
      ASSERT_OK_AND_ASSIGN(Tensor out, ApplyRope(row, first_row));
      EXPECT_EQ(out.values, row.values);
    }
  }
}

// Index in the interleaved layout of feature j of the half-split layout: within each of
// `segments` blocks of width w = rotary_dim / segments, pair i = (i, i + w/2) maps to (2i, 2i+1).
// Features from rotary_dim on stay where they are.
int64_t InterleavedIndex(int64_t j, int64_t rotary_dim, int64_t segments) {
  if (j >= rotary_dim) return j;
  const int64_t w = rotary_dim / segments;
  const int64_t seg = j / w;
  const int64_t i = j % w;
  const int64_t half = w / 2;
  return seg * w + (i < half ? 2 * i : 2 * (i - half) + 1);
}

TEST(RopePropertyTest, HalfSplitIsPermutedInterleaved) {
  const int64_t dim = 20;
  const Tensor input = RandomTensor({2, 9, dim}, 15);
  for (const auto& [name, half_spec] : PropertySpecs(9)) {
    if (half_spec.pairing != RopePairing::kHalfSplit) continue;
    SCOPED_TRACE(name);
    const int64_t rotary_dim = half_spec.rotary_dim == 0 ? dim : half_spec.rotary_dim;
    const int64_t segments = half_spec.kind == RopeKind::k2D ? 2 : 1;
    Tensor permuted = input;
    for (size_t row = 0; row * dim < input.values.size(); ++row) {
      for (int64_t j = 0; j < dim; ++j) {
        permuted.values[row * dim + InterleavedIndex(j, rotary_dim, segments)] = input.values[row * dim + j];
      }
    }
    RopeSpec inter_spec = half_spec;
    inter_spec.pairing = RopePairing::kInterleaved;
    ASSERT_OK_AND_ASSIGN(Tensor inter_out, ApplyRope(permuted, inter_spec));
    ASSERT_OK_AND_ASSIGN(Tensor half_out, ApplyRope(input, half_spec));
    std::vector<double> expected(input.values.size());
    for (size_t row = 0; row * dim < input.values.size(); ++row) {
      for (int64_t j = 0; j < dim; ++j) {
        expected[row * dim + j] = inter_out.values[row * dim + InterleavedIndex(j, rotary_dim, segments)];
      }
    }
    // The same rotations on moved features; kRopeRowTol covers contraction differences.
    EXPECT_TRUE(RowsNear(half_out.values, expected, dim, kRopeRowTol));
  }
}

TEST(RopePropertyTest, FullRotaryDimEqualsZero) {
  const Tensor input = RandomTensor({4, 12}, 16);
  for (RopeKind kind : {RopeKind::k1D, RopeKind::k2D}) {
    SCOPED_TRACE(static_cast<int>(kind));
    RopeSpec spec;
    spec.kind = kind;
    if (kind == RopeKind::k2D) {
      spec.grid_height = 2;
      spec.grid_width = 2;
    }
    ASSERT_OK_AND_ASSIGN(Tensor zero, ApplyRope(input, spec));
    spec.rotary_dim = 12;
    ASSERT_OK_AND_ASSIGN(Tensor full, ApplyRope(input, spec));
    EXPECT_EQ(zero.values, full.values);
  }
}

// =============================================================================================
// 3. Differential: fast kernels vs ReferenceRope on odd shapes.

struct RopeCase {
  std::string name;
  Shape shape;
  RopeSpec spec;
};

// Real positions of every kind: negative fractional, small fractional, large, integer.
std::vector<double> OddPositions(int64_t seq, int variant) {
  std::vector<double> p(static_cast<size_t>(seq));
  for (int64_t s = 0; s < seq; ++s) {
    const double sd = static_cast<double>(s);
    switch ((s + variant) % 4) {
      case 0: p[s] = -3.5 - sd; break;
      case 1: p[s] = 0.25 * sd; break;
      case 2: p[s] = 1e5 + 0.5 * sd; break;
      default: p[s] = sd; break;
    }
  }
  return p;
}

// Leading axes for ranks 2..5; they all share the positions of the seq axis.
Shape ShapeOfRank(int rank, int64_t seq, int64_t dim) {
  switch (rank) {
    case 2: return {seq, dim};
    case 3: return {2, seq, dim};
    case 4: return {3, 2, seq, dim};
    default: return {2, 1, 2, seq, dim};
  }
}

std::vector<RopeCase> DifferentialCases() {
  std::vector<RopeCase> cases;
  int index = 0;
  for (RopeKind kind : {RopeKind::k1D, RopeKind::k2D}) {
    const bool two_d = kind == RopeKind::k2D;
    const std::vector<int64_t> dims = two_d ? std::vector<int64_t>{4, 12, 132} : std::vector<int64_t>{2, 6, 130};
    for (int64_t seq : {1, 13, 257}) {
      for (int64_t dim : dims) {
        // Partial rotary where the dim allows one: the tail must pass through unchanged.
        std::vector<int64_t> rotary_dims = {0};
        if (dim == 6) rotary_dims.push_back(4);
        if (dim == 130) rotary_dims.push_back(64);
        if (dim == 12) rotary_dims.push_back(8);
        if (dim == 132) rotary_dims.push_back(64);
        for (int64_t rotary_dim : rotary_dims) {
          for (RopePairing pairing : {RopePairing::kInterleaved, RopePairing::kHalfSplit}) {
            for (bool inverse : {false, true}) {
              for (int mode = 0; mode < 2; ++mode) {
                RopeCase c;
                const int rank = 2 + index % 4;
                c.shape = ShapeOfRank(rank, seq, dim);
                c.spec.kind = kind;
                c.spec.pairing = pairing;
                c.spec.rotary_dim = rotary_dim;
                c.spec.inverse = inverse;
                if (index % 3 == 1) c.spec.base = 500.0;
                std::string positions;
                if (!two_d && mode == 0) {
                  positions = "default";
                } else if (!two_d) {
                  positions = "odd";
                  c.spec.positions = OddPositions(seq, 0);
                } else if (mode == 0) {
                  positions = "grid";
                  // seq is 1 or prime: a 1 x seq or seq x 1 grid, alternating.
                  c.spec.grid_height = index % 2 == 0 ? seq : 1;
                  c.spec.grid_width = seq / c.spec.grid_height;
                } else {
                  positions = "odd xy";
                  c.spec.positions_x = OddPositions(seq, 0);
                  c.spec.positions_y = OddPositions(seq, 1);
                }
                c.name = absl::StrCat(two_d ? "2-D" : "1-D", " ", ShapeToString(c.shape), " rotary_dim ",
                                      rotary_dim, " ", PairingName(pairing), inverse ? " inverse" : "",
                                      " positions ", positions, " base ", c.spec.base);
                cases.push_back(std::move(c));
                ++index;
              }
            }
          }
        }
      }
    }
  }
  // A proper 2-D grid (neither side 1) with partial rotary, and bases far from the default.
  {
    RopeCase c;
    c.name = "2-D grid 5x3 rotary 8 of 12, base 1e6";
    c.shape = {2, 15, 12};
    c.spec.kind = RopeKind::k2D;
    c.spec.pairing = RopePairing::kHalfSplit;
    c.spec.grid_height = 5;
    c.spec.grid_width = 3;
    c.spec.rotary_dim = 8;
    c.spec.base = 1e6;
    cases.push_back(c);
    c.name = "2-D grid 3x5 interleaved base 2.5";
    c.spec.pairing = RopePairing::kInterleaved;
    c.spec.grid_height = 3;
    c.spec.grid_width = 5;
    c.spec.rotary_dim = 0;
    c.spec.base = 2.5;
    cases.push_back(c);
  }
  return cases;
}

TEST(RopeDifferentialTest, ApplyRopeMatchesReference) {
  uint32_t seed = 100;
  for (const RopeCase& c : DifferentialCases()) {
    SCOPED_TRACE(c.name);
    const Tensor input = RandomTensor(c.shape, seed++);
    ASSERT_OK_AND_ASSIGN(Tensor out, ApplyRope(input, c.spec));
    EXPECT_EQ(out.shape, c.shape);
    const std::vector<double> expected = ReferenceRope(input, c.spec);
    EXPECT_TRUE(RowsNear(out.values, expected, c.shape.back(), kRopeRowTol));
    // Partial rotary: the tail is the input, bit for bit.
    const int64_t dim = c.shape.back();
    const int64_t rotary_dim = c.spec.rotary_dim == 0 ? dim : c.spec.rotary_dim;
    for (size_t row = 0; row * dim < input.values.size(); ++row) {
      for (int64_t j = rotary_dim; j < dim; ++j) {
        ASSERT_EQ(out.values[row * dim + j], input.values[row * dim + j]) << "row " << row << " feature " << j;
      }
    }
  }
}

std::vector<RopeCase> LargeCases() {
  std::vector<RopeCase> cases;
  for (RopePairing pairing : {RopePairing::kInterleaved, RopePairing::kHalfSplit}) {
    RopeCase one;
    one.shape = {4, 3, 257, 130};
    one.spec.pairing = pairing;
    one.name = absl::StrCat("1-D [4, 3, 257, 130] ", PairingName(pairing));
    cases.push_back(one);
    one.spec.rotary_dim = 64;
    one.spec.inverse = true;
    one.spec.positions = OddPositions(257, 2);
    one.name += " rotary_dim 64 inverse odd positions";
    cases.push_back(one);

    RopeCase two;
    two.shape = {4, 3, 257, 132};
    two.spec.kind = RopeKind::k2D;
    two.spec.pairing = pairing;
    two.spec.positions_x = OddPositions(257, 0);
    two.spec.positions_y = OddPositions(257, 3);
    two.name = absl::StrCat("2-D [4, 3, 257, 132] ", PairingName(pairing));
    cases.push_back(two);
    two.spec.rotary_dim = 64;
    two.spec.inverse = true;
    two.name += " rotary_dim 64 inverse";
    cases.push_back(two);
  }
  return cases;
}

TEST(RopeDifferentialTest, LargeInputsMultiThreaded) {
  // Three threads (an uneven split of the rows) even on a one- or two-core machine.
  ScopedComputeThreads threads(3);
  uint32_t seed = 500;
  for (const RopeCase& c : LargeCases()) {
    SCOPED_TRACE(c.name);
    const Tensor input = RandomTensor(c.shape, seed++);
    ASSERT_OK_AND_ASSIGN(Tensor out, ApplyRope(input, c.spec));
    EXPECT_TRUE(RowsNear(out.values, ReferenceRope(input, c.spec), c.shape.back(), kRopeRowTol));
    // Row-wise kernels: the thread count must not change a single bit.
    {
      ScopedComputeThreads single(1);
      ASSERT_OK_AND_ASSIGN(Tensor serial, ApplyRope(input, c.spec));
      EXPECT_EQ(serial.values, out.values);
    }
  }
}

TEST(RopeDifferentialTest, TableApplyMatchesReference) {
  ScopedComputeThreads threads(3);
  std::vector<RopeCase> cases = LargeCases();
  // Small ones too, which stay on the calling thread.
  cases.push_back({"1-D [3, 13, 6] half_split rotary 4", {3, 13, 6}, {}});
  cases.back().spec.pairing = RopePairing::kHalfSplit;
  cases.back().spec.rotary_dim = 4;
  cases.push_back({"2-D [13, 12] interleaved rotary 8", {13, 12}, Spec2D(RopePairing::kInterleaved,
                                                                      OddPositions(13, 0), OddPositions(13, 1))});
  cases.back().spec.rotary_dim = 8;
  uint32_t seed = 700;
  for (const RopeCase& c : cases) {
    SCOPED_TRACE(c.name);
    const Tensor input = RandomTensor(c.shape, seed++);
    const int64_t seq = c.shape[c.shape.size() - 2];
    const int64_t dim = c.shape.back();
    ASSERT_OK_AND_ASSIGN(RopeTable table, RopeTable::Create(c.spec, seq, dim));
    const int64_t num_slices = NumElements(c.shape) / (seq * dim);
    const std::vector<double> expected = ReferenceRope(input, c.spec);
    {
      SCOPED_TRACE("in place");
      std::vector<float> buffer = input.values;
      table.Apply(buffer.data(), buffer.data(), num_slices);
      EXPECT_TRUE(RowsNear(buffer, expected, dim, kRopeRowTol));
    }
    {
      // A poisoned output buffer: every element, the pass-through tail included, must be written.
      SCOPED_TRACE("out of place");
      std::vector<float> output(input.values.size(), std::numeric_limits<float>::quiet_NaN());
      table.Apply(input.values.data(), output.data(), num_slices);
      EXPECT_TRUE(RowsNear(output, expected, dim, kRopeRowTol));
    }
  }
}

// RopeTable::Shared: default-position tables are computed once per spec and shape and shared;
// every variant of the spec's scalars is its own table; explicit positions are never shared.
TEST(RopeSharedTableTest, DefaultPositionsAreSharedPerSpecAndShape) {
  RopeSpec spec;
  spec.base = 777.0;  // A base no other test uses, so the first call below is a miss.
  // [129, 16]: 129 x 8 cos/sin pairs, above RopeTable::kMinSharedFloats.
  static_assert(129 * 8 * 2 >= RopeTable::kMinSharedFloats);
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RopeTable> first, RopeTable::Shared(spec, 129, 16));
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RopeTable> again, RopeTable::Shared(spec, 129, 16));
  EXPECT_EQ(first.get(), again.get());

  std::vector<std::pair<std::string, RopeSpec>> variants;
  variants.push_back({"half split", spec});
  variants.back().second.pairing = RopePairing::kHalfSplit;
  variants.push_back({"inverse", spec});
  variants.back().second.inverse = true;
  variants.push_back({"rotary_dim 8", spec});
  variants.back().second.rotary_dim = 8;
  variants.push_back({"base 777.5", spec});
  variants.back().second.base = 777.5;
  variants.push_back({"2-D grid 129 x 1", spec});
  variants.back().second.kind = RopeKind::k2D;
  variants.back().second.grid_height = 129;
  variants.back().second.grid_width = 1;
  const Tensor input = RandomTensor({2, 129, 16}, 811);
  for (const auto& [name, variant] : variants) {
    SCOPED_TRACE(name);
    ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RopeTable> shared, RopeTable::Shared(variant, 129, 16));
    EXPECT_NE(shared.get(), first.get());
    std::vector<float> rotated(input.values.size());
    shared->Apply(input.values.data(), rotated.data(), 2);
    EXPECT_TRUE(RowsNear(rotated, ReferenceRope(input, variant), 16, kRopeRowTol));
    ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RopeTable> hit, RopeTable::Shared(variant, 129, 16));
    EXPECT_EQ(hit.get(), shared.get());
  }
  // Another shape of the same spec.
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RopeTable> longer, RopeTable::Shared(spec, 130, 16));
  EXPECT_NE(longer.get(), first.get());
  EXPECT_EQ(longer->seq_len(), 130);
}

TEST(RopeSharedTableTest, ExplicitPositionsAreNeverShared) {
  RopeSpec spec;
  spec.positions = OddPositions(9, 0);
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RopeTable> a, RopeTable::Shared(spec, 9, 8));
  spec.positions[3] += 1.0;  // Same scalars and shape, other positions: must not find `a`.
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RopeTable> b, RopeTable::Shared(spec, 9, 8));
  EXPECT_NE(a.get(), b.get());
  const Tensor input = RandomTensor({9, 8}, 812);
  std::vector<float> rotated(input.values.size());
  b->Apply(input.values.data(), rotated.data(), 1);
  EXPECT_TRUE(RowsNear(rotated, ReferenceRope(input, spec), 8, kRopeRowTol));
}

TEST(RopeSharedTableTest, ErrorsAreCreatesAndAreNotCached) {
  RopeSpec spec;
  spec.rotary_dim = 5;
  for (int attempt = 0; attempt < 2; ++attempt) {
    const absl::StatusOr<std::shared_ptr<const RopeTable>> shared = RopeTable::Shared(spec, 4, 8);
    const absl::StatusOr<RopeTable> created = RopeTable::Create(spec, 4, 8);
    ASSERT_FALSE(shared.ok());
    EXPECT_EQ(shared.status(), created.status());
  }
}

TEST(RopeSharedTableTest, SmallTablesAreRebuiltNotKept) {
  // A [37, 12] table has 37 x 6 pairs: cheaper to rebuild than to keep (and a stream of tiny
  // distinct specs from clients must not fill the cache).
  RopeSpec spec;
  spec.base = 778.0;
  static_assert(37 * 6 * 2 < RopeTable::kMinSharedFloats);
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RopeTable> a, RopeTable::Shared(spec, 37, 12));
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RopeTable> b, RopeTable::Shared(spec, 37, 12));
  EXPECT_NE(a.get(), b.get());
  EXPECT_EQ(b->seq_len(), 37);
}

TEST(RopeSharedTableTest, TheCacheIsBoundedInBytesLeastRecentlyUsedOut) {
  // Tables of 60000 x 64 hold 2 x 60000 x 32 floats = 14.6 MiB: four fit in the 64 MiB budget,
  // a fifth evicts the least recently used one. One of 4x that is never kept.
  RopeSpec spec;
  constexpr int64_t kSeq = 60000, kDim = 64;
  constexpr int64_t kTableBytes = 2 * kSeq * (kDim / 2) * 4;
  static_assert(kTableBytes + 512 <= RopeTable::kSharedCacheBytes / 4);
  static_assert(5 * kTableBytes > RopeTable::kSharedCacheBytes);
  std::vector<std::shared_ptr<const RopeTable>> tables;
  for (int i = 0; i < 5; ++i) {
    spec.base = 5000.0 + i;
    ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RopeTable> table, RopeTable::Shared(spec, kSeq, kDim));
    tables.push_back(table);
  }
  spec.base = 5004.0;  // The most recent one is still there.
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RopeTable> recent, RopeTable::Shared(spec, kSeq, kDim));
  EXPECT_EQ(recent.get(), tables[4].get());
  spec.base = 5000.0;  // The least recent one was evicted; the caller's copy stays valid.
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RopeTable> evicted, RopeTable::Shared(spec, kSeq, kDim));
  EXPECT_NE(evicted.get(), tables[0].get());
  EXPECT_EQ(tables[0]->seq_len(), kSeq);
  spec.base = 5010.0;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RopeTable> huge, RopeTable::Shared(spec, 4 * kSeq, kDim));
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RopeTable> huge_again, RopeTable::Shared(spec, 4 * kSeq, kDim));
  EXPECT_NE(huge.get(), huge_again.get());
}

TEST(RopeSharedTableTest, TheCacheIsBoundedInEntries) {
  // 257 distinct small-but-kept tables ([64, 32]: 2048 floats each, 2.1 MiB in all): the entry
  // cap of 256, not the byte budget, evicts the least recently used one.
  RopeSpec spec;
  std::vector<std::shared_ptr<const RopeTable>> tables;
  for (int i = 0; i < 257; ++i) {
    spec.base = 9000.0 + i;
    ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RopeTable> table, RopeTable::Shared(spec, 64, 32));
    tables.push_back(table);
  }
  spec.base = 9256.0;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RopeTable> last, RopeTable::Shared(spec, 64, 32));
  EXPECT_EQ(last.get(), tables[256].get());
  spec.base = 9000.0;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RopeTable> first, RopeTable::Shared(spec, 64, 32));
  EXPECT_NE(first.get(), tables[0].get());
}

TEST(RopeDifferentialTest, ApplyRowMatchesReference) {
  const int64_t seq = 13;
  const int64_t dim = 12;
  const Tensor input = RandomTensor({seq, dim}, 900);
  std::vector<std::pair<std::string, RopeSpec>> specs = PropertySpecs(seq);
  RopeSpec grid;
  grid.kind = RopeKind::k2D;
  grid.pairing = RopePairing::kHalfSplit;
  grid.grid_height = 13;
  grid.grid_width = 1;
  specs.emplace_back("2-D grid 13x1 half_split", grid);
  for (const auto& [name, spec] : specs) {
    SCOPED_TRACE(name);
    ASSERT_OK_AND_ASSIGN(RopeTable table, RopeTable::Create(spec, seq, dim));
    EXPECT_EQ(table.seq_len(), seq);
    EXPECT_EQ(table.dim(), dim);
    EXPECT_EQ(table.rotary_dim(), spec.rotary_dim == 0 ? dim : spec.rotary_dim);
    const std::vector<double> expected = ReferenceRope(input, spec);
    // Rows in reverse order so a table that ignored `s` (using row 0 or a running counter) fails.
    for (int64_t s = seq - 1; s >= 0; --s) {
      SCOPED_TRACE(absl::StrCat("s ", s));
      const auto want = absl::MakeConstSpan(expected).subspan(s * dim, dim);
      std::vector<float> out(dim, -999.0f);
      table.ApplyRow(input.values.data() + s * dim, out.data(), s);
      EXPECT_TRUE(RowsNear(out, want, dim, kRopeRowTol));
      // In place.
      std::vector<float> row(input.values.begin() + s * dim, input.values.begin() + (s + 1) * dim);
      table.ApplyRow(row.data(), row.data(), s);
      EXPECT_TRUE(RowsNear(row, want, dim, kRopeRowTol));
    }
  }
}

// Sinusoidal vs the MATH.md 1 formula in double.
std::vector<double> ReferenceSinusoidal(const std::vector<double>& positions, int64_t dim, double base,
                                        SinusoidalLayout layout) {
  std::vector<double> out(positions.size() * dim);
  for (size_t k = 0; k < positions.size(); ++k) {
    for (int64_t i = 0; i < dim / 2; ++i) {
      const double theta = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(dim));
      const double s = std::sin(positions[k] * theta);
      const double c = std::cos(positions[k] * theta);
      if (layout == SinusoidalLayout::kInterleaved) {
        out[k * dim + 2 * i] = s;
        out[k * dim + 2 * i + 1] = c;
      } else {
        out[k * dim + i] = s;
        out[k * dim + dim / 2 + i] = c;
      }
    }
  }
  return out;
}

TEST(SinusoidalDifferentialTest, MatchesReference) {
  std::vector<double> real_positions = {-3.5, 0.25, 0, 1, 17, 1e5, 123456.75, -1e4};
  std::vector<double> many(1000);  // 1000 x 130 rows: large enough for the threaded path.
  for (size_t k = 0; k < many.size(); ++k) many[k] = static_cast<double>(k) * 0.75 - 100;
  ScopedComputeThreads threads(3);
  for (const std::vector<double>* positions : {&real_positions, &many}) {
    for (int64_t dim : {2, 6, 130}) {
      for (double base : {kDefaultRopeBase, 500.0}) {
        for (SinusoidalLayout layout : {SinusoidalLayout::kInterleaved, SinusoidalLayout::kSplit}) {
          SCOPED_TRACE(absl::StrCat(positions->size(), " positions, dim ", dim, " base ", base, " layout ",
                                    static_cast<int>(layout)));
          SinusoidalOptions options;
          options.dim = dim;
          options.base = base;
          options.layout = layout;
          ASSERT_OK_AND_ASSIGN(Tensor table, SinusoidalTable(*positions, options));
          ASSERT_EQ(table.shape, (Shape{static_cast<int64_t>(positions->size()), dim}));
          const std::vector<double> expected = ReferenceSinusoidal(*positions, dim, base, layout);
          int64_t bad = 0;
          for (size_t i = 0; i < expected.size(); ++i) {
            if (!(std::abs(table.values[i] - expected[i]) <= kSinusoidalTol)) {
              if (bad++ == 0) ADD_FAILURE() << "index " << i << ": " << table.values[i] << " vs " << expected[i];
            }
          }
          EXPECT_EQ(bad, 0);
        }
      }
    }
  }
}

TEST(SinusoidalDifferentialTest, LengthMeansPositionsZeroToLengthMinusOne) {
  for (int64_t length : {1, 13, 257}) {
    SCOPED_TRACE(length);
    SinusoidalOptions options;
    options.dim = 6;
    std::vector<double> positions;
    for (int64_t k = 0; k < length; ++k) positions.push_back(static_cast<double>(k));
    ASSERT_OK_AND_ASSIGN(Tensor from_length, SinusoidalTable(length, options));
    ASSERT_OK_AND_ASSIGN(Tensor from_positions, SinusoidalTable(positions, options));
    EXPECT_EQ(from_length.shape, from_positions.shape);
    EXPECT_EQ(from_length.values, from_positions.values);
    EXPECT_EQ(from_length.values.size(), static_cast<size_t>(length * 6));
  }
}

// =============================================================================================
// 4. Bad inputs: the status code and the field the message names.

struct BadRopeCase {
  std::string name;
  Shape shape;
  RopeSpec spec;
  std::vector<std::string> substrings;  // All must appear in the message.
  int64_t poison_index = -1;            // Set input.values[poison_index] = poison_value.
  float poison_value = 0;
};

TEST(RopeBadInputTest, InvalidArgumentNamingTheField) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  RopeSpec one;
  RopeSpec two;
  two.kind = RopeKind::k2D;
  RopeSpec two_grid = two;  // A valid grid for seq 6.
  two_grid.grid_height = 2;
  two_grid.grid_width = 3;
  RopeSpec two_xy = Spec2D(RopePairing::kInterleaved, {0, 1, 2, 3, 4, 5}, {5, 4, 3, 2, 1, 0});

  auto spec1 = [&](auto edit) { RopeSpec s = one; edit(s); return s; };
  auto spec2g = [&](auto edit) { RopeSpec s = two_grid; edit(s); return s; };
  auto spec2xy = [&](auto edit) { RopeSpec s = two_xy; edit(s); return s; };

  std::vector<BadRopeCase> cases = {
      // Shapes.
      {"1-D odd dim", {6, 5}, one, {"input.shape"}},
      {"1-D dim 1", {6, 1}, one, {"input.shape"}},
      {"2-D dim 6 (not a multiple of 4)", {6, 6}, two_grid, {"input.shape"}},
      {"2-D dim 2", {6, 2}, two_xy, {"input.shape"}},
      {"rank 1", {8}, one, {"input.shape"}},
      {"rank 0", {}, one, {"input.shape"}},
      // rotary_dim.
      {"rotary_dim > dim", {6, 8}, spec1([](RopeSpec& s) { s.rotary_dim = 10; }), {"rotary_dim"}},
      {"rotary_dim odd", {6, 8}, spec1([](RopeSpec& s) { s.rotary_dim = 3; }), {"rotary_dim"}},
      {"rotary_dim negative", {6, 8}, spec1([](RopeSpec& s) { s.rotary_dim = -2; }), {"rotary_dim"}},
      {"2-D rotary_dim not a multiple of 4", {6, 12}, spec2g([](RopeSpec& s) { s.rotary_dim = 6; }),
       {"rotary_dim"}},
      {"2-D rotary_dim > dim", {6, 8}, spec2g([](RopeSpec& s) { s.rotary_dim = 12; }), {"rotary_dim"}},
      // 1-D positions.
      {"positions too short", {6, 8}, spec1([](RopeSpec& s) { s.positions = {0, 1, 2}; }), {"positions"}},
      {"positions too long", {6, 8}, spec1([](RopeSpec& s) { s.positions = std::vector<double>(7, 1.0); }),
       {"positions"}},
      {"positions NaN", {6, 8}, spec1([&](RopeSpec& s) { s.positions = {0, 1, nan, 3, 4, 5}; }),
       {"positions[2]"}},
      {"positions +Inf", {6, 8}, spec1([&](RopeSpec& s) { s.positions = {0, 1, 2, 3, 4, inf}; }),
       {"positions[5]"}},
      {"positions -Inf", {6, 8}, spec1([&](RopeSpec& s) { s.positions = {-inf, 1, 2, 3, 4, 5}; }),
       {"positions[0]"}},
      // 1-D with 2-D fields.
      {"1-D with positions_x", {6, 8}, spec1([](RopeSpec& s) { s.positions_x = {0, 1, 2, 3, 4, 5}; }),
       {"positions_x"}},
      {"1-D with positions_y", {6, 8}, spec1([](RopeSpec& s) { s.positions_y = {0, 1, 2, 3, 4, 5}; }),
       {"positions_y"}},
      {"1-D with grid_height", {6, 8}, spec1([](RopeSpec& s) { s.grid_height = 2; }), {"grid_height"}},
      {"1-D with grid", {6, 8}, spec1([](RopeSpec& s) { s.grid_height = 2; s.grid_width = 3; }),
       {"grid_width"}},
      // 2-D positions.
      {"2-D with positions", {6, 8}, spec2g([](RopeSpec& s) { s.positions = {0, 1, 2, 3, 4, 5}; }),
       {"positions"}},
      {"2-D positions_x short", {6, 8}, spec2xy([](RopeSpec& s) { s.positions_x = {0, 1}; }), {"positions_x"}},
      {"2-D positions_y long", {6, 8}, spec2xy([](RopeSpec& s) { s.positions_y.push_back(9); }),
       {"positions_y"}},
      {"2-D only positions_y", {6, 8}, spec2xy([](RopeSpec& s) { s.positions_x.clear(); }), {"positions_x"}},
      {"2-D only positions_x", {6, 8}, spec2xy([](RopeSpec& s) { s.positions_y.clear(); }), {"positions_y"}},
      {"2-D positions_x NaN", {6, 8}, spec2xy([&](RopeSpec& s) { s.positions_x[3] = nan; }),
       {"positions_x[3]"}},
      {"2-D positions_y Inf", {6, 8}, spec2xy([&](RopeSpec& s) { s.positions_y[4] = -inf; }),
       {"positions_y[4]"}},
      // Grids.
      {"grid product != seq", {6, 8}, spec2g([](RopeSpec& s) { s.grid_width = 4; }), {"grid_height", "grid_width"}},
      {"grid product = seq + seq", {6, 8}, spec2g([](RopeSpec& s) { s.grid_height = 4; }), {"grid_height"}},
      {"grid height 0", {6, 8}, spec2g([](RopeSpec& s) { s.grid_height = 0; }), {"grid_height"}},
      {"grid width 0", {6, 8}, spec2g([](RopeSpec& s) { s.grid_width = 0; }), {"grid_width"}},
      {"grid negative both", {6, 8}, spec2g([](RopeSpec& s) { s.grid_height = -2; s.grid_width = -3; }),
       {"grid_height"}},
      {"grid negative height", {6, 8}, spec2g([](RopeSpec& s) { s.grid_height = -6; s.grid_width = -1; }),
       {"grid_height"}},
      {"grid overflow-sized", {6, 8},
       spec2g([](RopeSpec& s) { s.grid_height = int64_t{1} << 62; s.grid_width = 4; }), {"grid_height"}},
      {"grid and explicit xy", {6, 8}, spec2xy([](RopeSpec& s) { s.grid_height = 2; s.grid_width = 3; }),
       {"positions_x", "grid_height"}},
      {"neither grid nor xy", {6, 8}, two, {"positions_x", "grid_height"}},
      // base.
      {"base 0", {6, 8}, spec1([](RopeSpec& s) { s.base = 0; }), {"base"}},
      // base < 1 makes theta > 1: a huge position would overflow pos * theta to Inf (NaN output).
      {"angle overflow", {1, 4},
       spec1([](RopeSpec& s) {
         s.base = 0.5;
         s.positions = {1.7e308};
       }),
       {"positions[0]", "overflows"}},
      {"base negative", {6, 8}, spec1([](RopeSpec& s) { s.base = -10000; }), {"base"}},
      {"base NaN", {6, 8}, spec1([&](RopeSpec& s) { s.base = nan; }), {"base"}},
      {"base +Inf", {6, 8}, spec1([&](RopeSpec& s) { s.base = inf; }), {"base"}},
      {"2-D base NaN", {6, 8}, spec2g([&](RopeSpec& s) { s.base = nan; }), {"base"}},
  };
  // Non-finite input values: the index is named.
  cases.push_back({"input NaN", {2, 6, 8}, one, {"input[5]"}, 5, std::numeric_limits<float>::quiet_NaN()});
  cases.push_back({"input +Inf last", {2, 6, 8}, one, {"input[95]"}, 95, std::numeric_limits<float>::infinity()});
  cases.push_back({"input -Inf 2-D", {2, 6, 8}, two_grid, {"input[40]"}, 40,
                   -std::numeric_limits<float>::infinity()});

  for (const BadRopeCase& c : cases) {
    SCOPED_TRACE(c.name);
    Tensor input = Tensor::Zeros(c.shape);
    for (size_t i = 0; i < input.values.size(); ++i) input.values[i] = 0.5f + static_cast<float>(i % 7);
    if (c.poison_index >= 0) input.values[c.poison_index] = c.poison_value;
    const absl::StatusOr<Tensor> out = ApplyRope(input, c.spec);
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
    for (const std::string& s : c.substrings) {
      EXPECT_THAT(std::string(out.status().message()), HasSubstr(s));
    }
    // RopeTable::Create gives the same verdict for spec and shape errors at rank >= 2.
    if (c.shape.size() >= 2 && c.poison_index < 0) {
      const absl::StatusOr<RopeTable> table =
          RopeTable::Create(c.spec, c.shape[c.shape.size() - 2], c.shape.back());
      ASSERT_FALSE(table.ok());
      EXPECT_EQ(table.status(), out.status());
    }
  }
}

// Regression (fuzzer): an empty input may claim any seq_len; the table must not try to hold it.
TEST(RopeBadInputTest, AnEmptyInputWithAHugeSeqLenIsRefusedBeforeAllocating) {
  const std::vector<int64_t> shape = {0, int64_t{1} << 60, 24};
  const absl::Status status = ApplyRope({}, shape, RopeSpec{}, {});
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(status.message()), HasSubstr("seq_len x dim"));
  // Within the general cap, but an empty input must not pay for a large table either.
  EXPECT_EQ(ApplyRope({}, std::vector<int64_t>{0, int64_t{1} << 24, 8}, RopeSpec{}, {}).code(),
            absl::StatusCode::kResourceExhausted);
  // seq_len 0 and a huge dim: the frequencies alone would be a 2^62-entry vector.
  EXPECT_EQ(ApplyRope({}, std::vector<int64_t>{5, 0, int64_t{1} << 62}, RopeSpec{}, {}).code(),
            absl::StatusCode::kResourceExhausted);
  // An empty input of a sensible shape is still fine.
  EXPECT_TRUE(ApplyRope({}, std::vector<int64_t>{0, 16, 24}, RopeSpec{}, {}).ok());
}

TEST(RopeBadInputTest, ARotationBeyondFloatMaxIsRefusedNotReturnedAsInf) {
  // [x, y] = [3.4e38, 3.4e38] at position 1: x cos 1 - y sin 1 is about -1.0e38, but x sin 1 +
  // y cos 1 is about 4.7e38, past float's maximum (it came back as +Inf).
  const float big = 3.4e38f;
  std::vector<float> out(4);
  const absl::Status status =
      ApplyRope(std::vector<float>{big, big, big, big}, std::vector<int64_t>{2, 2}, RopeSpec{}, absl::MakeSpan(out));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("overflows float32 (output[3])"));
  // As large, where no component grows: position 0 is the identity (the output is scanned, and
  // passes).
  ASSERT_TRUE(
      ApplyRope(std::vector<float>{big, big}, std::vector<int64_t>{1, 2}, RopeSpec{}, absl::MakeSpan(out.data(), 2)).ok());
  EXPECT_EQ(out[0], big);
  // Half of float's maximum never overflows, whatever the angle (a component grows by sqrt(2) at most).
  const float half = std::numeric_limits<float>::max() / 2;
  std::vector<float> in(2 * 64, half);
  std::vector<float> rotated(in.size());
  ASSERT_TRUE(ApplyRope(in, std::vector<int64_t>{64, 2}, RopeSpec{}, absl::MakeSpan(rotated)).ok());
  for (float x : rotated) EXPECT_TRUE(std::isfinite(x));
}

TEST(RopeBadInputTest, NegativeExtentsInCreate) {
  const absl::StatusOr<RopeTable> table = RopeTable::Create(RopeSpec{}, -1, 4);
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(table.status().message()), HasSubstr("input.shape"));
}

TEST(SinusoidalBadInputTest, Errors) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  struct Case {
    std::string name;
    int64_t dim;
    double base;
    int64_t length;                 // Used when positions is empty...
    std::vector<double> positions;  // ...else this overload.
    int64_t max_elements;
    absl::StatusCode code;
    std::string field;
  };
  const int64_t kMax = kDefaultMaxElements;
  const std::vector<Case> cases = {
      {"odd dim", 5, kDefaultRopeBase, 4, {}, kMax, absl::StatusCode::kInvalidArgument, "dim"},
      {"odd dim, positions", 3, kDefaultRopeBase, 0, {1, 2}, kMax, absl::StatusCode::kInvalidArgument, "dim"},
      {"dim 0", 0, kDefaultRopeBase, 4, {}, kMax, absl::StatusCode::kInvalidArgument, "dim"},
      {"dim negative", -4, kDefaultRopeBase, 4, {}, kMax, absl::StatusCode::kInvalidArgument, "dim"},
      {"length 0", 4, kDefaultRopeBase, 0, {}, kMax, absl::StatusCode::kInvalidArgument, "length"},
      {"length negative", 4, kDefaultRopeBase, -3, {}, kMax, absl::StatusCode::kInvalidArgument, "length"},
      {"base 0", 4, 0.0, 4, {}, kMax, absl::StatusCode::kInvalidArgument, "base"},
      {"base negative", 4, -2.0, 0, {1.0}, kMax, absl::StatusCode::kInvalidArgument, "base"},
      {"base NaN", 4, nan, 4, {}, kMax, absl::StatusCode::kInvalidArgument, "base"},
      {"angle overflow", 4, 0.5, 0, {1.0, 1.7e308}, kMax, absl::StatusCode::kInvalidArgument, "positions[1]"},
      {"position NaN", 4, kDefaultRopeBase, 0, {0, nan}, kMax, absl::StatusCode::kInvalidArgument,
       "positions[1]"},
      {"position -Inf", 4, kDefaultRopeBase, 0, {-std::numeric_limits<double>::infinity()}, kMax,
       absl::StatusCode::kInvalidArgument, "positions[0]"},
      {"over max_elements (length)", 4, kDefaultRopeBase, 10, {}, 39, absl::StatusCode::kResourceExhausted,
       "output"},
      {"over max_elements (positions)", 4, kDefaultRopeBase, 0, {1, 2, 3}, 11,
       absl::StatusCode::kResourceExhausted, "output"},
      // Must be rejected before anything of that size is allocated.
      {"huge length", 4, kDefaultRopeBase, int64_t{1} << 40, {}, kMax, absl::StatusCode::kResourceExhausted,
       "output"},
      // dim <= 0 makes the element count 0, so it must not let a huge length through to the
      // positions vector (tests/fuzz found length 2^27 with dim 0 allocating 1 GiB).
      {"huge length, dim 0", 0, kDefaultRopeBase, int64_t{1} << 40, {}, kMax, absl::StatusCode::kInvalidArgument,
       "dim"},
      {"huge length, dim negative", -2, kDefaultRopeBase, int64_t{1} << 40, {}, kMax,
       absl::StatusCode::kInvalidArgument, "dim"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    SinusoidalOptions options;
    options.dim = c.dim;
    options.base = c.base;
    options.max_elements = c.max_elements;
    const absl::StatusOr<Tensor> table =
        c.positions.empty() ? SinusoidalTable(c.length, options) : SinusoidalTable(c.positions, options);
    ASSERT_FALSE(table.ok());
    EXPECT_EQ(table.status().code(), c.code) << table.status();
    EXPECT_THAT(std::string(table.status().message()), HasSubstr(c.field));
  }
}

TEST(SinusoidalBadInputTest, EmptyPositionsSpan) {
  SinusoidalOptions options;
  options.dim = 4;
  const absl::StatusOr<Tensor> table = SinusoidalTable(absl::Span<const double>(), options);
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(table.status().message()), HasSubstr("positions"));
}

TEST(SinusoidalBadInputTest, AtTheCapIsAccepted) {
  SinusoidalOptions options;
  options.dim = 4;
  options.max_elements = 40;
  ASSERT_OK_AND_ASSIGN(Tensor table, SinusoidalTable(10, options));
  EXPECT_EQ(table.values.size(), 40u);
}

}  // namespace
}  // namespace primserve
