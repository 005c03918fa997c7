// ViT hyperparameters, their validation, and the named presets.
//
// Torch-free on purpose: the GUI's hyperparameter panel, the summary and the CLI parser include this
// header, and it compiles in a second instead of the ~19 s a torch header costs.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "settings_schema.h"

namespace vit {

// How the token sequence becomes one feature vector for the head.
enum class Pool {
  Token,   // the class token's final state (ViT paper, timm's default)
  Mean,    // mean over patch tokens, then `fc_norm` (timm's global_pool="avg")
  Flatten  // every token concatenated (the Keras example's Flatten before its MLP head)
};

std::string to_string(Pool pool);
std::optional<Pool> pool_from_string(const std::string& name);

struct ViTConfig {
  int image_size = 224;        // input side in pixels; images are resized to this square
  int patch_size = 16;         // side of a square patch; image_size must be a multiple of it
  int in_channels = 3;         // 1 for grayscale (Fashion-MNIST), 3 for RGB
  int num_classes = 1000;      // outputs of the classification head
  int dim = 768;               // token embedding width D, kept through every block
  int depth = 12;              // number of transformer blocks
  int heads = 12;              // attention heads; dim must be a multiple (head dim = dim / heads)
  int mlp_hidden = 3072;       // hidden width of each block's MLP (timm: mlp_ratio 4 x dim)
  bool mlp_act_after_fc2 = false;  // Keras example: GELU after both MLP layers, not only fc1
  bool qkv_bias = true;        // bias on the fused q/k/v projection (timm default, Keras Dense)
  double dropout = 0.0;        // after the position embedding, attention proj and MLP layers
  double attn_dropout = 0.0;   // on the attention probabilities
  double drop_path = 0.0;      // stochastic depth: rate of the last block, linear from 0
  double patch_drop = 0.0;     // training only: fraction of patch tokens dropped per image (timm's patch_drop_rate)
  bool class_token = true;     // prepend a learned [CLS] token (needed for Pool::Token)
  Pool pool = Pool::Token;     // how tokens become the head's input
  double ln_eps = 1e-6;        // LayerNorm epsilon (timm and the Keras example both use 1e-6)
  std::vector<int> head_hidden;  // optional MLP head before the classifier (Keras: {2048, 1024})
  double head_dropout = 0.0;   // dropout before each head layer (Keras example: 0.5)

  int grid() const { return image_size / patch_size; }         // patches per side
  int num_patches() const { return grid() * grid(); }          // N
  int num_tokens() const { return num_patches() + (class_token ? 1 : 0); }  // T
  int training_patches() const;  // patches a training step computes: N, or fewer with patch_drop
  int head_dim() const { return dim / heads; }                 // hd
  int pooled_dim() const;                                      // features entering the head

  bool operator==(const ViTConfig& other) const;  // field by field, through the schema
  bool operator!=(const ViTConfig& other) const { return !(*this == other); }
};

// Patch tokens PatchDropout keeps of `patches` at rate `patch_drop`: timm's int(N (1 - p)), at
// least 1; all of them at rate 0.
int64_t patches_kept(int64_t patches, double patch_drop);

// The fields of ViTConfig (settings_schema.h): JSON, flags, the panel and range checks.
const Schema<ViTConfig>& vit_schema();

// Every rule the config breaks, empty when it is valid: the schema's ranges, then the rules that
// tie fields together. The GUI shows these inline per field.
std::vector<ConfigError> validate(const ViTConfig& config);
// Throws std::invalid_argument with the first broken rule's message.
void check(const ViTConfig& config);

// The standard ViT architectures (Dosovitskiy et al. 2020; timm's names). The one table behind
// the ImageNet presets, the head count of imported weights whose names do not show it, and the
// architecture named in exported timm metadata.
struct StandardViT {
  std::string preset;  // our preset's name ("vit-b16"), "" when we offer none
  std::string timm;    // timm's model name ("vit_base_patch16_224")
  std::string title;   // "ViT-Base/16"
  int patch_size, dim, depth, heads;
};
const std::vector<StandardViT>& standard_vits();
// Heads of a standard width (Ti 192: 3, S 384: 6, B 768: 12, L 1024: 16, H 1280: 16).
std::optional<int> standard_heads(int dim);

struct Preset {
  std::string name;
  std::string description;
  ViTConfig config;
};

const std::vector<Preset>& presets();

// The model fine-tuning trains: the pretrained architecture (fields marked `architecture`), with
// the fields named in `given` taken from `requested` (image size, channels, classes, dropout...).
// A given architecture field that differs throws std::invalid_argument naming it and `source`.
// A headless file (num_classes 0) gets 1 class, to be fitted to the data.
ViTConfig finetuned_config(const ViTConfig& pretrained, const ViTConfig& requested,
                           const std::set<std::string>& given, const std::string& source);
// Throws std::invalid_argument listing the known names when `name` is unknown.
const Preset& preset(const std::string& name);
// The preset a new user gets: the small Fashion-MNIST model.
inline const char* kDefaultPreset = "fmnist-small";

}  // namespace vit
