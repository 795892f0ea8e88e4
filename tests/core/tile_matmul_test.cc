// TileMatmul against a plain double loop (every layout flag), and the oneDNN trap of the
// attention issue: no primitive the service creates may fall back to a "ref" implementation.
#include "core/tile_matmul.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/attention.h"
#include "core/dnnl_context.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace primserve {
namespace {

std::vector<float> Random(size_t n, int seed) {
  std::vector<float> v(n);
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(TileMatmul, MatchesReferenceForEveryLayout) {
  dnnl::stream stream(DnnlEngine());
  for (bool a_t : {false, true})
    for (bool b_t : {false, true})
      for (bool accumulate : {false, true})
        for (float scale : {1.0f, 0.125f}) {
          SCOPED_TRACE(testing::Message() << "a_t " << a_t << " b_t " << b_t << " acc " << accumulate << " scale "
                                          << scale);
          MatmulShape s;
          s.m = 13;
          s.n = 7;
          s.k = 33;
          s.a_transposed = a_t;
          s.b_transposed = b_t;
          s.lda = (a_t ? s.m : s.k) + 3;  // Padded leading dimensions.
          s.ldb = (b_t ? s.k : s.n) + 2;
          s.ldc = s.n + 5;
          s.accumulate = accumulate;
          s.scale = scale;
          absl::StatusOr<std::shared_ptr<const TileMatmul>> mm = TileMatmul::Get(s);
          ASSERT_TRUE(mm.ok()) << mm.status();
          const std::vector<float> a = Random(static_cast<size_t>((a_t ? s.k : s.m) * s.lda), 1);
          const std::vector<float> b = Random(static_cast<size_t>((b_t ? s.n : s.k) * s.ldb), 2);
          std::vector<float> c = Random(static_cast<size_t>(s.m * s.ldc), 3);
          const std::vector<float> c0 = c;
          std::vector<char> scratch((*mm)->scratchpad_bytes() + 1);
          (*mm)->Execute(stream, a.data(), b.data(), c.data(), scratch.data());
          for (int64_t i = 0; i < s.m; ++i) {
            for (int64_t j = 0; j < s.n; ++j) {
              double sum = 0;
              for (int64_t t = 0; t < s.k; ++t) {
                const double av = a_t ? a[t * s.lda + i] : a[i * s.lda + t];
                const double bv = b_t ? b[j * s.ldb + t] : b[t * s.ldb + j];
                sum += av * bv;
              }
              const double want = scale * sum + (accumulate ? c0[i * s.ldc + j] : 0.0);
              // float32 accumulation of k = 33 products of N(0, 1) values.
              EXPECT_NEAR(c[i * s.ldc + j], want, 1e-5 * std::sqrt(33.0) * 4) << i << "," << j;
            }
            // Padding between rows of C is untouched.
            for (int64_t j = s.n; j < s.ldc; ++j) EXPECT_EQ(c[i * s.ldc + j], c0[i * s.ldc + j]);
          }
        }
}

TEST(TileMatmul, CachesOnePrimitivePerShape) {
  MatmulShape s;
  s.m = 5;
  s.n = 6;
  s.k = 7;
  s.lda = 7;
  s.ldb = 6;
  s.ldc = 6;
  auto first = TileMatmul::Get(s);
  auto second = TileMatmul::Get(s);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->get(), second->get());
  s.m = 0;
  EXPECT_EQ(TileMatmul::Get(s).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TileMatmul, NoPrimitiveOfTheAttentionServiceIsAReferenceKernel) {
  // Exercise every path: softmax (plain, causal, padded, bias, weights; F32 and, where the CPU
  // has native bfloat16, BF16) and linear (causal).
  std::vector<ComputePrecision> precisions = {ComputePrecision::kF32};
  if (HasNativeBf16()) precisions.push_back(ComputePrecision::kBF16);
  for (ComputePrecision precision : precisions) {
    for (int64_t len : {1, 13, 300}) {
      Tensor q = Tensor::Zeros({1, 2, len, 16}), k = Tensor::Zeros({1, 1, len + 3, 16}),
             v = Tensor::Zeros({1, 1, len + 3, 8}), bias = Tensor::Zeros({len, len + 3});
      q.values = Random(q.values.size(), 1);
      k.values = Random(k.values.size(), 2);
      v.values = Random(v.values.size(), 3);
      for (int kind = 0; kind < 2; ++kind) {
        if (kind == 1 && precision == ComputePrecision::kBF16) continue;  // LINEAR is F32 only.
        AttentionOptions options;
        options.precision = precision;
        options.kind = kind == 0 ? AttentionKind::kSoftmax : AttentionKind::kLinear;
        options.causal = true;
        options.key_lengths = {len};
        if (kind == 0) {
          options.bias = &bias;
          options.return_weights = true;
        }
        const absl::Status status = Attend(q, k, v, options).status();
        ASSERT_TRUE(status.ok()) << status;
      }
    }
  }
  const std::vector<std::string> impls = TileMatmul::CreatedImplementations();
  ASSERT_FALSE(impls.empty());
  for (const std::string& impl : impls) {
    EXPECT_THAT(impl, ::testing::Not(::testing::StartsWith("ref"))) << "oneDNN fell back to a reference kernel";
  }
  std::printf("oneDNN matmul implementations in use: %s\n", ::testing::PrintToString(impls).c_str());
}

}  // namespace
}  // namespace primserve
