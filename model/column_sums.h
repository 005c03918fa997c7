#pragma once
// The sum over rows of a (rows, cols) matrix, for the bias gradient of a linear layer (dy summed
// over its rows): float or bfloat16 in, the sum in float, the result in the input's type (as ATen's
// sum(0) gives it).
//
// ATen 1.13's sum(0) over many rows of few columns is slow: a bf16 (18560, 192) gradient, a
// keras-cifar shard's qkv layer, took 827 us (python3-torch 1.13, 1 thread, Intel Xeon model 207),
// 4 times its float (18560, 64) time per element, and oneDNN 2.6's reduction primitive has only its
// reference implementation for a sum over rows (84 ms for the same gradient). Here each block of
// up to 256 columns keeps its sums in vector registers while the rows stream past (AVX2 and
// AVX-512 builds, chosen at run time as the GELU/dropout kernels are): 319 against 702 us for that
// gradient, 160 against 489 for keras-cifar's fc1 (`build/bench/column_sum_bench`). Rows are added
// in order, so a column's sum does not depend on the thread count. Test: test_column_sums
// (float64 sums, odd shapes, both types, thread counts, both kernel sets).
#include <ATen/core/Tensor.h>

#include <string>

namespace vit {

// x.sum(0) for a 2-d CPU float or bfloat16 tensor; other tensors, CPUs without AVX2, builds
// without the kernels, VIT_FUSED_ELTWISE=0: x.sum(0) itself.
at::Tensor column_sums(const at::Tensor& x);

// The instruction set the kernels run with here: "avx512", "avx2", or "off (why)".
std::string column_sums_isa();

}  // namespace vit
