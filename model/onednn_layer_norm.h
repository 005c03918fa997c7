#pragma once
// Layer norm over the last dimension through oneDNN's layer_normalization primitive on the CPU,
// forward and backward, float or bf16 tensors.
//
// LibTorch 1.13 has no fast CPU kernel for bf16 layer norms: the 25 norms of a bf16 ViT-B/16 at
// batch 1 took 42.6 ms against 2.2 ms in float (build/bench/op_profile vit-b16 1 10 bf16-infer 1,
// AMD EPYC Zen 5). oneDNN normalizes bf16 rows in one pass (statistics in float), float ones
// faster than LibTorch too (bench/layer_norm_bench.cpp; README "Speed on any x86 CPU").
//
// Tests: tests/model/test_onednn_kernels.cpp (OneDnnLayerNorm*) against at::layer_norm in float64,
// values and the three gradients.
#include <ATen/core/Tensor.h>

#include <optional>

namespace vit {

// (x - mean) / sqrt(var + eps) * weight + bias over x's last dimension, in x's type (float or
// bf16; weight and bias, when defined, of that length, float or x's type). Differentiable with
// respect to all three. nullopt when not covered and the caller uses at::layer_norm: not a CPU
// tensor of those types, bf16 autocast on with a bf16 input (LibTorch would normalize in float
// and return float), no oneDNN in the build, VIT_ONEDNN_LAYER_NORM=0, or no oneDNN kernel here.
std::optional<at::Tensor> onednn_layer_norm(const at::Tensor& x, const at::Tensor& weight,
                                            const at::Tensor& bias, double eps);

}  // namespace vit
