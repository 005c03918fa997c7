#pragma once
// GELU and dropout as one pass over memory each way, on the CPU.
//
// A keras-cifar block runs fc1 -> GELU -> dropout -> fc2 -> GELU -> dropout: with ATen ops that
// is, per activation, a GELU pass, a mask made and stored, a multiply, and in the backward pass a
// multiply by the stored mask and GELU's backward. LibTorch 1.13's bfloat16 GELU also calls the
// scalar erf per element. Here the forward reads x once and writes y = gelu(x) * m once, the
// backward reads dy and x once and writes dx = dy * m * gelu'(x); the mask m is not kept but drawn
// again from its seed (dropout_stream.h: the same mask dropout_mask() makes from that seed, so
// results do not depend on which path ran). Vectorised with ATen's Vectorized<float> and SLEEF
// (the same erf/exp as LibTorch's float GELU), built for AVX2 and AVX-512 and chosen at run time.
//
// Numbers: float in, float out; bfloat16 in, the math in float and one rounding to bfloat16 on
// the way out (ATen rounds after the GELU and again after the mask multiply, with a bf16 mask).
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

namespace vit {

// residual + dropout(gelu(x), p) when `gelu`, else residual + dropout(x, p); p = 0 is no dropout
// (for the GELU alone), an undefined residual is none. The sum is the residual's type: a bf16
// branch (bf16 mixed precision) on a float residual stream gives float, as ATen's add would.
// Differentiable with respect to x and the residual. Takes one seed from next_dropout_seed() when
// p > 0.
//
// nullopt when this case is not handled, and the caller uses ATen's ops: not CPU tensors, not
// float/bfloat16 (or a float branch on a bf16 residual), shapes that differ, p outside [0, 1), a
// CPU without AVX2 (or ATEN_CPU_CAPABILITY=default), a build without SLEEF's headers, or
// VIT_FUSED_ELTWISE=0 in the environment.
std::optional<at::Tensor> gelu_dropout(const at::Tensor& x, bool gelu, double p,
                                       const at::Tensor& residual = at::Tensor());

// The instruction set the kernels run with here: "avx512", "avx2", or "off (why)".
std::string gelu_dropout_isa();

}  // namespace vit
