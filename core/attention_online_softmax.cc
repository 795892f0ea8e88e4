#include "core/attention_online_softmax.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/multiversion.h"
#include "core/tile_matmul.h"
#include "core/vector_math.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() (a self-initialised variable) as the
// pass-through operand, which -Wuninitialized reports inside the header once inlined into a
// target("avx512f") function; the values are never read.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#pragma GCC diagnostic pop
#define PRIMSERVE_HAVE_X86_PATHS 1
#define PRIMSERVE_AVX512 __attribute__((target("avx512f")))
#endif

namespace primserve {
namespace attention_internal {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// bfloat16 = the upper half of a float32; adding 0x7fff plus the lowest kept bit before
// truncating rounds to nearest, ties to even (finite inputs).
inline uint16_t Bf16Bits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// y[i] = Bf16Bits(x[i]); returns whether every x[i] is finite.
bool ConvertToBf16Scalar(const float* x, uint16_t* y, int64_t n) {
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    finite &= std::isfinite(x[i]);
    y[i] = Bf16Bits(x[i]);
  }
  return finite;
}

// ---------------------------------------------------------------------------------------------
// Portable path (no AVX-512): compiler-vectorised loops.

// The row maximum with GCC vector types: a max reduction of floats does not auto-vectorise
// (std::max is not IEEE maxNum), but an element-wise select on 8-float vectors does.
PRIMSERVE_MULTIVERSION
float RowMaxPortable(const float* x, int64_t n) {
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

// Whether every x[i] <= limit (false if one is NaN).
PRIMSERVE_MULTIVERSION
bool AllAtMost(const float* x, int64_t n, float limit) {
  int above = 0;
#pragma omp simd reduction(| : above)
  for (int64_t i = 0; i < n; ++i) above |= !(x[i] <= limit);
  return above == 0;
}

PRIMSERVE_MULTIVERSION
float Exp2ShiftedSumPortable(float* x, int64_t n, float m) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    const float e = Exp2Bounded(x[i] - m);
    x[i] = e;
    sum += e;
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// AVX-512 path.

#ifdef PRIMSERVE_HAVE_X86_PATHS

// 2^t (t <= kHeadroom, or -Inf, NaN: 0) on 16 lanes: n = round(t), f = t - n in [-1/2, 1/2],
// 2^f by a polynomial in f, and vscalefps multiplies by 2^n with correct underflow. t is clamped
// at -200 first: 2^-200 rounds to exactly 0, so a masked (-Inf) logit contributes nothing and
// -Inf never meets the subtraction f = t - n. The rounding of t = s - m costs a relative error
// eps |t| ln2 on a result of size 2^t. Exp2Reduce16 returns f and sets *n; each caller picks its
// polynomial.
PRIMSERVE_AVX512 inline __m512 Exp2Reduce16(__m512 t, __m512* n) {
  t = _mm512_max_ps(t, _mm512_set1_ps(-200.0f));  // Also maps NaN to -200 (max returns operand 2).
  *n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm512_sub_ps(t, *n);
}

// Float32 accuracy: 2^f by the degree-6 polynomial of vector_math.h (relative error 1.6e-8,
// below float's 6e-8 unit roundoff).
PRIMSERVE_AVX512 inline __m512 Exp2_16(__m512 t) {
  __m512 n;
  const __m512 f = Exp2Reduce16(t, &n);
  __m512 p = _mm512_set1_ps(kExp2C6);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2C5));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2C4));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2C3));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2C2));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2C1));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

PRIMSERVE_AVX512 inline __m256i Bf16Bits16(__m512 x) {
  const __m512i bits = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(rounded, 16));
}

PRIMSERVE_AVX512 inline __mmask16 TailMask(int64_t remaining) {
  return static_cast<__mmask16>((1u << remaining) - 1u);
}

// Horizontal reductions through memory: GCC 12's _mm512_reduce_* trip -Wuninitialized
// inside its own headers.
PRIMSERVE_AVX512 inline float HorizontalMax(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float m = lanes[0];
  for (int i = 1; i < 16; ++i) m = lanes[i] > m ? lanes[i] : m;
  return m;
}

