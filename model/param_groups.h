// The optimizer's parameter groups: timm's weight-decay convention and layer-wise learning-rate
// decay. Separate from the importer: training from scratch needs groups too.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace vit {

struct VisionTransformerImpl;

// AdamW parameter groups: weight decay except on biases, norms, position embedding and class token
// (timm's convention), and with `layer_decay` < 1 the layer-wise learning-rate decay of BEiT /
// timm's param_groups_layer_decay: embeddings are layer 0, block i layer i + 1, the final norm and
// head layer depth + 1, and layer l's rate is lr * layer_decay^(depth + 1 - l). Frozen parameters
// are left out. With layer_decay 1 there are exactly two groups (decay, no decay), in
// named_parameters() order.
struct ParamGroup {
  std::vector<at::Tensor> params;
  std::vector<std::string> names;
  double weight_decay = 0;
  double lr_scale = 1;
};
std::vector<ParamGroup> param_groups(VisionTransformerImpl& model, double weight_decay,
                                     double layer_decay);

}  // namespace vit
