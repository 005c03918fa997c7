// Fine-tuning surgery: what changes when pretrained weights meet a model for another task — a new
// head, position embeddings resized to another patch grid, patch kernels adapted to another
// channel count, a frozen backbone.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "train_config.h"  // Normalization

namespace vit {

struct VisionTransformerImpl;
struct ImportedWeights;

// Position embeddings (1, prefix + G*G, D) -> (1, prefix + new_grid^2, D): the prefix (class
// token) rows are kept bit for bit, the grid is resampled bicubically (antialiased when
// shrinking) as timm's resample_abs_pos_embed does.
at::Tensor resize_pos_embed(const at::Tensor& pos_embed, int prefix_tokens, int new_grid);
// Patch-embedding kernels for another channel count, as timm's adapt_input_conv: RGB -> gray sums
// the colour kernels; otherwise the kernels are repeated and scaled by 3 / channels.
at::Tensor adapt_input_channels(const at::Tensor& weight, int channels);
// Mean/std for another channel count (their average, or repeated).
Normalization adapt_normalization(const Normalization& normalization, int channels);

struct PretrainedLoad {
  bool new_head = false;           // the head was left at its fresh init (classes differ / none)
  bool pos_embed_resized = false;
  bool channels_adapted = false;
  std::vector<std::string> notes;  // one sentence per adaptation
};
// Copies `weights` into `model`, adapting what fine-tuning changes: a new head when the classes
// (or head layers) differ, position embeddings resized when the grid differs, patch kernels
// adapted when the channels differ. Anything else that does not fit (dim, depth, MLP width, patch
// size, pooling) throws std::runtime_error listing the problems.
PretrainedLoad load_pretrained(VisionTransformerImpl& model, const ImportedWeights& weights);

bool is_head_parameter(const std::string& name);  // head.*, head_mlp.*
// Turns off gradients of everything but the head; returns the number of frozen parameters.
int64_t freeze_backbone(VisionTransformerImpl& model);

}  // namespace vit
