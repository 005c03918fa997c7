// A dropout mask's multipliers drawn a vector at a time, for the per-instruction-set kernel files
// (gelu_dropout_kernels.cpp, attention_kernels.cpp): the streams of dropout_stream.h, the same
// numbers as dropout_mask() makes. Include only from files built with CPU_CAPABILITY
// (model/CMakeLists.txt).
//
// One 64-bit draw decides two elements (bits 0-23 and 32-55), so a vector of W/2 draws, seen as
// W 32-bit lanes, holds W elements' numbers in element order (little-endian): masked to 24 bits
// and compared with the threshold they are the multipliers of a float vector. splitmix64's two
// 64-bit multiplies are one instruction each with AVX-512 DQ and three 32-bit ones with AVX2.
// Written as a plain loop the compiler vectorised the same draws at ~2.1 ns each on an AMD EPYC
// (Zen 3, AVX2); these intrinsics take ~1.2 ns (a scratch program drawing keras-cifar's attention
// masks, 128 x 4 x 145 rows of 145: 9.0-11.6 against 6.1-6.6 ms).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "dropout_stream.h"
#include "vec_io.h"

#if !defined(CPU_CAPABILITY_AVX2) && !defined(CPU_CAPABILITY_AVX512)
#error "dropout_draws.h is for files built per instruction set: CPU_CAPABILITY_AVX2 or CPU_CAPABILITY_AVX512"
#endif

namespace vit {
namespace CPU_CAPABILITY {
namespace {

#ifdef CPU_CAPABILITY_AVX512
using DrawVec = __m512i;
inline DrawVec draws_at(uint64_t x0, uint64_t step) {
  return _mm512_add_epi64(_mm512_set1_epi64(int64_t(x0)),
                          _mm512_mullo_epi64(_mm512_set1_epi64(int64_t(step)),
                                             _mm512_setr_epi64(1, 2, 3, 4, 5, 6, 7, 8)));
}
inline DrawVec add64(DrawVec a, DrawVec b) { return _mm512_add_epi64(a, b); }
inline DrawVec splat64(uint64_t x) { return _mm512_set1_epi64(int64_t(x)); }
inline DrawVec mix(DrawVec z) {
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), splat64(0xbf58476d1ce4e5b9ULL));
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), splat64(0x94d049bb133111ebULL));
  return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}
// The multipliers of the W elements whose numbers are the draws z.
inline Vec multipliers(DrawVec z, int32_t threshold, const Vec& scale) {
  const __m512i bits = _mm512_and_si512(mix(z), _mm512_set1_epi32(0xffffff));
  return _mm512_maskz_mov_ps(_mm512_cmpge_epi32_mask(bits, _mm512_set1_epi32(threshold)), scale);
}
#else
using DrawVec = __m256i;
inline DrawVec draws_at(uint64_t x0, uint64_t step) {
  return _mm256_setr_epi64x(int64_t(x0 + step), int64_t(x0 + 2 * step), int64_t(x0 + 3 * step),
                            int64_t(x0 + 4 * step));
}
inline DrawVec add64(DrawVec a, DrawVec b) { return _mm256_add_epi64(a, b); }
inline DrawVec splat64(uint64_t x) { return _mm256_set1_epi64x(int64_t(x)); }
// The low 64 bits of a * c: three 32 x 32 -> 64-bit products.
inline DrawVec mul64(DrawVec a, uint64_t c) {
  const __m256i c_lo = _mm256_set1_epi64x(int64_t(c & 0xffffffffu)), c_hi = _mm256_set1_epi64x(int64_t(c >> 32));
  const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), c_lo), _mm256_mul_epu32(a, c_hi));
  return _mm256_add_epi64(_mm256_mul_epu32(a, c_lo), _mm256_slli_epi64(cross, 32));
}
inline DrawVec mix(DrawVec z) {
  z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), 0xbf58476d1ce4e5b9ULL);
  z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), 0x94d049bb133111ebULL);
  return _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));
}
inline Vec multipliers(DrawVec z, int32_t threshold, const Vec& scale) {
  const __m256i bits = _mm256_and_si256(mix(z), _mm256_set1_epi32(0xffffff));
  const __m256i keep = _mm256_cmpgt_epi32(bits, _mm256_set1_epi32(threshold - 1));  // 24-bit: no sign
  return _mm256_and_ps(_mm256_castsi256_ps(keep), scale);
}
#endif

// out[0 .. 2 * draws) = the multipliers (0 or scale) of the elements that draws first, first + 1,
// ..., first + draws - 1 of chunk `chunk`'s stream decide (elements 2 * first ... of the chunk),
// written in whole vectors: out needs room for 2 * draws rounded up to a multiple of W.
inline void mask_multipliers(uint64_t seed, int64_t chunk, int64_t first, int64_t draws, uint32_t threshold,
                             float scale, float* out) {
  constexpr int64_t kDraws = W / 2;  // per vector
  DrawVec z = draws_at(dropout_chunk_start(seed, chunk) + uint64_t(first) * kGolden, kGolden);
  const DrawVec step = splat64(uint64_t(kDraws) * kGolden);
  const Vec vscale(scale);
  for (int64_t k = 0; k < draws; k += kDraws) {
    multipliers(z, int32_t(threshold), vscale).store(out + 2 * k);
    z = add64(z, step);
  }
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace vit
