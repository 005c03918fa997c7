// Loads and stores of two float vectors (2W elements) from float or bfloat16 memory, with a short
// tail, for the per-instruction-set kernel files (gelu_dropout_kernels.cpp,
// layer_norm_kernels.cpp). Include only from files built with CPU_CAPABILITY (model/CMakeLists.txt):
// the functions use that set's instructions, and their internal linkage keeps each set's copy to
// its own object.
#pragma once

#include <ATen/cpu/vec/vec.h>
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

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace vit
