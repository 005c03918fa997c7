// See gelu_dropout_kernels.h. Built with CPU_CAPABILITY=AVX2 or AVX512 (and the matching -m
// flags); nothing here may be called on a CPU without that instruction set.
#include "gelu_dropout_kernels.h"

#include <algorithm>

#include "dropout_draws.h"
#include "vec_io.h"
#include "vec_math.h"

#if !defined(CPU_CAPABILITY_AVX2) && !defined(CPU_CAPABILITY_AVX512)
#error "gelu_dropout_kernels.cpp is built per instruction set: CPU_CAPABILITY_AVX2 or CPU_CAPABILITY_AVX512"
#endif

namespace vit {
namespace CPU_CAPABILITY {

namespace {

static_assert(kDropoutChunk % kGeluDropoutBlock == 0, "blocks never straddle a mask chunk");

// The multipliers (0 or scale) of elements [i0, i0 + n) of the mask, n <= kGeluDropoutBlock, i0 a
// multiple of it (dropout_draws.h), then 0 up to the next two vectors.
void fill_mask(float* m, int64_t i0, int64_t n, const GeluDropoutArgs& a) {
  const int64_t chunk = i0 / kDropoutChunk;
  mask_multipliers(a.seed, chunk, (i0 - chunk * kDropoutChunk) / 2, (n + 1) / 2, a.threshold, a.scale, m);
  for (int64_t i = n; i % (2 * W) != 0; ++i) m[i] = 0.0f;  // the last vectors' unused lanes
}

// GELU, x * Phi(x), and its derivative Phi(x) + x * phi(x), for the normal CDF Phi and density phi.
// Phi from erfc by Abramowitz & Stegun 7.1.26, the approximation oneDNN's GELU (and with it
// LibTorch's at::gelu on the CPU) uses: erfc(z) = t (a1 + t (a2 + ... + t a5)) exp(-z^2) with
// t = 1 / (1 + p z), z >= 0, absolute error <= 1.5e-7. SLEEF's erf ran at 1.75 ns per element
// here (AMD EPYC Zen 5), three times the whole GELU. Unlike oneDNN we take Phi(x) for x < 0 as
// erfc(|x| / sqrt 2) / 2 directly, not as 1 - (1 - erfc), which loses the small values to
// cancellation. exp(-x^2 / 2) is shared by Phi and phi. (Constants are made in the functions: a
// namespace-scope Vec would run AVX code at program start on any CPU.)
struct Cdf {
  Vec cdf;  // Phi(x)
  Vec e;    // exp(-x^2 / 2)
};
inline Cdf normal_cdf(const Vec& x) {
  const Vec z = x.abs() * Vec(float(M_SQRT1_2));
  const Vec t = Vec(1.0f) / (Vec(1.0f) + Vec(0.3275911f) * z);
  Vec poly = Vec(1.061405429f);
  poly = at::vec::fmadd(poly, t, Vec(-1.453152027f));
  poly = at::vec::fmadd(poly, t, Vec(1.421413741f));
  poly = at::vec::fmadd(poly, t, Vec(-0.284496736f));
  poly = at::vec::fmadd(poly, t, Vec(0.254829592f));
  const Vec e = exp_nonpositive(x * x * Vec(-0.5f));  // inline (vec_math.h), not SLEEF's call
  const Vec tail = Vec(0.5f) * poly * t * e;  // Phi(-|x|) = erfc(|x| / sqrt 2) / 2
  return {Vec::blendv(tail, Vec(1.0f) - tail, x >= Vec(0.0f)), e};
}
inline Vec gelu(const Vec& x) { return x * normal_cdf(x).cdf; }
inline Vec gelu_grad(const Vec& x, const Cdf& c) {
  return at::vec::fmadd(x * Vec(float(0.5 * M_2_SQRTPI * M_SQRT1_2)), c.e, c.cdf);  // Phi + x phi
}
inline Vec gelu_grad(const Vec& x) { return gelu_grad(x, normal_cdf(x)); }

// Walks elements [lo, hi) two vectors at a time: f(i, n, mask) for elements i .. i + n - 1
// (n <= 2W), `mask` their dropout multipliers (null without dropout), drawn a block at a time.
template <typename F>
void walk(int64_t lo, int64_t hi, const GeluDropoutArgs& a, F&& f) {
  alignas(64) float m[kGeluDropoutBlock];
  for (int64_t b0 = lo; b0 < hi; b0 += kGeluDropoutBlock) {
    const int64_t bn = std::min(kGeluDropoutBlock, hi - b0);
    if (a.dropout) fill_mask(m, b0, bn, a);
    for (int64_t i = 0; i < bn; i += 2 * W) f(b0 + i, std::min(2 * W, bn - i), a.dropout ? m + i : nullptr);
  }
}

inline void apply_mask(Vec& u, Vec& v, const float* mask) {
  if (!mask) return;
  u = u * Vec::loadu(mask);
  v = v * Vec::loadu(mask + W);
}

// g (when not null): gelu'(x) as well, the same float values backward_impl computes from x.
template <typename TX, typename TY>
void forward_impl(const TX* x, const TY* r, TY* y, float* g, int64_t lo, int64_t hi, const GeluDropoutArgs& a) {
  walk(lo, hi, a, [&](int64_t i, int64_t n, const float* mask) {
    Vec u, v;
    load(x + i, n, u, v);
    if (a.gelu && g) {
      const Cdf cu = normal_cdf(u), cv = normal_cdf(v);
      store(g + i, n, gelu_grad(u, cu), gelu_grad(v, cv));
      u = u * cu.cdf;
      v = v * cv.cdf;
    } else if (a.gelu) {
      u = gelu(u);
      v = gelu(v);
    }
    apply_mask(u, v, mask);
    if (r) {
      Vec p, q;
      load(r + i, n, p, q);
      u = p + u;
      v = q + v;
    }
    store(y + i, n, u, v);
  });
}

template <typename TD, typename TX>
void backward_impl(const TD* dy, const TX* x, TX* dx, int64_t lo, int64_t hi, const GeluDropoutArgs& a) {
  walk(lo, hi, a, [&](int64_t i, int64_t n, const float* mask) {
    Vec u, v;
    load(dy + i, n, u, v);
    if (a.gelu) {
      Vec p, q;
      load(x + i, n, p, q);
      u = u * gelu_grad(p);
      v = v * gelu_grad(q);
    }
    apply_mask(u, v, mask);
    store(dx + i, n, u, v);
  });
}

// dx = dy * m * g, with g = gelu'(x) saved by the forward pass.
void backward_saved_impl(const float* dy, const float* g, float* dx, int64_t lo, int64_t hi, const GeluDropoutArgs& a) {
  walk(lo, hi, a, [&](int64_t i, int64_t n, const float* mask) {
    Vec u, v, p, q;
    load(dy + i, n, u, v);
    load(g + i, n, p, q);
    u = u * p;
    v = v * q;
    apply_mask(u, v, mask);
    store(dx + i, n, u, v);
  });
}

}  // namespace

using c10::BFloat16;

void forward(const float* x, const float* r, float* y, int64_t lo, int64_t hi, const GeluDropoutArgs& a) {
  forward_impl(x, r, y, nullptr, lo, hi, a);
}
void forward(const BFloat16* x, const BFloat16* r, BFloat16* y, int64_t lo, int64_t hi, const GeluDropoutArgs& a) {
  forward_impl(x, r, y, nullptr, lo, hi, a);
}
void forward(const BFloat16* x, const float* r, float* y, int64_t lo, int64_t hi, const GeluDropoutArgs& a) {
  forward_impl(x, r, y, nullptr, lo, hi, a);
}
void forward(const float* x, const float* r, float* y, float* g, int64_t lo, int64_t hi,
             const GeluDropoutArgs& a) {
  forward_impl(x, r, y, g, lo, hi, a);
}
void backward_saved(const float* dy, const float* g, float* dx, int64_t lo, int64_t hi, const GeluDropoutArgs& a) {
  backward_saved_impl(dy, g, dx, lo, hi, a);
}
void backward(const float* dy, const float* x, float* dx, int64_t lo, int64_t hi, const GeluDropoutArgs& a) {
  backward_impl(dy, x, dx, lo, hi, a);
}
void backward(const BFloat16* dy, const BFloat16* x, BFloat16* dx, int64_t lo, int64_t hi, const GeluDropoutArgs& a) {
  backward_impl(dy, x, dx, lo, hi, a);
}
void backward(const float* dy, const BFloat16* x, BFloat16* dx, int64_t lo, int64_t hi, const GeluDropoutArgs& a) {
  backward_impl(dy, x, dx, lo, hi, a);
}

}  // namespace CPU_CAPABILITY
}  // namespace vit
