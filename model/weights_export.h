// Weights out: a run's weights as a safetensors file that Python (timm, or plain
// load_state_dict) reads with no key changes, with timm's metadata to build the model.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "train_config.h"  // Normalization
#include "vit_config.h"

namespace vit {

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