PRIMSERVE_AVX512 inline float HorizontalSum(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float s = 0.0f;
  for (int i = 0; i < 16; ++i) s += lanes[i];
  return s;
}

PRIMSERVE_AVX512 float RowMaxAvx512(const float* x, int64_t n) {
  const __m512 neg_inf = _mm512_set1_ps(kNegInf);
  __m512 m0 = neg_inf, m1 = neg_inf;  // Two chains hide the max latency.
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
    m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
  }
  for (; i + 16 <= n; i += 16) m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
  if (i < n) m1 = _mm512_max_ps(m1, _mm512_mask_loadu_ps(neg_inf, TailMask(n - i), x + i));
  return HorizontalMax(_mm512_max_ps(m0, m1));
}

// p = 2^(x - m) for i < n, written to x (out16 null) or to out16 as bfloat16, stopping before
// the first 32 lanes that hold an x above `limit` or a NaN; adds the sum of p to *sum and
// returns how many elements it did.
PRIMSERVE_AVX512 int64_t Exp2ShiftedSumAvx512(float* x, int64_t n, float m, float limit, uint16_t* out16, float* sum) {
  const __m512 vm = _mm512_set1_ps(m);
  const __m512 vlimit = _mm512_set1_ps(limit);
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
    if ((_mm512_cmp_ps_mask(x0, vlimit, _CMP_NLE_UQ) | _mm512_cmp_ps_mask(x1, vlimit, _CMP_NLE_UQ)) != 0) {
      *sum += HorizontalSum(_mm512_add_ps(s0, s1));
      return i;
    }
    const __m512 p0 = Exp2_16(_mm512_sub_ps(x0, vm));
    const __m512 p1 = Exp2_16(_mm512_sub_ps(x1, vm));
    s0 = _mm512_add_ps(s0, p0);
    s1 = _mm512_add_ps(s1, p1);
    if (out16 != nullptr) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out16 + i), Bf16Bits16(p0));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out16 + i + 16), Bf16Bits16(p1));
    } else {
      _mm512_storeu_ps(x + i, p0);
      _mm512_storeu_ps(x + i + 16, p1);
    }
  }
  for (; i < n; i += 16) {
    const __mmask16 mask = i + 16 <= n ? static_cast<__mmask16>(0xffff) : TailMask(n - i);
    const __m512 xi = _mm512_maskz_loadu_ps(mask, x + i);
    if (_mm512_mask_cmp_ps_mask(mask, xi, vlimit, _CMP_NLE_UQ) != 0) break;
    const __m512 p = _mm512_maskz_mov_ps(mask, Exp2_16(_mm512_sub_ps(xi, vm)));
    s0 = _mm512_add_ps(s0, p);
    if (out16 != nullptr) {
      alignas(32) uint16_t lanes[16];
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), Bf16Bits16(p));
      std::memcpy(out16 + i, lanes, static_cast<size_t>(std::min<int64_t>(16, n - i)) * sizeof(uint16_t));
    } else {
      _mm512_mask_storeu_ps(x + i, mask, p);
    }
  }
  *sum += HorizontalSum(_mm512_add_ps(s0, s1));
  return std::min(i, n);
}

// The BF16 probability pass: p = 2^(x - m) rounded to bfloat16, whose unit roundoff is 2^-9.
// Float32 accuracy would be wasted on it, so 2^f takes a degree-4 polynomial fitted on
// [-1/2, 1/2] for relative error (max 2.7e-6 in float32 arithmetic, against degree 6's 1.6e-8 in
// Exp2_16): two fewer FMAs on every probability, the pass being the largest cost of a
// BF16 call beside its tile products, which run twice as fast as F32's. The row sum takes the
// same float32 p, so the normaliser matches the probabilities to 2.7e-6 as well.
#define PRIMSERVE_AVX512_BF16 __attribute__((target("avx512f,avx512bf16")))

PRIMSERVE_AVX512_BF16 inline __m512 Exp2Bf16Grade(__m512 t) {
  __m512 n;
  const __m512 f = Exp2Reduce16(t, &n);
  __m512 p = _mm512_set1_ps(0.009570022113621235f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.05591767653822899f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.240247443318367f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931218504905701f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.9999992847442627f));
  return _mm512_scalef_ps(p, n);
}

