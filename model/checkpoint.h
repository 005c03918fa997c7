// Model weights on disk: safetensors files with timm parameter names, whose __metadata__ records
// the ViT config and the preprocessing, so a checkpoint alone is enough to rebuild and use a model.
#pragma once

#include <map>
#include <string>

#include "data_pipeline.h"
#include "vit.h"

namespace vit {

struct CheckpointInfo {
  ViTConfig config;
  Normalization normalization;  // empty vectors when the file does not say
  std::map<std::string, std::string> metadata;
};

// Writes every parameter (and buffer) of `model` under its timm name, atomically.
void save_checkpoint(const std::string& path, VisionTransformerImpl& model,
                     const Normalization& normalization,
                     std::map<std::string, std::string> extra_metadata = {});
// Reads the metadata (config, preprocessing) of a checkpoint written by save_checkpoint.
CheckpointInfo read_checkpoint_info(const std::string& path);
// Copies the file's tensors into `model`. Every model parameter must be present with its shape;
// a mismatch throws std::runtime_error listing the first missing/mismatched names.
void load_weights(const std::string& path, VisionTransformerImpl& model);
// Builds the model a checkpoint describes and loads its weights.
VisionTransformer load_model(const std::string& path, CheckpointInfo* info = nullptr);

}  // namespace vit
