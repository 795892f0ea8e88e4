// Branch-free float math that the compiler vectorises: exp for softmax rows.
//
// ExpNonPositive: exp(x) for x <= 0 (softmax arguments s - max), to about 1 ulp: Cody-Waite
// reduction x = n ln2 + r with |r| <= ln2/2 (ln2 split in a high part exact in float and a low
// correction), exp(r) by its degree-7 Taylor polynomial (truncation r^8/8! < 4e-9 relative), and
// 2^n put into the exponent bits. Arguments below -87.33 (where exp underflows float's normal
// range), including -Inf, give exactly 0, so masked logits contribute nothing.
//
// Exp2Bounded: 2^t for t <= 64 (softmax in base 2: logits times log2 e, minus a reference), to
// about 1 ulp: n = round(t), f = t - n in [-1/2, 1/2] (exact), 2^f by the degree-6 polynomial
// kExp2C* fitted for relative error on [-1/2, 1/2] (1.6e-8 with its coefficients rounded to
// float, below float's 6e-8 unit roundoff), 2^n into the exponent bits. Arguments below -126
// (and -Inf, NaN) give exactly 0.
#ifndef PRIMSERVE_CORE_VECTOR_MATH_H_
#define PRIMSERVE_CORE_VECTOR_MATH_H_

#include <cstdint>
#include <cstring>

namespace primserve {

inline float ExpNonPositive(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693145751953125f;  // 12 significant bits: n * kLn2Hi is exact.
  constexpr float kLn2Lo = 1.42860682030941723212e-6f;
  constexpr float kMinArg = -87.33654f;
  const bool underflow = !(x >= kMinArg);  // Also true for NaN and -Inf.
  const float xc = underflow ? kMinArg : x;
  const float n = __builtin_floorf(xc * kLog2e + 0.5f);
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return underflow ? 0.0f : p * scale;
}

// 2^f ~ 1 + f (kExp2C1 + f (kExp2C2 + ... + f kExp2C6)) on [-1/2, 1/2] (fitted for relative error).
constexpr float kExp2C1 = 0.6931471824645996f;
constexpr float kExp2C2 = 0.24022646248340607f;
constexpr float kExp2C3 = 0.05550328642129898f;
constexpr float kExp2C4 = 0.009618489071726799f;
constexpr float kExp2C5 = 0.0013399929739534855f;
constexpr float kExp2C6 = 0.0001534579205326736f;

inline float Exp2Bounded(float t) {
  const bool underflow = !(t >= -126.0f);  // Also true for NaN and -Inf.
  const float tc = underflow ? -126.0f : t;
  const float n = __builtin_floorf(tc + 0.5f);
  const float f = tc - n;
  float p = kExp2C6;
  p = p * f + kExp2C5;
  p = p * f + kExp2C4;
  p = p * f + kExp2C3;
  p = p * f + kExp2C2;
  p = p * f + kExp2C1;
  p = p * f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return underflow ? 0.0f : p * scale;
}

}  // namespace primserve

#endif  // PRIMSERVE_CORE_VECTOR_MATH_H_
