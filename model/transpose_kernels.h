// A matrix transposed and widened to float, for the weight gradients of linear layers
// (onednn_linear.cpp): dW = dy^T x sums over the rows of dy and x, and oneDNN's float matmul ran
// that product at ~100 GFLOP/s on keras-cifar's shapes with dy^T read through strides, against
// ~150 with dy^T as plain rows (Intel Xeon model 207, 1 thread; README, Speed on any x86 CPU).
// Compiled once per instruction set like attention_kernels.h (model/CMakeLists.txt: built with
// AVX2 flags into vit::AVX2 and with AVX-512 flags into vit::AVX512).
//
// transpose_to_float: dst[c * rows + r] = src[r * cols + c] as float, for r < rows, c < cols (src
// rows of cols bfloat16 values, dst rows of rows floats; widening is exact). W x W blocks
// transposed in registers, the edges element by element.
//
// widen_to_float / round_to_bf16: n contiguous values bf16 -> float (exact) and float -> bf16
// (rounded to nearest even, NaN to 0x7fc0: c10::BFloat16's conversion), for the same layers' blocks.
// oneDNN 2.6 has jit reorders for these only with AVX-512; on an AVX2 CPU (AMD EPYC family 25) its
// reference reorder converted ~20 M values/s and a ViT-B/16 bf16 forward spent 84% of its time there.
#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>

namespace vit {

#define VIT_TRANSPOSE_KERNELS \
  void transpose_to_float(const c10::BFloat16* src, int64_t rows, int64_t cols, float* dst); \
  void widen_to_float(const c10::BFloat16* src, int64_t n, float* dst);                        \
  void round_to_bf16(const float* src, int64_t n, c10::BFloat16* dst);

namespace AVX2 { VIT_TRANSPOSE_KERNELS }
namespace AVX512 { VIT_TRANSPOSE_KERNELS }

}  // namespace vit
