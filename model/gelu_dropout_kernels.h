// The loops behind gelu_dropout.h, compiled once per instruction set (model/CMakeLists.txt): the
// file gelu_dropout_kernels.cpp is built with AVX2 flags into namespace vit::AVX2 and with AVX-512
// flags into vit::AVX512, ATen's own way of building its CPU kernels (CPU_CAPABILITY), and
// gelu_dropout.cpp calls the set the CPU runs. ATen's Vectorized types; SLEEF's exp.
#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>

namespace vit {

struct GeluDropoutArgs {
  bool gelu = true;        // y = gelu(x) * m, else y = x * m
  bool dropout = false;    // m from the mask of `seed` (dropout_stream.h): 0 or `scale`; else m = 1
  uint32_t threshold = 0;  // dropout_threshold(p)
  float scale = 1.0f;      // 1 / (1 - p)
  uint64_t seed = 0;
};

// Elements [lo, hi) of the whole tensor; lo is a multiple of kGeluDropoutBlock, so a range never
// starts inside a mask draw. Forward: y = r + gelu(x) * m, with r = 0 when `r` is null. Backward:
// dx = dy * m * gelu'(x) (x unused, may be null, when !gelu). In float; bf16 tensors are converted
// on load and rounded once on store. The type pairs are those of the model: all float, all bf16,
// and bf16 mixed precision's bf16 branch on a float residual stream (a float gradient coming back
// from it). For float training, forward with `g` also writes g = gelu'(x) and backward_saved
// computes dx = dy * m * g from it: the same values without a second exp and division per element
// (bf16 keeps recomputing: a float g would double what its backward reads).
constexpr int64_t kGeluDropoutBlock = 1024;

#define VIT_GELU_DROPOUT_KERNELS                                                                   \
  void forward(const float* x, const float* r, float* y, int64_t lo, int64_t hi,                   \
               const GeluDropoutArgs& a);                                                          \
  void forward(const c10::BFloat16* x, const c10::BFloat16* r, c10::BFloat16* y, int64_t lo,       \
               int64_t hi, const GeluDropoutArgs& a);                                              \
  void forward(const c10::BFloat16* x, const float* r, float* y, int64_t lo, int64_t hi,           \
               const GeluDropoutArgs& a);                                                          \
  void backward(const float* dy, const float* x, float* dx, int64_t lo, int64_t hi,                \
                const GeluDropoutArgs& a);                                                         \
  void backward(const c10::BFloat16* dy, const c10::BFloat16* x, c10::BFloat16* dx, int64_t lo,    \
                int64_t hi, const GeluDropoutArgs& a);                                             \
  void backward(const float* dy, const c10::BFloat16* x, c10::BFloat16* dx, int64_t lo, int64_t hi, \
                const GeluDropoutArgs& a);                                                         \
  void forward(const float* x, const float* r, float* y, float* g, int64_t lo, int64_t hi,        \
               const GeluDropoutArgs& a);                                                          \
  void backward_saved(const float* dy, const float* g, float* dx, int64_t lo, int64_t hi,          \
                      const GeluDropoutArgs& a);

namespace AVX2 { VIT_GELU_DROPOUT_KERNELS }
namespace AVX512 { VIT_GELU_DROPOUT_KERNELS }

}  // namespace vit
