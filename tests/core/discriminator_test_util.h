// Test helpers for core/discriminator.h: random PyTorch-layout layers, and a plain
// double-precision reference of the same network (forward, backward, and H v by a central
// difference of the gradient), written from the header's contract only.
#ifndef PRIMSERVE_TESTS_CORE_DISCRIMINATOR_TEST_UTIL_H_
#define PRIMSERVE_TESTS_CORE_DISCRIMINATOR_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <random>
#include <variant>
#include <vector>

#include "core/discriminator.h"
#include "core/tensor.h"

namespace primserve {
namespace disc_test {

inline int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  return n;
}

inline Tensor MakeTensor(Shape shape, std::vector<float> values) {
  Tensor t;
  t.shape = std::move(shape);
  t.values = std::move(values);
  return t;
}

inline Tensor NormalTensor(Shape shape, std::mt19937& rng, double stddev) {
  Tensor t = Tensor::Zeros(std::move(shape));
  std::normal_distribution<float> dist(0.0f, static_cast<float>(stddev));
  for (float& x : t.values) x = dist(rng);
  return t;
}

// nn.Linear-like: weight N(0, gain^2 / in), bias N(0, 0.1^2).
inline DenseLayer Dense(int64_t out, int64_t in, std::mt19937& rng, double gain = 1.5) {
  return DenseLayer{NormalTensor({out, in}, rng, gain / std::sqrt(static_cast<double>(in))),
                    NormalTensor({out}, rng, 0.1)};
}

inline Conv2dLayer Conv(int64_t out, int64_t in, int64_t kernel, int64_t stride, int64_t padding, std::mt19937& rng,
                        double gain = 1.5) {
  Conv2dLayer conv;
  conv.weight = NormalTensor({out, in, kernel, kernel}, rng, gain / std::sqrt(static_cast<double>(in * kernel * kernel)));
  conv.bias = NormalTensor({out}, rng, 0.1);
  conv.stride = stride;
  conv.padding = padding;
  return conv;
}

inline ActivationLayer Act(ActivationKind kind, double alpha = 0.0) { return ActivationLayer{kind, alpha}; }

// ---------------------------------------------------------------------------------------------
// The double reference, one sample at a time.

inline double ActValue(const ActivationLayer& a, double z) {
  switch (a.kind) {
    case ActivationKind::kRelu: return z > 0 ? z : 0.0;
    case ActivationKind::kLeakyRelu: return z > 0 ? z : a.alpha * z;
    case ActivationKind::kTanh: return std::tanh(z);
    case ActivationKind::kSigmoid: return 1.0 / (1.0 + std::exp(-z));
    case ActivationKind::kElu: return z > 0 ? z : a.alpha * std::expm1(z);
    default: return z;
  }
}

inline double ActSlope(const ActivationLayer& a, double z) {
  switch (a.kind) {
    case ActivationKind::kRelu: return z > 0 ? 1.0 : 0.0;
    case ActivationKind::kLeakyRelu: return z > 0 ? 1.0 : a.alpha;
    case ActivationKind::kTanh: return 1.0 - std::tanh(z) * std::tanh(z);
    case ActivationKind::kSigmoid: {
      const double s = 1.0 / (1.0 + std::exp(-z));
      return s * (1.0 - s);
    }
    case ActivationKind::kElu: return z > 0 ? 1.0 : a.alpha * std::exp(z);
    default: return 1.0;
  }
}

struct RefConvGeometry {
  int64_t c, h, w, o, kh, kw, oh, ow, s, p;
};

inline RefConvGeometry Geometry(const Conv2dLayer& conv, const Shape& in) {
  RefConvGeometry g;
  g.c = in[0], g.h = in[1], g.w = in[2];
  g.o = conv.weight.shape[0], g.kh = conv.weight.shape[2], g.kw = conv.weight.shape[3];
  g.s = conv.stride, g.p = conv.padding;
  g.oh = (g.h + 2 * g.p - g.kh) / g.s + 1;
  g.ow = (g.w + 2 * g.p - g.kw) / g.s + 1;
  return g;
}

// Visits every (output index, input index, weight index) triple of a convolution.
template <typename Fn>
void ForEachConvTap(const RefConvGeometry& g, const Fn& fn) {
  for (int64_t o = 0; o < g.o; ++o)
    for (int64_t y = 0; y < g.oh; ++y)
      for (int64_t x = 0; x < g.ow; ++x)
        for (int64_t c = 0; c < g.c; ++c)
          for (int64_t ky = 0; ky < g.kh; ++ky) {
            const int64_t iy = y * g.s - g.p + ky;
            if (iy < 0 || iy >= g.h) continue;
            for (int64_t kx = 0; kx < g.kw; ++kx) {
              const int64_t ix = x * g.s - g.p + kx;
              if (ix < 0 || ix >= g.w) continue;
              fn((o * g.oh + y) * g.ow + x, (c * g.h + iy) * g.w + ix, ((o * g.c + c) * g.kh + ky) * g.kw + kx);
            }
          }
}

// f(x) for one sample; with `grad`, also grad_x f (backpropagation in double).
inline double RefForward(const Network& net, const std::vector<double>& x, std::vector<double>* grad) {
  std::vector<std::vector<double>> inputs;
  std::vector<Shape> shapes;
  std::vector<double> cur = x;
  Shape shape = net.input_shape;
  for (const Layer& layer : net.layers) {
    inputs.push_back(cur);
    shapes.push_back(shape);
    if (const auto* d = std::get_if<DenseLayer>(&layer)) {
      const int64_t out = d->weight.shape[0], in = d->weight.shape[1];
      std::vector<double> next(static_cast<size_t>(out));
      for (int64_t o = 0; o < out; ++o) {
        double sum = d->bias.values[o];
        for (int64_t i = 0; i < in; ++i) sum += static_cast<double>(d->weight.values[o * in + i]) * cur[i];
        next[o] = sum;
      }
      cur = std::move(next);
      shape = {out};
    } else if (const auto* conv = std::get_if<Conv2dLayer>(&layer)) {
      const RefConvGeometry g = Geometry(*conv, shape);
      std::vector<double> next(static_cast<size_t>(g.o * g.oh * g.ow));
      for (int64_t o = 0; o < g.o; ++o)
        for (int64_t j = 0; j < g.oh * g.ow; ++j) next[o * g.oh * g.ow + j] = conv->bias.values[o];
      ForEachConvTap(g, [&](int64_t out, int64_t in, int64_t w) { next[out] += conv->weight.values[w] * cur[in]; });
      cur = std::move(next);
      shape = {g.o, g.oh, g.ow};
    } else if (const auto* a = std::get_if<ActivationLayer>(&layer)) {
      for (double& v : cur) v = ActValue(*a, v);
    } else {
      shape = {NumElements(shape)};
    }
  }
  const double f = cur[0];
  if (grad == nullptr) return f;
  std::vector<double> delta{1.0};
  for (size_t k = net.layers.size(); k-- > 0;) {
    const Layer& layer = net.layers[k];
    const std::vector<double>& in = inputs[k];
    std::vector<double> prev(in.size(), 0.0);
    if (const auto* d = std::get_if<DenseLayer>(&layer)) {
      const int64_t out = d->weight.shape[0], n_in = d->weight.shape[1];
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < n_in; ++i) prev[i] += static_cast<double>(d->weight.values[o * n_in + i]) * delta[o];
    } else if (const auto* conv = std::get_if<Conv2dLayer>(&layer)) {
      ForEachConvTap(Geometry(*conv, shapes[k]),
                     [&](int64_t out, int64_t i, int64_t w) { prev[i] += conv->weight.values[w] * delta[out]; });
    } else if (const auto* a = std::get_if<ActivationLayer>(&layer)) {
      for (size_t i = 0; i < in.size(); ++i) prev[i] = ActSlope(*a, in[i]) * delta[i];
    } else {
      prev = delta;
    }
    delta = std::move(prev);
  }
  *grad = std::move(delta);
  return f;
}