// Stores the first `count` (<= 32) bfloat16 lanes of `packed` at y.
PRIMSERVE_AVX512_BF16 inline void StoreBf16Prefix(uint16_t* y, __m512bh packed, int64_t count) {
  std::memcpy(y, &packed, static_cast<size_t>(count) * sizeof(uint16_t));
}

// vcvtne2ps2bf16 rounds 32 floats to nearest even in one instruction (against six integer
// operations per 16 in Bf16Bits16; it flushes denormal results, p < 1.2e-38, to zero).
// Stops like Exp2ShiftedSumAvx512 before the first 32 lanes holding an x above `limit` or a NaN.
PRIMSERVE_AVX512_BF16 int64_t Exp2ShiftedSumBf16Avx512(const float* x, int64_t n, float m, float limit, uint16_t* out16,
                                                       float* sum) {
  const __m512 vm = _mm512_set1_ps(m);
  const __m512 vlimit = _mm512_set1_ps(limit);
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
    if ((_mm512_cmp_ps_mask(x0, vlimit, _CMP_NLE_UQ) | _mm512_cmp_ps_mask(x1, vlimit, _CMP_NLE_UQ)) != 0) {
      *sum += HorizontalSum(_mm512_add_ps(s0, s1));
      return i;
    }
    const __m512 p0 = Exp2Bf16Grade(_mm512_sub_ps(x0, vm));
    const __m512 p1 = Exp2Bf16Grade(_mm512_sub_ps(x1, vm));
    s0 = _mm512_add_ps(s0, p0);
    s1 = _mm512_add_ps(s1, p1);
    const __m512bh packed = _mm512_cvtne2ps_pbh(p1, p0);  // Lanes 0-15 from p0, 16-31 from p1.
    _mm512_storeu_si512(out16 + i, reinterpret_cast<const __m512i&>(packed));
  }
  if (i < n) {
    const int64_t left = n - i;
    const __mmask16 mask0 = left >= 16 ? static_cast<__mmask16>(0xffff) : TailMask(left);
    const __mmask16 mask1 = left > 16 ? TailMask(left - 16) : 0;
    const __m512 x0 = _mm512_maskz_loadu_ps(mask0, x + i), x1 = _mm512_maskz_loadu_ps(mask1, x + i + 16);
    if ((_mm512_mask_cmp_ps_mask(mask0, x0, vlimit, _CMP_NLE_UQ) | _mm512_mask_cmp_ps_mask(mask1, x1, vlimit, _CMP_NLE_UQ)) !=
        0) {
      *sum += HorizontalSum(_mm512_add_ps(s0, s1));
      return i;
    }
    const __m512 p0 = _mm512_maskz_mov_ps(mask0, Exp2Bf16Grade(_mm512_sub_ps(x0, vm)));
    const __m512 p1 = _mm512_maskz_mov_ps(mask1, Exp2Bf16Grade(_mm512_sub_ps(x1, vm)));
    s0 = _mm512_add_ps(s0, p0);
    s1 = _mm512_add_ps(s1, p1);
    StoreBf16Prefix(out16 + i, _mm512_cvtne2ps_pbh(p1, p0), left);
  }
  *sum += HorizontalSum(_mm512_add_ps(s0, s1));
  return n;
}

// Lanes of x whose exponent bits are all ones: NaN or +-Inf.
PRIMSERVE_AVX512 inline __mmask16 NonFinite16(__m512 x) {
  const __m512i exponent = _mm512_set1_epi32(0x7f800000);
  return _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(x), exponent), exponent);
}

PRIMSERVE_AVX512 bool ConvertToBf16Avx512(const float* x, uint16_t* y, int64_t n) {
  __mmask16 bad = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    bad |= NonFinite16(v);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), Bf16Bits16(v));
  }
  return ConvertToBf16Scalar(x + i, y + i, n - i) && bad == 0;
}

