// Model summary: the per-layer table Keras' model.summary() shows, plus correct MAC/FLOP counts.
//
// Computed from the config alone (no model is built), so the GUI can refresh it on every edit and
// `vit summary --preset vit-l16` answers instantly. tests/model cross-checks the parameter counts
// against the modules of vit.h and against timm's published figures.
//
// Counting convention (that of fvcore, which timm's GMAC figures come from): a MAC is one
// multiply-add; Conv2d and Linear count in x out per position, the attention matmuls QK^T and AV
// count T x T x head_dim per head, LayerNorm counts 5 per element; softmax, GELU, dropout and the
// residual adds count 0. FLOPs = 2 x MACs. ViT-B/16 at 224: 17,582,740,224 MACs (timm: 17.58 G).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vit_config.h"

namespace vit {

struct LayerSummary {
  std::string name;                   // timm state_dict prefix, e.g. "blocks.0.attn.qkv"
  std::string type;                   // "Linear", "LayerNorm", "MatMul", ...
  std::vector<int64_t> output_shape;  // per image (no batch dimension)
  int64_t params = 0;
  int64_t macs = 0;                   // per image
};

struct ModelSummary {
  ViTConfig config;
  std::vector<LayerSummary> layers;
  int64_t params = 0;
  int64_t trainable_params = 0;
  int64_t macs = 0;   // per image
  int64_t flops = 0;  // per image, 2 x macs
  double weight_mib = 0.0;  // fp32 weights
};

// Throws std::invalid_argument when the config is invalid (see check()).
ModelSummary summarize(const ViTConfig& config);

// MACs of one training step per image (forward and backward; the fvcore convention above): the
// forward on the tokens a step computes (fewer with patch dropout, unless `patch_drop` is false:
// full_token_epochs), and the backward at twice it (the input and the weight gradients), less the
// patch embedding's input gradient, which an image does not need. What `vit train` divides its
// FLOP rate by (PaLM's "model FLOPs": recomputation and padding do not count).
int64_t training_macs(const ViTConfig& config, bool patch_drop = true);

nlohmann::json to_json(const ModelSummary& summary);
// The human-readable table with totals, as `vit summary` prints it.
std::string format_table(const ModelSummary& summary);
// "86,567,656"
std::string with_commas(int64_t value);
// "17.58 G", "284.9 K"
std::string si(double value);

}  // namespace vit
