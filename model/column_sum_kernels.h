// The loops behind column_sums.h, compiled once per instruction set like gelu_dropout_kernels.h
// (model/CMakeLists.txt): column_sum_kernels.cpp is built with AVX2 flags into vit::AVX2 and with
// AVX-512 flags into vit::AVX512, and column_sums.cpp calls the set the CPU runs.
#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>

namespace vit {

// out[c] = sum over r of x[r * cols + c] for the columns [c0, c1), in float, adding the rows in
// order (so a column's sum does not depend on how the columns are split); c0 a multiple of
// kColumnSumBlock.
constexpr int64_t kColumnSumBlock = 256;

#define VIT_COLUMN_SUM_KERNELS                                                                     \
  void column_sums(const float* x, int64_t rows, int64_t cols, int64_t c0, int64_t c1, float* out); \
  void column_sums(const c10::BFloat16* x, int64_t rows, int64_t cols, int64_t c0, int64_t c1,      \
                   float* out);

namespace AVX2 { VIT_COLUMN_SUM_KERNELS }
namespace AVX512 { VIT_COLUMN_SUM_KERNELS }

}  // namespace vit
