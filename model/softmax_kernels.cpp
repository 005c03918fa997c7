// See softmax_kernels.h. Built with CPU_CAPABILITY=AVX2 or AVX512 (and the matching -m flags);
// nothing here may be called on a CPU without that instruction set.
//
// One vector at a time, with masked loads and stores for a row's last, partial vector (ATen's
// partial loads go through a zeroed stack buffer, which costs more than the row itself when rows
// are 17 long); rows of up to 4 vectors stay in registers (a masked store forwards nothing to the
// load after it).
#include "softmax_kernels.h"

#include <ATen/cpu/vec/vec.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "vec_math.h"

#if !defined(CPU_CAPABILITY_AVX2) && !defined(CPU_CAPABILITY_AVX512)
#error "softmax_kernels.cpp is built per instruction set: CPU_CAPABILITY_AVX2 or CPU_CAPABILITY_AVX512"
#endif

namespace vit {
namespace CPU_CAPABILITY {

namespace {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t W = Vec::size();

#if defined(CPU_CAPABILITY_AVX512)
inline __mmask16 first(int64_t n) { return __mmask16((1u << n) - 1); }

// n <= W elements; lanes past n are zero, and nothing past n is read or written.
inline Vec load(const float* p, int64_t n) {
  return n == W ? Vec(_mm512_loadu_ps(p)) : Vec(_mm512_maskz_loadu_ps(first(n), p));
}
inline Vec load(const c10::BFloat16* p, int64_t n) {
  const __m256i h = n == W ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                           : _mm256_maskz_loadu_epi16(first(n), p);
  return Vec(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
}
inline void store(float* p, int64_t n, const Vec& v) {
  if (n == W) _mm512_storeu_ps(p, v);
  else _mm512_mask_storeu_ps(p, first(n), v);
}
// Rounded to nearest even, NaN to the quiet NaN 0x7fc0: c10::BFloat16's conversion.
inline void store(c10::BFloat16* p, int64_t n, const Vec& v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i hi = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  hi = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), hi, _mm512_set1_epi32(0x7fc0));
  _mm256_mask_storeu_epi16(p, first(n), _mm512_cvtepi32_epi16(hi));
}
inline float lanes_sum(const Vec& v) { return _mm512_reduce_add_ps(v); }
inline float lanes_max(const Vec& v) { return _mm512_reduce_max_ps(v); }
#else
inline __m256i first(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline Vec load(const float* p, int64_t n) {
  return n == W ? Vec(_mm256_loadu_ps(p)) : Vec(_mm256_maskload_ps(p, first(n)));
}
inline Vec load(const c10::BFloat16* p, int64_t n) {
  __m128i h;
  if (n == W) {
    h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  } else {
    alignas(16) uint16_t tmp[W] = {};
    std::memcpy(tmp, p, size_t(n) * sizeof(uint16_t));
    h = _mm_load_si128(reinterpret_cast<const __m128i*>(tmp));
  }
  return Vec(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
}
inline void store(float* p, int64_t n, const Vec& v) {
  if (n == W) _mm256_storeu_ps(p, v);
  else _mm256_maskstore_ps(p, first(n), v);
}
inline void store(c10::BFloat16* p, int64_t n, const Vec& v) {
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  __m256i hi = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  hi = _mm256_blendv_epi8(hi, _mm256_set1_epi32(0x7fc0), _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
  const __m128i packed = _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(hi, hi), 0xd8));
  if (n == W) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
  } else {
    alignas(16) uint16_t tmp[W];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), packed);
    std::memcpy(p, tmp, size_t(n) * sizeof(uint16_t));
  }
}
inline float lanes_sum(const Vec& v) {
  const __m256 x = v;
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
inline float lanes_max(const Vec& v) {
  const __m256 x = v;
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}
#endif

// The first n lanes of v, `fill` in the others.
inline Vec keep_first(int64_t n, const Vec& fill, const Vec& v) {
  if (n == W) return v;
#if defined(CPU_CAPABILITY_AVX512)
  return Vec(_mm512_mask_blend_ps(first(n), fill, v));
#else
  return Vec(_mm256_blendv_ps(fill, v, _mm256_castsi256_ps(first(n))));
#endif
}

// Rows of at most NV vectors (cols in ((NV - 1) W, NV W]), R rows at a time: each row stays in
// registers from its load to its store (nothing is written to `s`), and the R rows' reductions,
// exps and divisions are independent, so their latencies overlap.
template <int NV, int R, typename T>
inline void rows_in_registers(const float* x, int64_t cols, T* y) {
  const Vec lowest(-std::numeric_limits<float>::infinity()), zero(0.0f);
  const int64_t tail = cols - (NV - 1) * W;
  Vec v[R][NV], row_max[R], sum[R];
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < NV; ++i) v[r][i] = load(x + r * cols + i * W, i == NV - 1 ? tail : W);
    v[r][NV - 1] = keep_first(tail, lowest, v[r][NV - 1]);
    Vec m = v[r][0];
    for (int i = 1; i < NV; ++i) m = vmax(m, v[r][i]);
    row_max[r] = Vec(lanes_max(m));
  }
  for (int r = 0; r < R; ++r) {
    sum[r] = zero;
    for (int i = 0; i < NV; ++i) {
      v[r][i] = exp_nonpositive(v[r][i] - row_max[r]);  // the -inf past the row's end gives 0
      sum[r] = sum[r] + v[r][i];
    }
  }
  for (int r = 0; r < R; ++r) {
    const Vec inv(1.0f / lanes_sum(sum[r]));
    for (int i = 0; i < NV; ++i) store(y + r * cols + i * W, i == NV - 1 ? tail : W, v[r][i] * inv);
  }
}

