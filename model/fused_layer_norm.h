#pragma once
// Layer norm over the last dimension with our own AVX2/AVX-512 loops (layer_norm_kernels.h),
// forward and backward, on the CPU.
//
// What it adds over oneDNN's layer norm (onednn_layer_norm.h): under bf16 mixed precision a
// block's norms take the float residual stream and feed a bf16 matmul. oneDNN 2.6 (Debian 12)
// normalizes to float only, and autocast then casts that output to bf16 in a pass of its own,
// and casts its gradient back to float in another. Here the normalized rows are written as bf16
// straight away and the backward pass reads the bf16 gradient as it comes: two passes over the
// activations fewer each way. The parameters' gradients are summed per block of rows and the
// blocks added in order, so results do not depend on the thread count.
//
// Tests: tests/model/test_fused_layer_norm.cpp (float64 references for values and the three
// gradients, every type pair, thread-count independence).
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

namespace vit {

// (x - mean) / sqrt(var + eps) * weight + bias over x's last dimension (biased variance), in
// `out` (x's type when not given; bf16 may be asked for a float x). x float or bf16; weight and
// bias, when defined, of that length, float or x's type. Differentiable with respect to all
// three. nullopt when not covered and the caller uses another layer norm: not CPU tensors of
// those types, other shapes, a float result asked of a bf16 x, bf16 autocast on with a bf16 x
// (LibTorch would normalize in float and return float), a CPU without AVX2 (or
// ATEN_CPU_CAPABILITY=default), a build without the kernels (no libsleef-dev), or
// VIT_FUSED_LAYER_NORM=0 in the environment.
//
// `residual`, when given, receives x again for the caller's residual sum: with gradients on, a
// view of x whose gradient the backward pass adds into x's in its own pass (autograd would
// otherwise add the two gradients of x in a pass of their own); else x itself.
std::optional<at::Tensor> fused_layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                           double eps, std::optional<at::ScalarType> out = std::nullopt,
                                           at::Tensor* residual = nullptr);

// The instruction set the kernels run with here: "avx512", "avx2", or "off (why)".
std::string fused_layer_norm_isa();

}  // namespace vit