inline double Norm(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

// f, g = grad f, n = ||g|| and H v (v = g / n) for one sample. H v by a central difference of
// the double gradient along v with step 1e-5: truncation ~1e-10 |g'''|, rounding ~1e-16 |g| / 1e-5.
struct RefSample {
  double f = 0, n = 0;
  std::vector<double> g, hv;
};

inline RefSample RefScore(const Network& net, const std::vector<double>& x, bool hessian) {
  RefSample r;
  r.f = RefForward(net, x, &r.g);
  r.n = Norm(r.g);
  r.hv.assign(x.size(), 0.0);
  if (hessian && r.n > 0) {
    constexpr double h = 1e-5;
    std::vector<double> xp = x, xm = x, gp, gm;
    for (size_t i = 0; i < x.size(); ++i) {
      xp[i] += h * r.g[i] / r.n;
      xm[i] -= h * r.g[i] / r.n;
    }
    RefForward(net, xp, &gp);
    RefForward(net, xm, &gm);
    for (size_t i = 0; i < x.size(); ++i) r.hv[i] = (gp[i] - gm[i]) / (2 * h);
  }
  return r;
}

// f_hat from f and n, written from the header's formulas.
// RefScore of every sample of a batch x [B, input_shape...], with the Hessian term where the
// network is not piecewise linear (as the service computes it).
inline std::vector<RefSample> RefScoreBatch(const Network& net, const Tensor& x) {
  const int64_t size = NumElements(net.input_shape);
  const bool hessian = !IsPiecewiseLinear(net);
  std::vector<RefSample> ref;
  for (int64_t b = 0; b < x.shape[0]; ++b) {
    ref.push_back(RefScore(net, std::vector<double>(x.values.begin() + b * size, x.values.begin() + (b + 1) * size),
                           hessian));
  }
  return ref;
}

inline double RefNormalize(double f, double n, Normalization normalization, double epsilon) {
  switch (normalization) {
    case Normalization::kGradientNorm: return (n + std::fabs(f)) == 0 ? 0.0 : f / (n + std::fabs(f));
    case Normalization::kGran: return f * n / (n * n + epsilon);
    default: return f;
  }
}

// grad f_hat = d f_hat/d f * g + d f_hat/d n * H v (H v = grad n), by the chain rule.
inline std::vector<double> RefNormalizedGradient(const RefSample& r, Normalization normalization, double epsilon) {
  double df = 1.0, dn = 0.0;
  const double f = r.f, n = r.n;
  if (normalization == Normalization::kGradientNorm) {
    const double d = n + std::fabs(f);
    if (d == 0) return std::vector<double>(r.g.size(), 0.0);
    // d/df [f / (n + |f|)] = n / d^2 (both signs); d/dn = -f / d^2.
    df = n / (d * d);
    dn = -f / (d * d);
  } else if (normalization == Normalization::kGran) {
    const double d = n * n + epsilon;
    df = n / d;
    dn = f * (epsilon - n * n) / (d * d);
  }
  std::vector<double> out(r.g.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = df * r.g[i] + (n > 0 ? dn * r.hv[i] : 0.0);
  return out;
}

}  // namespace disc_test
}  // namespace primserve

#endif  // PRIMSERVE_TESTS_CORE_DISCRIMINATOR_TEST_UTIL_H_
