#pragma once
// Linear layers (y = x W^T + b) through oneDNN's matmul on the CPU, forward and backward: float
// tensors, bf16 ones (a model converted to bf16), and under bf16 autocast (mixed-precision
// training and evaluation) what autocast would compute; and the GELU that follows a transformer's
// first MLP layer.
//
// LibTorch's float GEMMs go to the system BLAS (Debian's OpenBLAS); oneDNN's AVX-512 brgemm
// kernels ran ViT-B/16's and keras-cifar's linear shapes 2.1-2.2x faster than OpenBLAS's Haswell
// kernels and 1.15-1.24x faster than its AVX-512 (Cooperlake) ones on an AMD EPYC (Zen 5)
// (bench/linear_bench.cpp; README "Speed on any x86 CPU"). In bf16 LibTorch 1.13 also runs on
// oneDNN, but for a 3-d input as a matmul and a separate bias pass (the bias adds were 3% of a
// keras-cifar bf16 training step, build/bench/op_profile keras-cifar 256 3 bf16 1 shapes); here the
// bias is added inside the matmul.
//
// Tests: tests/model/test_onednn_kernels.cpp (OneDnnLinear*) against at::linear, values and
// gradients.
#include <ATen/core/Tensor.h>

#include <optional>

namespace vit {

// x (..., in) times weight (out, in) transposed plus bias (out) when defined: (..., out).
// Differentiable with respect to all three. Under bf16 autocast, as autocast's linear: the three
// cast to bf16 (weights through autocast's per-scope cache), a bf16 result, gradients back in the
// inputs' types. nullopt when not covered, and the caller uses at::linear: not all CPU tensors of
// one type (float or bf16; either under autocast), no oneDNN in the build, VIT_ONEDNN_LINEAR=0 in
// the environment, or oneDNN has no kernel here.
std::optional<at::Tensor> onednn_linear(const at::Tensor& x, const at::Tensor& weight,
                                        const at::Tensor& bias);

// GELU (erf form, at::gelu's default) of the same, in one matmul with GELU as its post-op, where no
// gradient is wanted (inference: the fc1 of each MLP block without a pass over its output). nullopt
// when a gradient is wanted or onednn_linear() would decline.
std::optional<at::Tensor> onednn_linear_gelu(const at::Tensor& x, const at::Tensor& weight,
                                             const at::Tensor& bias);

// Whether bf16 layers here run their GEMMs on the float units: bf16 values widened to float a
// block of rows at a time (in L2), oneDNN's float matmul, the result rounded to bf16 once; the
// same bf16 operands and results as oneDNN's bf16 matmul, and at least as accurate. Chosen where
// bf16 dot products are slow (Bf16Support::gemm_on_float_units, cpu_info.h: no AMX and bf16 dot
// products below 0.8x the float FMA rate, or none); VIT_BF16_GEMM=float or =bf16 in the
// environment decides instead. False without oneDNN or with VIT_ONEDNN_LINEAR=0.
bool bf16_gemms_on_float_units();

}  // namespace vit
