// Attention for small heads, forward and backward, one (image, head) at a time straight from the
// qkv projection's layout, for fused attention (fused_attention.cpp). Compiled once per
// instruction set like softmax_kernels.h (model/CMakeLists.txt: built with AVX2 flags into
// vit::AVX2 and with AVX-512 flags into vit::AVX512).
//
// Why not oneDNN's batched matmuls: fmnist-small's heads are 17 tokens of 32 features,
// keras-cifar's 145 of 16. oneDNN wants each head's q, k and v gathered into dense matrices first
// (a copy of qkv each way), runs its five products per layer and step at ~45 GFLOP/s on 17x17
// scores, and the softmax between them is a separate pass. Here k (or v, in backward) is
// transposed into a tile once per head, every product is a register block of rows x vectors over
// broadcast scalars, and the results go straight to their columns. Forward, up to 4 vectors of
// tokens a head's scores stay in registers from Q K^T through the softmax; longer rows (up to 256
// tokens) go through a tile of 16 query rows at a time. Backward keeps the whole head's score
// gradients in a tile, at every length.
//
// Numbers: float arithmetic throughout, for float and bfloat16 heads (bfloat16 rows are converted
// to float per head, results rounded to bfloat16 as they are stored; the probabilities are kept
// in float either way). For bfloat16 that is more exact than oneDNN's and ATen's bf16 products;
// for float the order of the sums differs from theirs.
#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>

namespace vit {

// Dropout on the attention probabilities, inverted (kept ones times `scale` = 1 / (1 - p)), with
// the mask of `seed` over the (B, H, T, T) probabilities in dropout_stream.h's order: element
// (b, h, i, j) is kept when its 24-bit draw is >= `threshold`, exactly where dropout_mask({B, H,
// T, T}, p) made from that seed keeps it. So the composite path (vit.cpp) and these kernels drop
// the same probabilities for the same seed.
struct AttentionDropout {
  uint64_t seed = 0;
  uint32_t threshold = 0;  // dropout_threshold(p)
  float scale = 1.0f;      // 1 / (1 - p)
};

// small_attention_fits: whether these kernels cover T tokens and heads of hd features: 1-256
// tokens, and hd a multiple of the vector width up to 64 (16-64 on AVX-512, 8-64 on AVX2, where
// the products' results go in blocks of at most 4 vectors).
//
// small_attention_preferred: whether they are also the faster choice than oneDNN's batched
// matmuls (fused_attention.cpp): hd of at most 4 vectors. AVX2's 64-feature heads (ViT-B/16's)
// ran slower on ours (`attention_bench 1 197 12 64 50`, AMD EPYC Zen 3: forward+backward 8.4-9.5
// against 7.0 ms), so they run here only with attention dropout, which oneDNN's path lacks.
//
// small_attention_scratch: the floats of scratch each call needs for such heads (0 up to 4
// vectors of tokens). The caller owns it (no allocation in these objects: a std::vector's code
// instantiated here with AVX flags could be the copy the linker keeps for everyone).
//
// small_attention_forward: for the (image, head) pairs bh in [bh0, bh1) (bh = image * H + head)
// of qkv (B, T, 3D: q, k, v as three D = H * hd column blocks, head h at columns h * hd of each),
// out[b, :, h*hd : (h+1)*hd] = softmax(scale * q k^T) v, and the probabilities into probs
// (B, H, T, T, float) when it is not null. With `drop` (null for none): out = dropout(softmax(...)) v,
// and probs keeps the probabilities before dropout with the mask in their sign bits: a dropped
// probability P is stored as -P (the sign bit set even for P = 0), so backward needs no mask of
// its own.
//
// small_attention_backward: the qkv gradient (B, T, 3D) of those pairs from qkv, the forward's
// probs and the output's gradient grad_out (B, T, D). dropout_scale: 0 for a forward without
// dropout, else the forward's drop->scale (probs then carry the mask in their signs).
#define VIT_ATTENTION_KERNELS                                                                          \
  bool small_attention_fits(int64_t T, int64_t hd);                                                   \
  bool small_attention_preferred(int64_t T, int64_t hd);                                              \
  int64_t small_attention_scratch(int64_t T, int64_t hd);                                             \
  void small_attention_forward(const float* qkv, int64_t T, int64_t H, int64_t hd, float scale,        \
                               int64_t bh0, int64_t bh1, float* probs, float* out, float* scratch,    \
                               const AttentionDropout* drop);                                         \
  void small_attention_forward(const c10::BFloat16* qkv, int64_t T, int64_t H, int64_t hd, float scale, \
                               int64_t bh0, int64_t bh1, float* probs, c10::BFloat16* out,            \
                               float* scratch, const AttentionDropout* drop);                         \
  void small_attention_backward(const float* qkv, const float* probs, const float* grad_out, int64_t T, \
                                int64_t H, int64_t hd, float scale, int64_t bh0, int64_t bh1,          \
                                float* grad_qkv, float* scratch, float dropout_scale);                \
  void small_attention_backward(const c10::BFloat16* qkv, const float* probs,                         \
                                const c10::BFloat16* grad_out, int64_t T, int64_t H, int64_t hd,      \
                                float scale, int64_t bh0, int64_t bh1, c10::BFloat16* grad_qkv,       \
                                float* scratch, float dropout_scale);

namespace AVX2 { VIT_ATTENTION_KERNELS }
namespace AVX512 { VIT_ATTENTION_KERNELS }

}  // namespace vit
