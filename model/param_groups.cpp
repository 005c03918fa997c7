#include <torch/nn/module.h>

#include "param_groups.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "vit.h"

namespace vit {

namespace {

// The block index of "blocks.<N>.<rest>", -1 for other names.
int block_index(const std::string& name) {
  int index = -1, consumed = 0;
  if (std::sscanf(name.c_str(), "blocks.%d.%n", &index, &consumed) != 1 || consumed == 0) return -1;
  return index;
}

}  // namespace

std::vector<ParamGroup> param_groups(VisionTransformerImpl& model, double weight_decay,
                                     double layer_decay) {
  const int depth = model.config().depth;
  const bool layered = layer_decay < 1.0;
  const int layers = layered ? depth + 2 : 1;
  std::vector<ParamGroup> groups(size_t(2 * layers));
  for (int l = 0; l < layers; ++l) {
    const double scale = layered ? std::pow(layer_decay, depth + 1 - l) : 1.0;
    groups[size_t(2 * l)].weight_decay = weight_decay;
    groups[size_t(2 * l)].lr_scale = scale;
    groups[size_t(2 * l + 1)].weight_decay = 0.0;
    groups[size_t(2 * l + 1)].lr_scale = scale;
  }
  for (const auto& p : model.named_parameters()) {
    if (!p.value().requires_grad()) continue;
    const std::string& name = p.key();
    // timm convention: no weight decay on biases, norms, position embedding and class token.
    const bool no_decay = p.value().dim() < 2 || name == "pos_embed" || name == "cls_token";
    int layer = 0;
    if (layered) {
      const int index = block_index(name);
      if (name == "cls_token" || name == "pos_embed" || name.rfind("patch_embed.", 0) == 0)
        layer = 0;
      else if (index >= 0)
        layer = index + 1;
      else
        layer = depth + 1;
    }
    auto& g = groups[size_t(2 * layer + (no_decay ? 1 : 0))];
    g.params.push_back(p.value());
    g.names.push_back(name);
  }
  groups.erase(std::remove_if(groups.begin(), groups.end(),
                              [](const ParamGroup& g) { return g.params.empty(); }),
               groups.end());
  return groups;
}

}  // namespace vit
