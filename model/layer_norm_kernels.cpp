// See layer_norm_kernels.h. Built with CPU_CAPABILITY=AVX2 or AVX512 (and the matching -m flags);
// nothing here may be called on a CPU without that instruction set.
#include "layer_norm_kernels.h"

#include <cmath>

#include <ATen/cpu/vec/functional.h>

#include "vec_io.h"

namespace vit {
namespace CPU_CAPABILITY {

namespace {

// f(j, n) for the columns j .. j + n - 1 of a row, two vectors (n <= 2W) at a time.
template <typename F>
inline void for_columns(int64_t C, F&& f) {
  for (int64_t j = 0; j < C; j += 2 * W) f(j, std::min(2 * W, C - j));
}

inline float sum_of(const Vec& v) {
  return at::vec::vec_reduce_all<float>([](Vec& p, Vec& q) { return p + q; }, v);
}

// The lanes past n (of 2W) set to zero, for sums of values that are not zero there.
inline void clear_tail(int64_t n, Vec& u, Vec& v) {
  if (n == 2 * W) return;
  u = Vec::set(Vec(0.0f), u, std::min(n, W));
  v = n > W ? Vec::set(Vec(0.0f), v, n - W) : Vec(0.0f);
}

// The scale and shift of columns j .. j + n - 1 (1 and 0 for none).
inline void affine(const LayerNormArgs& a, int64_t j, int64_t n, Vec& w0, Vec& w1, Vec& b0, Vec& b1) {
  if (a.w) load(a.w + j, n, w0, w1); else w0 = w1 = Vec(1.0f);
  if (a.b) load(a.b + j, n, b0, b1); else b0 = b1 = Vec(0.0f);
}

template <typename TX, typename TY>
void forward_impl(const TX* x, TY* y, float* mean, float* rstd, int64_t r0, int64_t r1, const LayerNormArgs& a) {
  const int64_t C = a.C;
  for (int64_t r = r0; r < r1; ++r) {
    const TX* xr = x + r * C;
    TY* yr = y + r * C;
    Vec s(0.0f);  // lanes past C load as zero
    for_columns(C, [&](int64_t j, int64_t n) {
      Vec u, v;
      load(xr + j, n, u, v);
      s = s + u + v;
    });
    const float mu = sum_of(s) / float(C);
    Vec q(0.0f);
    for_columns(C, [&](int64_t j, int64_t n) {
      Vec u, v;
      load(xr + j, n, u, v);
      u = u - Vec(mu);
      v = v - Vec(mu);
      clear_tail(n, u, v);
      q = at::vec::fmadd(u, u, at::vec::fmadd(v, v, q));
    });
    const float rs = 1.0f / std::sqrt(sum_of(q) / float(C) + a.eps);
    mean[r] = mu;
    rstd[r] = rs;
    for_columns(C, [&](int64_t j, int64_t n) {
      Vec u, v, w0, w1, b0, b1;
      load(xr + j, n, u, v);
      affine(a, j, n, w0, w1, b0, b1);
      u = at::vec::fmadd((u - Vec(mu)) * Vec(rs), w0, b0);
      v = at::vec::fmadd((v - Vec(mu)) * Vec(rs), w1, b1);
      store(yr + j, n, u, v);
    });
  }
}

template <typename TD, typename TX>
void backward_impl(const TD* dy, const TX* x, const TX* dr, const float* mean, const float* rstd, TX* dx,
                   float* dw, float* db, int64_t r0, int64_t r1, const LayerNormArgs& a) {
  const int64_t C = a.C;
  for (int64_t r = r0; r < r1; ++r) {
    const TD* dyr = dy + r * C;
    const TX* xr = x + r * C;
    const Vec mu(mean[r]), rs(rstd[r]);
    // Sums of g and g * xhat (dy is zero past C, so both are too).
    Vec sg(0.0f), sgx(0.0f);
    for_columns(C, [&](int64_t j, int64_t n) {
      Vec d0, d1, x0, x1, w0, w1;
      load(dyr + j, n, d0, d1);
      load(xr + j, n, x0, x1);
      if (a.w) load(a.w + j, n, w0, w1); else w0 = w1 = Vec(1.0f);
      const Vec g0 = d0 * w0, g1 = d1 * w1;
      sg = sg + g0 + g1;
      sgx = at::vec::fmadd(g0, (x0 - mu) * rs, at::vec::fmadd(g1, (x1 - mu) * rs, sgx));
      if (dw || db) {  // this row's share of the parameters' gradients
        Vec p0, p1;
        if (dw) {
          load(dw + j, n, p0, p1);
          store(dw + j, n, at::vec::fmadd(d0, (x0 - mu) * rs, p0), at::vec::fmadd(d1, (x1 - mu) * rs, p1));
        }
        if (db) {
          load(db + j, n, p0, p1);
          store(db + j, n, p0 + d0, p1 + d1);
        }
      }
    });
    const Vec mg(sum_of(sg) / float(C)), mgx(sum_of(sgx) / float(C));
    for_columns(C, [&](int64_t j, int64_t n) {
      Vec d0, d1, x0, x1, w0, w1;
      load(dyr + j, n, d0, d1);
      load(xr + j, n, x0, x1);
      if (a.w) load(a.w + j, n, w0, w1); else w0 = w1 = Vec(1.0f);
      Vec u = rs * (d0 * w0 - mg - (x0 - mu) * rs * mgx);
      Vec v = rs * (d1 * w1 - mg - (x1 - mu) * rs * mgx);
      if (dr) {
        Vec e0, e1;
        load(dr + r * C + j, n, e0, e1);
        u = u + e0;
        v = v + e1;
      }
      store(dx + r * C + j, n, u, v);
    });
  }
}

}  // namespace

using c10::BFloat16;

void layer_norm_forward(const float* x, float* y, float* mean, float* rstd, int64_t r0, int64_t r1,
                        const LayerNormArgs& a) {
  forward_impl(x, y, mean, rstd, r0, r1, a);
}
void layer_norm_forward(const float* x, BFloat16* y, float* mean, float* rstd, int64_t r0, int64_t r1,
                        const LayerNormArgs& a) {
  forward_impl(x, y, mean, rstd, r0, r1, a);
}
void layer_norm_forward(const BFloat16* x, BFloat16* y, float* mean, float* rstd, int64_t r0, int64_t r1,
                        const LayerNormArgs& a) {
  forward_impl(x, y, mean, rstd, r0, r1, a);
}
void layer_norm_backward(const float* dy, const float* x, const float* dr, const float* mean, const float* rstd,
                         float* dx, float* dw, float* db, int64_t r0, int64_t r1, const LayerNormArgs& a) {
  backward_impl(dy, x, dr, mean, rstd, dx, dw, db, r0, r1, a);
}
void layer_norm_backward(const BFloat16* dy, const float* x, const float* dr, const float* mean,
                         const float* rstd, float* dx, float* dw, float* db, int64_t r0, int64_t r1,
                         const LayerNormArgs& a) {
  backward_impl(dy, x, dr, mean, rstd, dx, dw, db, r0, r1, a);
}
void layer_norm_backward(const BFloat16* dy, const BFloat16* x, const BFloat16* dr, const float* mean,
                         const float* rstd, BFloat16* dx, float* dw, float* db, int64_t r0, int64_t r1,
                         const LayerNormArgs& a) {
  backward_impl(dy, x, dr, mean, rstd, dx, dw, db, r0, r1, a);
}

}  // namespace CPU_CAPABILITY
}  // namespace vit
