// Reading a ViT's attention as maps over its patch grid: one block and head, heads fused, attention
// rollout across blocks (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers") and
// its gradient-weighted variant, plus the similarity of the learned position embeddings.
//
// Rollout follows jacobgil/vit-explain, which timm users know, with its two slips fixed:
//   1. fuse the heads of each block (mean, max or min) into A (T x T);
//   2. optionally set the lowest `discard_ratio` share of A's entries to 0, never touching the
//      class token's row or column (vit-explain only protects the single entry (0, 0));
//   3. A' = (A + I) / 2 for the residual connection, rows re-normalized to sum to 1 (vit-explain
//      divides by the row sums broadcast along the wrong axis);
//   4. R = A'_L ... A'_2 A'_1: R[i, j] is how much of input token j flows into output token i.
// The map for the class token is R's row 0 over the patch columns.
//
// Mean-pooled models (no class token, or timm's global_pool="avg"): the head reads the mean of the
// patch tokens, so what flows into the head is the mean of R's rows over the pooled tokens; that
// mean is the "class token row" of such models (query -1 below). Flatten pooling feeds every
// token to the head, so it is the mean over all rows. The same rule picks the row of single-block
// maps.
//
// Gradient rollout (jacobgil's grad_rollout): per block, the heads are fused by
// mean_h(max(0, A_h * dScore/dA_h)) (attention that raises the chosen class's logit), then steps
// 2-4 as above.
//
// Shape legend: B batch, H heads, T tokens (N patches + 1 with a class token), G grid side,
// L blocks.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "attention_options.h"
#include "vit_config.h"

namespace vit {

struct VisionTransformerImpl;

// (B, H, T, T) -> (B, T, T).
at::Tensor fuse_heads(const at::Tensor& attention, HeadFusion fusion);

// (B, T, T) -> a copy where the lowest floor(ratio * K) entries of each matrix are 0, K being the
// number of entries outside row 0 and column 0 when `keep_first_token` (the class token), else
// all T * T. Ties are broken arbitrarily. ratio in [0, 1) (std::invalid_argument otherwise).
at::Tensor discard_lowest(const at::Tensor& attention, double ratio, bool keep_first_token);

// Rollout of per-block fused attention, first block first: L x (B, T, T) -> R (B, T, T), each
// row summing to 1. Steps 2-4 above. An empty list throws std::invalid_argument.
at::Tensor attention_rollout(const std::vector<at::Tensor>& fused, double discard_ratio,
                             bool has_class_token);

// Gradient-weighted head fusion: mean over heads of max(0, attention * gradient), (B, H, T, T) x 2
// -> (B, T, T).
at::Tensor gradient_weighted_fusion(const at::Tensor& attention, const at::Tensor& gradient);

// Attention probabilities of every block and their gradients with respect to the logit of
// `target_classes[b]` for image b (-1 = its predicted class). The model runs in eval mode (its
// mode is restored) with gradients enabled on the calling thread.
struct AttentionGradients {
  at::Tensor logits;                   // (B, classes)
  std::vector<at::Tensor> attentions;  // L x (B, H, T, T), detached
  std::vector<at::Tensor> gradients;   // L x (B, H, T, T)
  std::vector<int64_t> targets;        // the class explained for each image
};
AttentionGradients attention_gradients(VisionTransformerImpl& model, const at::Tensor& images,
                                       const std::vector<int64_t>& target_classes);

// The row of a (B, T, T) matrix a query reads: query_patch >= 0 is that patch's token, -1 what the
// head reads (see above). -> (B, T).
at::Tensor query_row(const at::Tensor& matrix, const ViTConfig& config, int query_patch);

// (B, T) -> (B, G, G): the patch columns of a row, laid out on the patch grid (class token dropped).
at::Tensor patch_map(const at::Tensor& row, const ViTConfig& config);

// Everything above in one call: L x (B, H, T, T) attention (and, for request.gradient, their
// gradients from attention_gradients) -> (B, G, G) map for `request`. Throws std::invalid_argument
// with validate()'s message for an impossible request.
at::Tensor attention_map(const std::vector<at::Tensor>& attentions, const ViTConfig& config,
                         const AttentionRequest& request,
                         const std::vector<at::Tensor>* gradients = nullptr);

// Cosine similarity of the patch position embeddings (the ViT paper's figure 7): pos_embed
// (1, T, D) -> (N, G, G), entry n being patch n's similarity to every patch, in [-1, 1].
at::Tensor position_similarity(const at::Tensor& pos_embed, const ViTConfig& config);

}  // namespace vit