// The same with vcvtne2ps2bf16: 32 floats per instruction.
PRIMSERVE_AVX512_BF16 bool ConvertToBf16Bf16Avx512(const float* x, uint16_t* y, int64_t n) {
  __mmask16 bad = 0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 v0 = _mm512_loadu_ps(x + i);
    const __m512 v1 = _mm512_loadu_ps(x + i + 16);
    bad |= NonFinite16(v0) | NonFinite16(v1);
    const __m512bh packed = _mm512_cvtne2ps_pbh(v1, v0);
    _mm512_storeu_si512(y + i, reinterpret_cast<const __m512i&>(packed));
  }
  if (i < n) {
    const int64_t left = n - i;
    const __mmask16 mask0 = left >= 16 ? static_cast<__mmask16>(0xffff) : TailMask(left);
    const __mmask16 mask1 = left > 16 ? TailMask(left - 16) : 0;
    const __m512 v0 = _mm512_maskz_loadu_ps(mask0, x + i);
    const __m512 v1 = _mm512_maskz_loadu_ps(mask1, x + i + 16);
    bad |= NonFinite16(v0) | NonFinite16(v1);
    StoreBf16Prefix(y + i, _mm512_cvtne2ps_pbh(v1, v0), left);
  }
  return bad == 0;
}

// ---------------------------------------------------------------------------------------------
// AVX2 + FMA path (x86-64-v3 CPUs without AVX-512), the same algorithm on 8 lanes. With no
// vscalefps, 2^n goes into the exponent bits, so t is clamped at -127 instead: n = -127 gives
// the bit pattern of +0, so results below 2^-126.5 (about 1e-38) are exactly 0, as are masked
// (-Inf) and NaN logits (max returns its second operand, -127, for a NaN first one).

#define PRIMSERVE_AVX2 __attribute__((target("avx2,fma")))

PRIMSERVE_AVX2 inline __m256 Exp2_8(__m256 t) {
  t = _mm256_max_ps(t, _mm256_set1_ps(-127.0f));
  const __m256 n = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(t, n);
  __m256 p = _mm256_set1_ps(kExp2C6);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2C5));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2C4));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2C3));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2C2));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2C1));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
  const __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(exponent));
}

PRIMSERVE_AVX2 inline float HorizontalSum8(__m256 v) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  float s = 0.0f;
  for (int i = 0; i < 8; ++i) s += lanes[i];
  return s;
}

PRIMSERVE_AVX2 float RowMaxAvx2(const float* x, int64_t n) {
  const __m256 neg_inf = _mm256_set1_ps(kNegInf);
  __m256 m0 = neg_inf, m1 = neg_inf;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
  }
  for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_max_ps(m0, m1));
  float m = kNegInf;
  for (int t = 0; t < 8; ++t) m = lanes[t] > m ? lanes[t] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// All-ones in the first min(count, 8) 32-bit lanes.
PRIMSERVE_AVX2 inline __m256i TailMask8(int64_t count) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<int64_t>(count, 8))), lane);
}

// p = 2^(x - m) for i < n, in place, stopping before the first 16 lanes that hold a NaN or an
// x above `limit`; adds the sum of p to *sum and returns how many elements it did.
PRIMSERVE_AVX2 int64_t Exp2ShiftedSumAvx2(float* x, int64_t n, float m, float limit, float* sum) {
  const __m256 vm = _mm256_set1_ps(m);
  const __m256 vlimit = _mm256_set1_ps(limit);
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
    const __m256 above = _mm256_or_ps(_mm256_cmp_ps(x0, vlimit, _CMP_NLE_UQ), _mm256_cmp_ps(x1, vlimit, _CMP_NLE_UQ));
    if (_mm256_movemask_ps(above) != 0) {
      *sum += HorizontalSum8(_mm256_add_ps(s0, s1));
      return i;
    }
    const __m256 p0 = Exp2_8(_mm256_sub_ps(x0, vm));
    const __m256 p1 = Exp2_8(_mm256_sub_ps(x1, vm));
    s0 = _mm256_add_ps(s0, p0);
    s1 = _mm256_add_ps(s1, p1);
    _mm256_storeu_ps(x + i, p0);
    _mm256_storeu_ps(x + i + 8, p1);
  }
  for (; i < n; i += 8) {
    const __m256i mask = TailMask8(n - i);
    const __m256 xi = _mm256_maskload_ps(x + i, mask);
    const __m256 above = _mm256_and_ps(_mm256_castsi256_ps(mask), _mm256_cmp_ps(xi, vlimit, _CMP_NLE_UQ));
    if (_mm256_movemask_ps(above) != 0) break;
    const __m256 p = _mm256_and_ps(_mm256_castsi256_ps(mask), Exp2_8(_mm256_sub_ps(xi, vm)));
    s0 = _mm256_add_ps(s0, p);
    _mm256_maskstore_ps(x + i, mask, p);
  }
  *sum += HorizontalSum8(_mm256_add_ps(s0, s1));
  return std::min(i, n);
}

