// What to look at in a ViT's attention: which block, which head (or how to fuse the heads), from
// which token, and whether to roll attention out across blocks. Torch-free so the CLI parser and
// the window's controls can use it without compiling LibTorch headers; attention_maps.h computes
// the maps.
#pragma once

#include <optional>
#include <string>

#include "vit_config.h"

namespace vit {

// How the heads of one block become one T x T matrix.
enum class HeadFusion {
  Mean,  // average over heads (Abnar & Zuidema 2020; the usual choice)
  Max,   // strongest head per entry (jacobgil/vit-explain: sharper, follows a few heads)
  Min    // weakest head per entry (what every head agrees on)
};

std::string to_string(HeadFusion fusion);
std::optional<HeadFusion> head_fusion_from_string(const std::string& name);

struct AttentionRequest {
  int layer = -1;      // block index as in blocks.N; -1 = the last. With rollout: roll out 0..layer
  int head = -1;       // one head, or -1 to fuse all heads with `fusion`
  HeadFusion fusion = HeadFusion::Mean;
  bool rollout = false;        // attention rollout (Abnar & Zuidema 2020) over blocks 0..layer
  double discard_ratio = 0.0;  // rollout only: share of the lowest attentions set to 0, in [0, 1)
  // Rollout weighted by the gradient of a class score (jacobgil's grad rollout, in the spirit of
  // Chefer et al. 2021); implies rollout, heads are fused by the gradient-weighted mean.
  bool gradient = false;
  int target_class = -1;  // gradient rollout: the class to explain; -1 = the predicted class
  // The token whose attention row is shown: -1 = what the head reads (the class token; for mean
  // and flatten pooling the mean of the pooled tokens' rows), else a patch index, row-major.
  int query_patch = -1;
};

// Why `request` cannot be answered for a model with `config` (a message naming the flag and the
// valid range), or "" when it can.
std::string validate(const AttentionRequest& request, const ViTConfig& config);

}  // namespace vit
