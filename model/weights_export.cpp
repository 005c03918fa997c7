#include <torch/torch.h>

#include "weights_export.h"

#include <filesystem>
#include <stdexcept>

#include "checkpoint.h"
#include "config_json.h"
#include "run_dir.h"
#include "safetensors.h"
#include "vit.h"

namespace vit {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::vector<std::string> timm_incompatibilities(const ViTConfig& c) {
  std::vector<std::string> out;
  if (c.mlp_act_after_fc2) out.push_back("GELU after the second MLP layer (mlp_act_after_fc2)");
  if (!c.head_hidden.empty()) out.push_back("an MLP head (head_hidden, saved as head_mlp.*)");
  if (c.pool == Pool::Flatten) out.push_back("flatten pooling");
  if (c.ln_eps != 1e-6) out.push_back("LayerNorm eps other than 1e-6");
  const double ratio = double(c.mlp_hidden) / c.dim;
  if (int(double(c.dim) * ratio) != c.mlp_hidden)
    out.push_back("an MLP width that dim x mlp_ratio does not reproduce");
  return out;
}

std::map<std::string, std::string> timm_metadata(const ViTConfig& c, const Normalization& norm) {
  std::string architecture = "vit_base_patch16_224";  // any ViT entry point: the args override it
  for (const auto& a : standard_vits())
    if (a.dim == c.dim && a.depth == c.depth && a.heads == c.heads && a.patch_size == c.patch_size &&
        c.image_size == 224)
      architecture = a.timm;
  const json args = {{"img_size", c.image_size},
                     {"patch_size", c.patch_size},
                     {"in_chans", c.in_channels},
                     {"num_classes", c.num_classes},
                     {"embed_dim", c.dim},
                     {"depth", c.depth},
                     {"num_heads", c.heads},
                     {"mlp_ratio", double(c.mlp_hidden) / c.dim},
                     {"qkv_bias", c.qkv_bias},
                     {"class_token", c.class_token},
                     {"global_pool", c.pool == Pool::Mean ? "avg" : "token"},
                     {"fc_norm", c.pool == Pool::Mean}};
  const json cfg = {{"architecture", architecture},
                    {"input_size", {c.in_channels, c.image_size, c.image_size}},
                    {"fixed_input_size", true},
                    {"mean", norm.mean},
                    {"std", norm.std},
                    {"interpolation", "bicubic"},
                    {"crop_pct", 1.0},
                    {"num_classes", c.num_classes},
                    {"first_conv", "patch_embed.proj"},
                    {"classifier", "head"}};
  return {{"pretrained_cfg", cfg.dump()}, {"timm_model_args", args.dump()}};
}

ExportResult export_weights(const std::string& source, const std::string& out) {
  ExportResult r;
  r.checkpoint = source;
  std::error_code ec;
  if (fs::is_directory(source, ec)) {
    r.checkpoint = RunReader(source).weights(Weights::Best);
    if (r.checkpoint.empty())
      throw std::runtime_error(source + " has no checkpoint (checkpoints/best.safetensors or "
                               "last.safetensors): is it a run directory?");
  }
  CheckpointInfo info;
  VisionTransformer model = load_model(r.checkpoint, &info);
  Normalization norm = info.normalization;
  if (norm.mean.empty()) {
    norm.mean.assign(size_t(info.config.in_channels), 0.5f);
    norm.std.assign(size_t(info.config.in_channels), 0.5f);
    r.warnings.push_back("the checkpoint records no mean/std; 0.5 written");
  }
  NamedTensors tensors;
  for (const auto& p : model->named_parameters()) {
    tensors.emplace_back(p.key(), p.value().detach());
    r.parameters += p.value().numel();
  }
  for (const auto& b : model->named_buffers()) tensors.emplace_back(b.key(), b.value().detach());
  r.tensors = int64_t(tensors.size());
  r.metadata = timm_metadata(info.config, norm);
  r.metadata["format"] = "pt";
  r.metadata["vit_config"] = to_json(info.config).dump();
  r.metadata["mean"] = json(norm.mean).dump();
  r.metadata["std"] = json(norm.std).dump();
  r.metadata["input_size"] =
      json({info.config.in_channels, info.config.image_size, info.config.image_size}).dump();
  r.metadata["exported_by"] = std::string("ViT Studio ") + VIT_VERSION;
  for (const auto& w : timm_incompatibilities(info.config))
    r.warnings.push_back("timm's VisionTransformer has no " + w +
                         "; the file loads with load_state_dict into a module with these names, "
                         "but timm.create_model cannot build it");
  save_safetensors(out, tensors, r.metadata);
  return r;
}

}  // namespace vit