#endif  // PRIMSERVE_HAVE_X86_PATHS

std::atomic<int> g_isa_cap{static_cast<int>(SoftmaxIsa::kAvx512)};

bool Use(SoftmaxIsa isa) {
  static const SoftmaxIsa best = BestSoftmaxIsa();
  return best >= isa && g_isa_cap.load(std::memory_order_relaxed) >= static_cast<int>(isa);
}

bool UseAvx512() { return Use(SoftmaxIsa::kAvx512); }
bool UseAvx2() { return Use(SoftmaxIsa::kAvx2); }

// oneDNN's ISA detection, the same test that admits BF16 calls at all.
bool UseAvx512Bf16() {
  static const bool native = HasNativeBf16();
  return native && UseAvx512();
}

float RowMax(const float* x, int64_t n) {
#ifdef PRIMSERVE_HAVE_X86_PATHS
  if (UseAvx512()) return RowMaxAvx512(x, n);
  if (UseAvx2()) return RowMaxAvx2(x, n);
#endif
  return RowMaxPortable(x, n);
}

// p = 2^(x - m) for the leading elements of x[0, n), written to x (out16 null) or to out16 as
// bfloat16, stopping early only if a NaN or an x above `limit` is met (the widest paths check
// 16-32 lanes at a time, the portable one the whole row first); adds the sum of p to *sum and
// returns how many elements it did (n, or fewer when it stopped).
int64_t Exp2ShiftedSum(float* x, int64_t n, float m, float limit, uint16_t* out16, float* sum) {
#ifdef PRIMSERVE_HAVE_X86_PATHS
  if (out16 != nullptr && UseAvx512Bf16()) return Exp2ShiftedSumBf16Avx512(x, n, m, limit, out16, sum);
  if (UseAvx512()) return Exp2ShiftedSumAvx512(x, n, m, limit, out16, sum);
  if (out16 == nullptr && UseAvx2()) return Exp2ShiftedSumAvx2(x, n, m, limit, sum);
#endif
  if (!AllAtMost(x, n, limit)) return 0;
  if (out16 == nullptr) {
    *sum += Exp2ShiftedSumPortable(x, n, m);
  } else {
    float s = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
      const float p = Exp2Bounded(x[i] - m);
      s += p;
      out16[i] = Bf16Bits(p);
    }
    *sum += s;
  }
  return n;
}

// All of x[0, n) against m, adding the sum of p to *sum; false if a NaN stopped it.
[[nodiscard]] bool Exp2ShiftedSumAll(float* x, int64_t n, float m, uint16_t* out16, float* sum) {
  return Exp2ShiftedSum(x, n, m, std::numeric_limits<float>::infinity(), out16, sum) == n;
}

