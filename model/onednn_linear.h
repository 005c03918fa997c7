#pragma once
// Linear layers (y = x W^T + b) through oneDNN's matmul on the CPU, forward and backward, for
// float tensors and for bf16 ones (a model converted to bf16) outside autocast.
//
// LibTorch's float GEMMs go to the system BLAS (Debian's OpenBLAS); oneDNN's AVX-512 brgemm
// kernels ran ViT-B/16's and keras-cifar's linear shapes 2.1-2.2x faster than OpenBLAS's Haswell
// kernels and 1.15-1.24x faster than its AVX-512 (Cooperlake) ones on an AMD EPYC (Zen 5)
// (bench/linear_bench.cpp; README "Speed on any x86 CPU"). Under bf16 autocast LibTorch already
// runs linear layers on oneDNN (with its casts), so autocast is left to it.
//
// Tests: tests/model/test_onednn_kernels.cpp (OneDnnLinear*) against at::linear, values and
// gradients.
#include <ATen/core/Tensor.h>

#include <optional>

namespace vit {

// x (..., in) times weight (out, in) transposed plus bias (out) when defined: (..., out).
// Differentiable with respect to all three. nullopt when not covered, and the caller uses
// at::linear: not all CPU tensors of one type (float or bf16), bf16 autocast on, no oneDNN in the build,
// VIT_ONEDNN_LINEAR=0 in the environment, or oneDNN has no kernel here.
std::optional<at::Tensor> onednn_linear(const at::Tensor& x, const at::Tensor& weight,
                                        const at::Tensor& bias);

}  // namespace vit
