#pragma once
// Multi-head self-attention as one operation on the CPU, forward and backward, through oneDNN.
//
// LibTorch 1.13 without MKL runs a float batched matmul as one GEMM per (image, head), each behind
// a select and a tensor of its own (~150,000 ATen calls per keras-cifar step), and materialises
// the whole (batch, heads, T, T) score tensor between passes: softmax and its backward stream
// ~86 MB per layer through memory four times. Here, a few images at a time (as many as keep their
// float scores within ~512 KiB of cache), q/k/v are copied from the qkv projection's columns
// into dense per-head matrices, one batched matmul makes the scores of all heads, they
// are softmaxed while in cache, multiplied with v, and the result is scattered into the (B, T, D)
// layout the output projection reads: no per-head calls, no full-size transposes. Backward is the
// same: five batched products and softmax's backward, chunk by chunk, on the dense q/k/v the
// forward pass kept instead of qkv (same size). (The dense gather costs a
// copy of q/k/v and buys oneDNN's brgemm kernels: on the strided layout oneDNN chose a generic
// GEMM loop, slower than LibTorch's bf16 bmm for fmnist-small's 17 tokens.)
//
// The row softmax and its backward are ours (softmax_kernels.h) where the element-wise kernels
// are built (x86-64 with libsleef-dev), oneDNN's primitives elsewhere. Heads of up to 256
// tokens and 4 vectors of features (fmnist-small's 17 x 32, keras-cifar's 145 x 16, ViT-B/16's
// 197 x 64 on AVX-512; with attention dropout up to 64 features on AVX2 too), float or bfloat16,
// skip all of the above: our register-blocked kernels (attention_kernels.h) read q, k and v in
// place, keep each head's scores in registers (up to 4 vectors of tokens) or a tile through the
// softmax and write the results into their columns.
//
// Numbers: float in, float math; bfloat16 in (under autocast), bfloat16 GEMMs with float
// accumulation and float scores into the softmax, probabilities and gradients in bfloat16 as
// ATen's bf16 path keeps them (on our short-head kernels: float arithmetic on the bfloat16 rows,
// float probabilities, results rounded to bfloat16). Tests: tests/model/test_onednn_kernels.cpp compares against the
// composite ATen expression, forward and gradients.
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

namespace vit {

// softmax(q k^T * scale) v for every head, q/k/v the three D-wide column blocks of `qkv`
// (B, T, 3 * D, as the qkv projection writes them, D = heads * head_dim), heads side by side in
// the result (B, T, D). Differentiable with respect to qkv.
//
// dropout > 0: dropout(softmax(q k^T * scale), dropout) v, inverted dropout on the probabilities
// with one seed from next_dropout_seed() (dropout.h) and the mask dropout_mask({B, heads, T, T},
// dropout) would make from it, so the composite path with the same seed drops the same ones. Only
// on our kernels (fused_attention_drops_out()); nullopt elsewhere, without taking a seed.
//
// nullopt when this case is not handled, and the caller uses the composite expression: not a
// CPU tensor, not float/bfloat16, the build has no oneDNN (VIT_HAVE_ONEDNN), oneDNN cannot make
// the kernels on this CPU (bfloat16 needs AVX-512), dropout outside [0, 1) or on heads our kernels
// do not cover, or VIT_FUSED_ATTENTION=0 in the environment.
std::optional<at::Tensor> fused_attention(const at::Tensor& qkv, int64_t heads, double scale, double dropout = 0.0);

// Why oneDNN could not make the kernels for the last shape this thread asked for ("" when it
// never failed), for benches and tests to say why fused_attention declined.
std::string fused_attention_declined();

// Whose kernels fused attention runs for heads of `tokens` x `head_dim` in `type`: "ours (avx512)"
// or "ours (avx2)" (attention_kernels.h: short sequences, small heads), else "oneDNN's
// matmuls, softmax ..." (fused_attention_softmax()), or "none (...)" saying why neither.
std::string fused_attention_kernels(int64_t tokens, int64_t head_dim, at::ScalarType type);

// Whether attention dropout on heads of `tokens` x `head_dim` in `type` runs inside fused
// attention (on our kernels, which take every head they cover when dropping out, even where
// oneDNN's matmuls are faster without dropout: 64-feature heads on AVX2).
bool fused_attention_drops_out(int64_t tokens, int64_t head_dim, at::ScalarType type);

// Whose row softmax fused attention runs: "avx512" or "avx2" (ours, softmax_kernels.h), or
// "oneDNN..." saying why not ours.
std::string fused_attention_softmax();

// Whether this build can fuse attention at all (compiled with oneDNN and not switched off).
bool fused_attention_enabled();

}  // namespace vit