// One row of UpdateOnlineSoftmax on its visible logits (visible > 0). Returns alpha. Sets
// *overflow on a +Inf or NaN logit, and then leaves the row's state meaningless: a +Inf is
// above any limit and a NaN stops every pass, so either one reaches a RowMax or ends a pass
// against +Inf early.
float UpdateRow(float* row, uint16_t* row16, int64_t visible, float* m, float* l, bool* overflow) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const float m_old = *m;
  if (m_old != kNegInf) {
    // Against the reference, in one pass, unless a logit rises above m + kHeadroom. (Where floats
    // are 16 or more apart, m + kHeadroom can round up past it: step back below.)
    float limit = m_old + kHeadroom;
    if (limit - m_old > kHeadroom) limit = std::nextafter(limit, kNegInf);
    float sum = 0.0f;
    const int64_t done = Exp2ShiftedSum(row, visible, m_old, limit, row16, &sum);
    if (done == visible) {
      *l += sum;
      return 1.0f;
    }
    // The maximum lies past `done` (everything before it is at most m + kHeadroom).
    const float m_new = RowMax(row + done, visible - done);
    if (!(m_new < kInf)) {
      *overflow = true;
      return 1.0f;
    }
    // In double, so the difference of the two references is exact: alpha is rounded once.
    const float alpha = static_cast<float>(std::exp2(static_cast<double>(m_old) - m_new));
    bool complete;
    if (row16 == nullptr) {
      // The first `done` logits are already probabilities against m_old: rescale them.
      ScaleRow(row, done, alpha);
      sum *= alpha;
      complete = Exp2ShiftedSumAll(row + done, visible - done, m_new, nullptr, &sum);
    } else {
      sum = 0.0f;
      complete = Exp2ShiftedSumAll(row, visible, m_new, row16, &sum);  // The logits are intact: start over.
    }
    *overflow |= !complete;
    *l = *l * alpha + sum;
    *m = m_new;
    return alpha;
  }
  // The first visible keys of the row: the reference is their maximum (two passes).
  const float m_new = RowMax(row, visible);
  if (m_new == kNegInf) {
    // Every bias -Inf, still nothing visible, unless a NaN hid from the maximum.
    *overflow |= !AllAtMost(row, visible, kNegInf);
    return 1.0f;
  }
  if (!(m_new < kInf)) {
    *overflow = true;
    return 1.0f;
  }
  float sum = 0.0f;
  *overflow |= !Exp2ShiftedSumAll(row, visible, m_new, row16, &sum);
  *l = sum;
  *m = m_new;
  return 0.0f;
}

}  // namespace

SoftmaxIsa BestSoftmaxIsa() {
#ifdef PRIMSERVE_HAVE_X86_PATHS
  if (__builtin_cpu_supports("avx512f")) return SoftmaxIsa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SoftmaxIsa::kAvx2;
#endif
  return SoftmaxIsa::kPortable;
}

SoftmaxIsa CapSoftmaxIsaForTesting(SoftmaxIsa isa) {
  return static_cast<SoftmaxIsa>(g_isa_cap.exchange(static_cast<int>(isa)));
}

bool UpdateOnlineSoftmax(const OnlineSoftmaxTile& tile) {
  bool overflow = false;
  for (int64_t r = 0; r < tile.rows; ++r) {
    float* row = tile.scores + r * tile.ld;
    uint16_t* row16 = tile.probs_bf16 == nullptr ? nullptr : tile.probs_bf16 + r * tile.ld_bf16;
    const int64_t visible = tile.visible[r];
    tile.alpha[r] =
        visible > 0 ? UpdateRow(row, row16, visible, &tile.row_max[r], &tile.row_sum[r], &overflow) : 1.0f;
    // A row with nothing visible so far has no probabilities at all.
    const int64_t zero_from = tile.row_max[r] == kNegInf ? 0 : visible;
    if (row16 != nullptr) {
      std::fill(row16 + zero_from, row16 + tile.cols, uint16_t{0});
    } else {
      std::fill(row + zero_from, row + tile.cols, 0.0f);
    }
  }
  return !overflow;
}

void Exp2Shifted(float* x, int64_t n, float m) {
  float sum = 0.0f;
  // The logits passed UpdateOnlineSoftmax before (the same products): none is NaN.
  static_cast<void>(Exp2ShiftedSumAll(x, n, m, nullptr, &sum));
}

PRIMSERVE_MULTIVERSION
void ScaleRow(float* x, int64_t n, float a) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

bool ConvertToBf16(const float* x, uint16_t* y, int64_t n) {
#ifdef PRIMSERVE_HAVE_X86_PATHS
  if (UseAvx512Bf16()) return ConvertToBf16Bf16Avx512(x, y, n);
  if (UseAvx512()) return ConvertToBf16Avx512(x, y, n);
#endif
  return ConvertToBf16Scalar(x, y, n);
}

}  // namespace attention_internal
}  // namespace primserve
