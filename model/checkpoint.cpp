#include <torch/torch.h>

#include "checkpoint.h"

#include <sstream>
#include <stdexcept>

#include "config_json.h"
#include "settings_schema.h"
#include "safetensors.h"
#include "summary.h"

namespace vit {

void save_checkpoint(const std::string& path, VisionTransformerImpl& model,
                     const Normalization& normalization,
                     std::map<std::string, std::string> metadata) {
  NamedTensors tensors;
  // Host copies of a model on a GPU (no copy on the CPU): the file is written from host memory.
  for (const auto& p : model.named_parameters()) tensors.emplace_back(p.key(), p.value().detach().cpu());
  for (const auto& b : model.named_buffers()) tensors.emplace_back(b.key(), b.value().detach().cpu());
  metadata["format"] = "vit-studio";
  metadata["vit_config"] = to_json(model.config()).dump();
  metadata["mean"] = nlohmann::json(normalization.mean).dump();
  metadata["std"] = nlohmann::json(normalization.std).dump();
  metadata["input_size"] = nlohmann::json({model.config().in_channels, model.config().image_size,
                                           model.config().image_size}).dump();
  save_safetensors(path, tensors, metadata);
}

namespace {

CheckpointInfo info_from(const std::string& path, const SafetensorsFile& file) {
  CheckpointInfo info;
  info.metadata = file.metadata;
  auto it = file.metadata.find("vit_config");
  if (it == file.metadata.end())
    throw std::runtime_error(path + " has no 'vit_config' in its metadata: it was not written by "
                             "ViT Studio; import it with `vit import` instead");
  try {
    info.config = config_from_json(nlohmann::json::parse(it->second));
    if (auto m = file.metadata.find("mean"); m != file.metadata.end())
      info.normalization.mean = json_to<std::vector<float>>(nlohmann::json::parse(m->second));
    if (auto s = file.metadata.find("std"); s != file.metadata.end())
      info.normalization.std = json_to<std::vector<float>>(nlohmann::json::parse(s->second));
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": bad checkpoint metadata: " + e.what());
  }
  check(info.config);
  return info;
}

void copy_weights(const std::string& path, const SafetensorsFile& file, VisionTransformerImpl& model) {
  torch::NoGradGuard no_grad;
  std::vector<std::string> problems;
  auto assign = [&](const std::string& name, torch::Tensor& target) {
    const torch::Tensor* source = file.find(name);
    if (!source) {
      problems.push_back("missing " + name);
    } else if (source->sizes() != target.sizes()) {
      std::ostringstream out;
      out << name << " has shape " << source->sizes() << ", the model expects " << target.sizes();
      problems.push_back(out.str());
    } else {
      target.copy_(*source);
    }
  };
  for (auto& p : model.named_parameters()) assign(p.key(), p.value());
  for (auto& b : model.named_buffers()) assign(b.key(), b.value());
  if (!problems.empty()) {
    std::string msg = path + " does not fit this model (" + std::to_string(problems.size()) +
                      " problem(s)): " + problems.front();
    for (size_t i = 1; i < std::min<size_t>(problems.size(), 3); ++i) msg += "; " + problems[i];
    throw std::runtime_error(msg);
  }
}

// A checkpoint's metadata could describe any model check() allows (terabytes of parameters) in a
// few hundred bytes: the model is built only when the file's tensors hold at least as many values
// as it has parameters, so what gets allocated is bounded by what the file really contains.
void check_tensors_cover(const std::string& path, const SafetensorsFile& file,
                         const ViTConfig& config) {
  const int64_t needed = summarize(config).params;
  uint64_t held = 0;
  for (const auto& named : file.tensors) held += uint64_t(named.second.numel());
  if (held < uint64_t(needed))
    throw std::runtime_error(path + ": its metadata describes a model of " +
                             std::to_string(needed) + " parameters but the file holds " +
                             std::to_string(held) +
                             " values: a damaged or hostile checkpoint (nothing was built)");
}

}  // namespace

CheckpointInfo read_checkpoint_info(const std::string& path) {
  return info_from(path, load_safetensors(path));
}

void load_weights(const std::string& path, VisionTransformerImpl& model) {
  copy_weights(path, load_safetensors(path), model);
}

VisionTransformer load_model(const std::string& path, CheckpointInfo* out) {
  const auto file = load_safetensors(path);
  CheckpointInfo info = info_from(path, file);
  check_tensors_cover(path, file, info.config);
  VisionTransformer model(info.config);
  copy_weights(path, file, *model);
  if (out) *out = std::move(info);
  return model;
}

}  // namespace vit
