// Row softmax, forward and backward, for fused attention (fused_attention.cpp), compiled once per
// instruction set like column_sum_kernels.h (model/CMakeLists.txt: softmax_kernels.cpp is built
// with AVX2 flags into vit::AVX2 and with AVX-512 flags into vit::AVX512).
//
// Why not oneDNN's softmax primitive: attention rows are short (17 tokens in fmnist-small), and
// oneDNN 2.6's jit softmax took ~58 us each way for a 32-image shard's 2,176 rows of 17 scores
// (ONEDNN_VERBOSE; ~1.5 ns per score), a fifth of the layer's forward+backward. These: 29 us
// forward, 13 us backward; `attention_bench 32 17 4 32` float forward 0.20 -> 0.17 ms,
// forward+backward 0.55 -> 0.50 ms; ViT-B/16's attention at batch 1 (1 197 12 64) forward
// 1.75 -> 1.32 ms (Intel Xeon model 207, 2026-12-06).
#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>

namespace vit {

// softmax_rows: p[r, :] = softmax(s[r, :]) for `rows` rows of `cols` float scores, with the
// row's maximum subtracted before exp; `s` is scratch (rows longer than 4 vectors keep exp(s - max)
// there between passes).
// softmax_backward_rows: ds = p * (dp - sum(p * dp)) per row (the gradient of the scores from the
// probabilities' gradient), the row sum in float.
#define VIT_SOFTMAX_KERNELS                                                                         \
  void softmax_rows(float* s, int64_t rows, int64_t cols, float* p);                                \
  void softmax_rows(float* s, int64_t rows, int64_t cols, c10::BFloat16* p);                        \
  void softmax_backward_rows(const float* p, const float* dp, int64_t rows, int64_t cols, float* ds); \
  void softmax_backward_rows(const c10::BFloat16* p, const c10::BFloat16* dp, int64_t rows, int64_t cols, \
                             c10::BFloat16* ds);

namespace AVX2 { VIT_SOFTMAX_KERNELS }
namespace AVX512 { VIT_SOFTMAX_KERNELS }

}  // namespace vit
