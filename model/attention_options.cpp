#include "attention_options.h"

namespace vit {

std::string to_string(HeadFusion fusion) {
  switch (fusion) {
    case HeadFusion::Mean: return "mean";
    case HeadFusion::Max: return "max";
    case HeadFusion::Min: return "min";
  }
  return "mean";
}

std::optional<HeadFusion> head_fusion_from_string(const std::string& name) {
  if (name == "mean") return HeadFusion::Mean;
  if (name == "max") return HeadFusion::Max;
  if (name == "min") return HeadFusion::Min;
  return std::nullopt;
}

std::string validate(const AttentionRequest& r, const ViTConfig& c) {
  const std::string depth = std::to_string(c.depth), heads = std::to_string(c.heads);
  if (r.layer < -1 || r.layer >= c.depth)
    return "layer " + std::to_string(r.layer) + " does not exist: this model has " + depth +
           " blocks, use 0.." + std::to_string(c.depth - 1) + " (or -1 for the last)";
  if (r.head < -1 || r.head >= c.heads)
    return "head " + std::to_string(r.head) + " does not exist: this model has " + heads +
           " heads, use 0.." + std::to_string(c.heads - 1) + " (or fuse them)";
  if (!(r.discard_ratio >= 0.0 && r.discard_ratio < 1.0))
    return "discard ratio " + std::to_string(r.discard_ratio) + " must be in [0, 1), e.g. 0.9";
  if (r.discard_ratio > 0.0 && !r.rollout && !r.gradient)
    return "the discard ratio applies to attention rollout only: add rollout";
  if (r.gradient && r.head >= 0)
    return "gradient rollout weighs every head by its gradient: do not choose a head";
  if (r.target_class < -1 || r.target_class >= c.num_classes)
    return "class " + std::to_string(r.target_class) + " does not exist: this model has " +
           std::to_string(c.num_classes) + " classes, use 0.." + std::to_string(c.num_classes - 1);
  if (r.query_patch < -1 || r.query_patch >= c.num_patches())
    return "patch " + std::to_string(r.query_patch) + " does not exist: this model has " +
           std::to_string(c.num_patches()) + " patches (" + std::to_string(c.grid()) + "x" +
           std::to_string(c.grid()) + "), use 0.." + std::to_string(c.num_patches() - 1) +
           " row-major (or -1 for the class token)";
  return {};
}

}  // namespace vit
