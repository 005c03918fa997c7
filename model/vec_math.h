// Inline vector math for the per-instruction-set kernel files (softmax_kernels.cpp,
// gelu_dropout_kernels.cpp): what SLEEF offers through ATen's Vectorized only as a function call
// per vector. Include only from files built with CPU_CAPABILITY (model/CMakeLists.txt), as
// vec_io.h.
#pragma once

#include <ATen/cpu/vec/vec.h>
#include <immintrin.h>

#if !defined(CPU_CAPABILITY_AVX2) && !defined(CPU_CAPABILITY_AVX512)
#error "vec_math.h is for files built per instruction set: CPU_CAPABILITY_AVX2 or CPU_CAPABILITY_AVX512"
#endif

namespace vit {
namespace CPU_CAPABILITY {
namespace {

using Vec = at::vec::Vectorized<float>;  // as in vec_io.h (the same alias may be declared twice)

// Lane-wise maximum without ATen's NaN blend: for a NaN in either operand the result is b's
// lane (the instruction's rule), so vmax(bound, x) keeps a NaN x. (In a softmax's running maximum
// a NaN may be dropped, but that lane's exp is NaN, and so is the row's sum.)
inline Vec vmax(const Vec& a, const Vec& b) {
#if defined(CPU_CAPABILITY_AVX512)
  return Vec(_mm512_max_ps(a, b));
#else
  return Vec(_mm256_max_ps(a, b));
#endif
}

// exp(x) for x <= 0 (a softmax's x - the row's maximum, GELU's -x^2 / 2), inline: Cephes' expf
// (range reduction by n ln 2 in two parts, a degree-5 polynomial, times 2^n), within 2 ulp; 0
// below -86.5 (e^-86.5 = 2.7e-38: no probability or GELU tail sees it), NaN for NaN. SLEEF's exp
// through ATen's Vectorized is a function call per vector: most of the softmax's time on
// fmnist-small's rows of 17, and half of the GELU forward's.
inline Vec exp_nonpositive(const Vec& x) {
  const Vec lo(-86.5f);
  const Vec xc = vmax(lo, x);  // NaN stays NaN: vmax returns its second operand for a NaN
  const Vec n = (xc * Vec(1.44269504088896341f)).round();
  Vec r = at::vec::fmadd(n, Vec(-0.693359375f), xc);
  r = at::vec::fmadd(n, Vec(2.12194440e-4f), r);
  Vec y(1.9875691500e-4f);
  y = at::vec::fmadd(y, r, Vec(1.3981999507e-3f));
  y = at::vec::fmadd(y, r, Vec(8.3334519073e-3f));
  y = at::vec::fmadd(y, r, Vec(4.1665795894e-2f));
  y = at::vec::fmadd(y, r, Vec(1.6666665459e-1f));
  y = at::vec::fmadd(y, r, Vec(5.0000001201e-1f));
  y = at::vec::fmadd(y, r * r, r + Vec(1.0f));
#if defined(CPU_CAPABILITY_AVX512)
  y = Vec(_mm512_scalef_ps(y, n));
  return Vec(_mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ), y));
#else
  // 2^n into the exponent: n >= -125 here and y >= 0.7, so the result stays a normal float.
  const __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
  y = Vec(_mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(y), e)));
  return Vec(_mm256_and_ps(y, _mm256_cmp_ps(x, lo, _CMP_NLT_UQ)));
#endif
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace vit
