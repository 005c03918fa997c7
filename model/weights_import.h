// Pretrained weights in: the ViT checkpoints users already have, read and mapped to timm's
// names (which the model in vit.h uses), with the config inferred from the tensor shapes.
//   containers: safetensors (model/safetensors.h), NumPy .npz (model/npz.h), PyTorch .pth/.bin zip
//               state_dicts (model/pth.h, a weights-only reader; nothing in a file is run)
//   names:      timm (`blocks.0.attn.qkv.weight`), Hugging Face transformers (`vit.encoder.layer.0.
//               attention.attention.query.weight`, q/k/v concatenated into qkv) and Google's
//               original ViT .npz (`Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/
//               kernel`), mapped as timm's `_load_weights` in timm/models/vision_transformer.py does.
// Heads, which no shape shows (except in Google's files), come from the file's own config, the
// caller, or the standard ViT table (vit_config.h, standard_heads).
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "finetune.h"       // PretrainedLoad, for write_imported_run
#include "safetensors.h"    // NamedTensors
#include "train_config.h"   // Normalization
#include "vit_config.h"

namespace vit {

enum class WeightsFormat { Safetensors, Npz, Pth };
const char* to_string(WeightsFormat format);

struct ImportOptions {
  // Attention heads when the file cannot tell: timm and Hugging Face names carry no head count,
  // and a width outside the standard table (standard_heads) needs it. If the file does tell (its
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

// --- import into a run directory ------------------------------------------------------------

// Writes `dir` as a run directory the other tools accept: a committed checkpoint (run_dir.h) whose
// best weights carry the config and preprocessing in their metadata, and config.json. `config` is the model to build (the
// imported one, maybe with other classes). Throws std::invalid_argument if `dir` already holds a run.
PretrainedLoad write_imported_run(const ImportedWeights& weights, const ViTConfig& config,
                                  const std::string& dir);

}  // namespace vit
