// Pretrained weights in and out: import the ViT checkpoints users already have, export what ViT
// Studio trains so Python (timm, or plain load_state_dict) reads it with no key changes, and the
// pieces fine-tuning needs (new head, resized position embeddings, frozen backbone, layer-wise
// learning-rate decay).
//
// Import reads three containers and three naming schemes, all mapped to timm's names (which the
// model in vit.h uses):
//   containers: safetensors (model/safetensors.h), NumPy .npz (model/npz.h), PyTorch .pth/.bin zip
//               state_dicts (model/pth.h, a weights-only reader; nothing in a file is run)
//   names:      timm (`blocks.0.attn.qkv.weight`), Hugging Face transformers (`vit.encoder.layer.0.
//               attention.attention.query.weight`, q/k/v concatenated into qkv) and Google's
//               original ViT .npz (`Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/
//               kernel`), mapped as timm's `_load_weights` in timm/models/vision_transformer.py does.
// The ViT config is inferred from the tensor shapes; heads, which no shape shows (except in
// Google's files), come from the file's own config, the caller, or the standard widths' table.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "safetensors.h"    // NamedTensors
#include "train_config.h"   // Normalization
#include "vit_config.h"

namespace vit {

struct VisionTransformerImpl;

enum class WeightsFormat { Safetensors, Npz, Pth };
const char* to_string(WeightsFormat format);

struct ImportOptions {
  // Attention heads when the file cannot tell: timm and Hugging Face names carry no head count,
  // and a width outside the standard table (default_heads) needs it. If the file does tell (its
  // own config, or Google's per-head kernels), a different value is an error.
  std::optional<int> heads;
};

struct ImportedWeights {
  std::string path;
  WeightsFormat format = WeightsFormat::Safetensors;
  std::string naming;      // "vit-studio", "timm", "hugging-face", "google-npz", "big-vision"
  NamedTensors tensors;    // timm names, float32, contiguous
  ViTConfig config;        // num_classes is 0 when the file has no classification head
  bool has_head = false;
  std::string heads_source;  // how config.heads was decided, for the user
  Normalization normalization;  // one mean/std per input channel
  std::string normalization_source;
  std::vector<std::string> notes;  // what was dropped or assumed, one sentence each
};

// Reads, maps and infers. `path` is a weights file or a run directory (its best checkpoint).
// Throws std::runtime_error naming the file and the problem (malformed container, unrecognized
// names, shapes that do not make a ViT), std::invalid_argument when `options` contradict the file
// or heads are needed.
ImportedWeights import_weights(const std::string& path, const ImportOptions& options = {});

// --- the steps of import_weights, exposed for tests --------------------------------------------

// The file's tensors under their own names; the format is detected from the first bytes, not the
// extension. `metadata` receives a safetensors file's __metadata__.
NamedTensors read_weight_file(const std::string& path, WeightsFormat* format = nullptr,
                              std::map<std::string, std::string>* metadata = nullptr);
// Source names -> timm names. `naming` receives the scheme; `heads` the head count when the
// names show it (Google's kernels are (dim, heads, head_dim)). Throws std::runtime_error
// (starting with `what`) for unknown or missing names.
NamedTensors map_to_timm(const NamedTensors& source, const std::string& what, std::string* naming,
                         std::vector<std::string>* notes, std::optional<int>* heads);
// The config of timm-named tensors. num_classes is 0 without a head.
ViTConfig infer_config(const NamedTensors& timm, const std::string& what, std::optional<int> heads,
                       std::string* heads_source = nullptr);
// Heads of the standard ViT widths (Ti 192: 3, S 384: 6, B 768: 12, L 1024: 16, H 1280: 16).
std::optional<int> default_heads(int dim);

// --- fine-tuning --------------------------------------------------------------------------------

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

// --- import into a run directory, export ----------------------------------------------------------

// Writes `dir` as a run directory the other tools accept: checkpoints/best.safetensors (with the
// config and preprocessing in its metadata) and config.json. `config` is the model to build (the
// imported one, maybe with other classes). Throws std::invalid_argument if `dir` already holds a run.
PretrainedLoad write_imported_run(const ImportedWeights& weights, const ViTConfig& config,
                                  const std::string& dir);

struct ExportResult {
  std::string checkpoint;        // the file the weights came from
  int64_t tensors = 0, parameters = 0;
  std::map<std::string, std::string> metadata;
  std::vector<std::string> warnings;  // what timm cannot build from this config
};
// `source` is a run directory (its best checkpoint, else the last) or a ViT Studio .safetensors
// checkpoint. The output has timm names and a __metadata__ with "format" = "pt", "vit_config",
// "mean", "std", "input_size", and timm's "pretrained_cfg" and "timm_model_args" as JSON.
ExportResult export_weights(const std::string& source, const std::string& out);
// The timm side of the metadata: `timm.create_model(architecture, **timm_model_args)` builds the
// model; pretrained_cfg holds input_size, mean, std, interpolation, crop_pct, num_classes.
std::map<std::string, std::string> timm_metadata(const ViTConfig& config,
                                                 const Normalization& normalization);
// Config features timm's VisionTransformer has no argument for (empty when it builds the model).
std::vector<std::string> timm_incompatibilities(const ViTConfig& config);

}  // namespace vit
