// The loops behind fused_layer_norm.h, compiled once per instruction set like
// gelu_dropout_kernels.h (layer_norm_kernels.cpp built into vit::AVX2 and vit::AVX512;
// fused_layer_norm.cpp calls the set the CPU runs).
#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>

namespace vit {

struct LayerNormArgs {
  int64_t C = 0;             // features per row
  float eps = 1e-5f;
  const float* w = nullptr;  // scale (C), or null for none
  const float* b = nullptr;  // shift (C), or null for none
};

// Rows [r0, r1) of row-major (rows, C) matrices. The math is in float whatever the storage type.
//
// Forward: mean[r] and rstd[r] = 1 / sqrt(var + eps) (biased variance, two passes over the row),
// y = (x - mean) * rstd * w + b. Type pairs: float -> float, bf16 -> bf16, and float -> bf16 (the
// normalized output handed straight to a bf16 matmul under mixed precision).
//
// Backward, from those statistics: with xhat = (x - mean) * rstd and g = dy * w,
// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) [+ dr, another gradient of x added in the
// same pass, when dr is not null], and dw[c] += sum of dy * xhat, db[c] += sum of dy over these
// rows (dw, db: C floats, or null when not wanted). dy has y's type, dx and dr x's.
#define VIT_LAYER_NORM_KERNELS                                                                      \
  void layer_norm_forward(const float* x, float* y, float* mean, float* rstd, int64_t r0, int64_t r1, \
                          const LayerNormArgs& a);                                                  \
  void layer_norm_forward(const float* x, c10::BFloat16* y, float* mean, float* rstd, int64_t r0,   \
                          int64_t r1, const LayerNormArgs& a);                                      \
  void layer_norm_forward(const c10::BFloat16* x, c10::BFloat16* y, float* mean, float* rstd,       \
                          int64_t r0, int64_t r1, const LayerNormArgs& a);                          \
  void layer_norm_backward(const float* dy, const float* x, const float* dr, const float* mean,     \
                           const float* rstd, float* dx, float* dw, float* db, int64_t r0,          \
                           int64_t r1, const LayerNormArgs& a);                                     \
  void layer_norm_backward(const c10::BFloat16* dy, const float* x, const float* dr,                \
                           const float* mean, const float* rstd, float* dx, float* dw, float* db,   \
                           int64_t r0, int64_t r1, const LayerNormArgs& a);                         \
  void layer_norm_backward(const c10::BFloat16* dy, const c10::BFloat16* x, const c10::BFloat16* dr, \
                           const float* mean, const float* rstd, c10::BFloat16* dx, float* dw,      \
                           float* db, int64_t r0, int64_t r1, const LayerNormArgs& a);

namespace AVX2 { VIT_LAYER_NORM_KERNELS }
namespace AVX512 { VIT_LAYER_NORM_KERNELS }

}  // namespace vit