template <int NV, typename T>
void forward_short(const float* s, int64_t rows, int64_t cols, T* p) {
  constexpr int R = NV <= 2 ? 4 : 2;
  int64_t r = 0;
  for (; r + R <= rows; r += R) rows_in_registers<NV, R>(s + r * cols, cols, p + r * cols);
  for (; r < rows; ++r) rows_in_registers<NV, 1>(s + r * cols, cols, p + r * cols);
}

// Longer rows: three passes, exp(x - max) kept in `s` between the second and the third.
template <typename T>
void forward_long(float* s, int64_t rows, int64_t cols, T* p) {
  const Vec lowest(-std::numeric_limits<float>::infinity()), zero(0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float* x = s + r * cols;
    T* y = p + r * cols;
    Vec m = lowest;
    for (int64_t c = 0; c < cols; c += W) {
      const int64_t n = std::min(W, cols - c);
      m = vmax(m, keep_first(n, lowest, load(x + c, n)));
    }
    const Vec row_max(lanes_max(m));
    Vec sum = zero;
    for (int64_t c = 0; c < cols; c += W) {
      const int64_t n = std::min(W, cols - c);
      const Vec e = keep_first(n, zero, exp_nonpositive(load(x + c, n) - row_max));
      sum = sum + e;
      store(x + c, n, e);
    }
    const Vec inv(1.0f / lanes_sum(sum));
    for (int64_t c = 0; c < cols; c += W) {
      const int64_t n = std::min(W, cols - c);
      store(y + c, n, load(x + c, n) * inv);
    }
  }
}

template <typename T>
void forward(float* s, int64_t rows, int64_t cols, T* p) {
  if (cols <= 0) return;
  switch ((cols + W - 1) / W) {
    case 1: return forward_short<1>(s, rows, cols, p);
    case 2: return forward_short<2>(s, rows, cols, p);
    case 3: return forward_short<3>(s, rows, cols, p);
    case 4: return forward_short<4>(s, rows, cols, p);
    default: return forward_long(s, rows, cols, p);
  }
}

template <typename T>
void backward(const T* p, const T* dp, int64_t rows, int64_t cols, T* ds) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* pr = p + r * cols;
    const T* dr = dp + r * cols;
    Vec dot(0.0f);
    for (int64_t c = 0; c < cols; c += W) {
      const int64_t n = std::min(W, cols - c);
      dot = at::vec::fmadd(load(pr + c, n), load(dr + c, n), dot);  // lanes past n are zero
    }
    const Vec total(lanes_sum(dot));
    for (int64_t c = 0; c < cols; c += W) {
      const int64_t n = std::min(W, cols - c);
      store(ds + r * cols + c, n, load(pr + c, n) * (load(dr + c, n) - total));
    }
  }
}

}  // namespace

void softmax_rows(float* s, int64_t rows, int64_t cols, float* p) { forward(s, rows, cols, p); }
void softmax_rows(float* s, int64_t rows, int64_t cols, c10::BFloat16* p) { forward(s, rows, cols, p); }
void softmax_backward_rows(const float* p, const float* dp, int64_t rows, int64_t cols, float* ds) {
  backward(p, dp, rows, cols, ds);
}
void softmax_backward_rows(const c10::BFloat16* p, const c10::BFloat16* dp, int64_t rows, int64_t cols,
                           c10::BFloat16* ds) {
  backward(p, dp, rows, cols, ds);
}

}  // namespace CPU_CAPABILITY
}  // namespace vit
