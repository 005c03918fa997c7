// Loads and stores of float vectors from float or bfloat16 memory, two at a time (2W elements)
// or one at a time with a masked tail, and horizontal sums and maxima, for the
// per-instruction-set kernel files (gelu_dropout_kernels.cpp, layer_norm_kernels.cpp,
// softmax_kernels.cpp, attention_kernels.cpp, transpose_kernels.cpp), and the W x W register
// transpose. Include only from files built with CPU_CAPABILITY (model/CMakeLists.txt):
// the functions use that set's instructions, and their internal linkage keeps each set's copy to
// its own object.
#pragma once

#include <ATen/cpu/vec/vec.h>
#include <immintrin.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <tuple>

#if !defined(CPU_CAPABILITY_AVX2) && !defined(CPU_CAPABILITY_AVX512)
#error "vec_io.h is for files built per instruction set: CPU_CAPABILITY_AVX2 or CPU_CAPABILITY_AVX512"
#endif

namespace vit {
namespace CPU_CAPABILITY {
namespace {

using Vec = at::vec::Vectorized<float>;
using BVec = at::vec::Vectorized<c10::BFloat16>;
constexpr int64_t W = Vec::size();
static_assert(BVec::size() == 2 * W, "a bf16 vector holds two float vectors");

// 2W elements at a time, as two float vectors; n < 2W at the end of a row or block, and the
// vectors' lanes past n are zero.
inline void load(const float* p, int64_t n, Vec& a, Vec& b) {
  if (n == 2 * W) {
    a = Vec::loadu(p);
    b = Vec::loadu(p + W);
  } else {
    a = Vec::loadu(p, int(std::min(n, W)));
    b = n > W ? Vec::loadu(p + W, int(n - W)) : Vec(0.0f);
  }
}
inline void load(const c10::BFloat16* p, int64_t n, Vec& a, Vec& b) {
  if (n == 2 * W) {
    std::tie(a, b) = at::vec::convert_bfloat16_float(BVec::loadu(p));
    return;
  }
  // Through a zeroed buffer: ATen's partial bf16 load leaves the lanes past n uninitialised.
  alignas(64) uint16_t tmp[2 * W] = {};
  std::memcpy(tmp, p, size_t(n) * sizeof(uint16_t));
  std::tie(a, b) = at::vec::convert_bfloat16_float(BVec::loadu(tmp));
}
inline void store(float* p, int64_t n, const Vec& a, const Vec& b) {
  if (n == 2 * W) {
    a.store(p);
    b.store(p + W);
  } else {
    a.store(p, int(std::min(n, W)));
    if (n > W) b.store(p + W, int(n - W));
  }
}
inline void store(c10::BFloat16* p, int64_t n, const Vec& a, const Vec& b) {
  at::vec::convert_float_bfloat16(a, b).store(p, int(n));
}

// One vector of n <= W elements, masked (AVX-512 mask registers, AVX2 maskload/maskstore):
// lanes past n are zero, and nothing past n is read or written. ATen's partial loads and
// stores go through a zeroed stack buffer, which costs more than a row of 17 itself; a masked
// store forwards nothing to a load after it.
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

// W x W blocks of floats transposed in registers (attention_kernels.cpp, transpose_kernels.cpp).
#if defined(CPU_CAPABILITY_AVX512)
using Reg = __m512;
inline Reg unpack_lo(Reg a, Reg b) { return _mm512_unpacklo_ps(a, b); }
inline Reg unpack_hi(Reg a, Reg b) { return _mm512_unpackhi_ps(a, b); }
template <int imm>
inline Reg shuffle(Reg a, Reg b) { return _mm512_shuffle_ps(a, b, imm); }
#else
using Reg = __m256;
inline Reg unpack_lo(Reg a, Reg b) { return _mm256_unpacklo_ps(a, b); }
inline Reg unpack_hi(Reg a, Reg b) { return _mm256_unpackhi_ps(a, b); }
template <int imm>
inline Reg shuffle(Reg a, Reg b) { return _mm256_shuffle_ps(a, b, imm); }
#endif

// v[0..W) = the W x W block's columns (v[c] lane r = the block's row r, column c), in place: the
// classic transpose, 4x4 within each 128-bit lane (unpack, shuffle), then the lanes themselves.
inline void transpose_in_registers(Vec (&v)[W]) {
  Reg t[W], r[W];
  for (int i = 0; i < W; ++i) r[i] = v[i];
  for (int i = 0; i < W / 2; ++i) {
    t[2 * i] = unpack_lo(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = unpack_hi(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < W / 4; ++i) {
    r[4 * i] = shuffle<0x44>(t[4 * i], t[4 * i + 2]);
    r[4 * i + 1] = shuffle<0xee>(t[4 * i], t[4 * i + 2]);
    r[4 * i + 2] = shuffle<0x44>(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = shuffle<0xee>(t[4 * i + 1], t[4 * i + 3]);
  }
#if defined(CPU_CAPABILITY_AVX512)
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) {
      t[8 * i + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + j + 4], 0x88);
      t[8 * i + j + 4] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + j + 4], 0xdd);
    }
  for (int j = 0; j < 8; ++j) {
    v[j] = Vec(_mm512_shuffle_f32x4(t[j], t[j + 8], 0x88));
    v[j + 8] = Vec(_mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd));
  }
#else
  for (int j = 0; j < 4; ++j) {
    v[j] = Vec(_mm256_permute2f128_ps(r[j], r[j + 4], 0x20));
    v[j + 4] = Vec(_mm256_permute2f128_ps(r[j], r[j + 4], 0x31));
  }
#endif
}

// dst[c * dst_stride + r] = src[r * stride + c] for the W x W block at src: its first `rows` rows
// (rows <= W; the rest taken as zeros), W columns written, all of them.
template <typename S>
inline void transpose_block(const S* src, int64_t stride, int64_t rows, float* dst, int64_t dst_stride) {
  Vec v[W];
  for (int64_t r = 0; r < W; ++r) v[r] = r < rows ? load(src + r * stride, W) : Vec(0.0f);
  transpose_in_registers(v);
  for (int64_t c = 0; c < W; ++c) v[c].store(dst + c * dst_stride);
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace vit
