// What our two CPU layer norms (fused_layer_norm.h, onednn_layer_norm.h) both take: x float or
// bf16 on the CPU with rows of C > 0 features; scale and shift, when defined, CPU vectors of C,
// float or x's type; and both hand the kernels float copies of them.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <optional>

#include "data_parallel.h"  // bf16_autocast_enabled
#include "tensor_rows.h"

namespace vit {

struct LayerNormShape {
  int64_t M, C;  // rows, features
};

// nullopt when not covered, as in the headers: other types or devices, no rows or features, a
// bf16 x under bf16 autocast (LibTorch would normalize in float and return float), parameters
// of another length, type or device.
inline std::optional<LayerNormShape> layer_norm_operands(const at::Tensor& x, const at::Tensor& weight,
                                                         const at::Tensor& bias) {
  const auto st = x.scalar_type();
  if (x.dim() < 1 || !x.device().is_cpu() || (st != at::kFloat && st != at::kBFloat16) ||
      (st == at::kBFloat16 && bf16_autocast_enabled(at::kCPU)))
    return std::nullopt;
  const int64_t C = x.size(-1), M = rows_of(x);
  if (M == 0 || C == 0) return std::nullopt;
  for (const auto* p : {&weight, &bias})
    if (p->defined() && (p->dim() != 1 || p->size(0) != C || !p->device().is_cpu() ||
                         (p->scalar_type() != at::kFloat && p->scalar_type() != st)))
      return std::nullopt;
  return LayerNormShape{M, C};
}

// A float copy of a scale or shift vector for the kernels (which take them in float), or an empty
// tensor for none; through autograd, so a bf16 parameter's gradient comes back as bf16.
inline at::Tensor layer_norm_param_f32(const at::Tensor& t, const at::Tensor& like) {
  if (!t.defined()) return at::empty({0}, like.options().dtype(at::kFloat));
  return t.to(at::kFloat).contiguous();
}

}  // namespace vit
