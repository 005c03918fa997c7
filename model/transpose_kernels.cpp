// See transpose_kernels.h. Built with CPU_CAPABILITY=AVX2 or AVX512 (and the matching -m flags);
// nothing here may be called on a CPU without that instruction set.
#include "transpose_kernels.h"

#include "vec_io.h"

#if !defined(CPU_CAPABILITY_AVX2) && !defined(CPU_CAPABILITY_AVX512)
#error "transpose_kernels.cpp is built per instruction set: CPU_CAPABILITY_AVX2 or CPU_CAPABILITY_AVX512"
#endif

namespace vit {
namespace CPU_CAPABILITY {

// Whole W x W blocks in registers (the last block of rows would write past dst's rows, so it and
// the last columns go element by element).
void transpose_to_float(const c10::BFloat16* src, int64_t rows, int64_t cols, float* dst) {
  int64_t r0 = 0;
  for (; r0 + W <= rows; r0 += W) {
    int64_t c0 = 0;
    for (; c0 + W <= cols; c0 += W) transpose_block(src + r0 * cols + c0, cols, W, dst + c0 * rows + r0, rows);
    for (; c0 < cols; ++c0)
      for (int64_t r = r0; r < r0 + W; ++r) dst[c0 * rows + r] = float(src[r * cols + c0]);
  }
  for (; r0 < rows; ++r0)
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r0] = float(src[r0 * cols + c]);
}

// n contiguous values from S to D, 2W at a time (vec_io.h's loads and stores do the conversion).
template <class S, class D>
void convert_contiguous(const S* src, int64_t n, D* dst) {
  Vec a, b;
  for (int64_t i = 0; i < n; i += 2 * W) {
    const int64_t k = std::min<int64_t>(2 * W, n - i);
    load(src + i, k, a, b);
    store(dst + i, k, a, b);
  }
}

void widen_to_float(const c10::BFloat16* src, int64_t n, float* dst) { convert_contiguous(src, n, dst); }
void round_to_bf16(const float* src, int64_t n, c10::BFloat16* dst) { convert_contiguous(src, n, dst); }

}  // namespace CPU_CAPABILITY
}  // namespace vit
