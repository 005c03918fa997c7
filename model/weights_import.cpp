#include <torch/torch.h>

#include "weights_import.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "checkpoint.h"
#include "config_json.h"
#include "settings_schema.h"
#include "npz.h"
#include "pth.h"
#include "run_dir.h"
#include "run_writer.h"
#include "vit.h"
#include "zip_archive.h"

namespace vit {

namespace fs = std::filesystem;
using json = nlohmann::json;

const char* to_string(WeightsFormat format) {
  switch (format) {
    case WeightsFormat::Safetensors: return "safetensors";
    case WeightsFormat::Npz: return "npz";
    case WeightsFormat::Pth: return "pth";
  }
  return "?";
}

namespace {

std::runtime_error error(const std::string& what, const std::string& problem) {
  return std::runtime_error(what + ": " + problem);
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_string(const torch::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

// A few names for a message, e.g. "'a', 'b', 'c' and 4 more".
std::string some_names(const std::vector<std::string>& names, size_t shown = 3) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < shown; ++i) out += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > shown) out += " and " + std::to_string(names.size() - shown) + " more";
  return out;
}

// Parses "<prefix><N>.<rest>" where N is a block index.
bool block_name(const std::string& name, const std::string& prefix, int* index, std::string* rest) {
  if (!starts_with(name, prefix)) return false;
  size_t pos = prefix.size(), end = pos;
  while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
  if (end == pos || end - pos > 6 || end >= name.size() || name[end] != '.') return false;
  *index = std::stoi(name.substr(pos, end - pos));
  *rest = name.substr(end + 1);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Container detection

WeightsFormat detect_format(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw error(path, "is a directory, not a weights file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw error(path, std::string("cannot open: ") + std::strerror(errno));
  char head[8] = {};
  in.read(head, sizeof head);
  const std::string first(head, size_t(in.gcount()));
  if (starts_with(first, std::string("PK\x03\x04", 4)) || starts_with(first, std::string("PK\x05\x06", 4))) {
    ZipReader zip(path);
    bool npy = zip.entries().empty();
    for (const auto& e : zip.entries()) {
      if (ends_with(e.name, "/data.pkl")) return WeightsFormat::Pth;
      npy = npy || ends_with(e.name, ".npy");
    }
    if (npy) return WeightsFormat::Npz;
    throw error(path, "is a zip archive with neither .npy arrays (an .npz file) nor "
                      "'<name>/data.pkl' (a torch.save file)");
  }
  // safetensors: an 8-byte little-endian header length, then a JSON object. Checked before the
  // pickle test: a header length whose low byte is 0x80 looks like a pickle's PROTO opcode.
  if (first.size() == 8) {
    uint64_t header = 0;
    for (int i = 7; i >= 0; --i) header = (header << 8) | static_cast<unsigned char>(first[size_t(i)]);
    char brace = 0;
    const auto size = fs::file_size(path, ec);
    if (!ec && header > 0 && header <= size - 8 && in.get(brace) && brace == '{')
      return WeightsFormat::Safetensors;
  }
  if (!first.empty() && static_cast<unsigned char>(first[0]) == 0x80)
    throw error(path, "is a legacy (pre-1.6) PyTorch file or a raw pickle, which cannot be read "
                      "without running pickle. Re-save it in Python with "
                      "torch.save(torch.load(f, map_location='cpu', weights_only=True), 'new.pth'), "
                      "or convert it to safetensors");
  if (starts_with(first, "\x93NUMPY"))
    throw error(path, "is a single NumPy array (.npy), not a checkpoint; save all arrays with "
                      "numpy.savez into an .npz file");
  if (starts_with(first, "\x89HDF"))
    throw error(path, "is an HDF5 (Keras .h5) file, which is not read; export the weights as "
                      ".npz or safetensors");
  return WeightsFormat::Safetensors;
}

// ---------------------------------------------------------------------------------------------
// Name mapping

// Features of other ViT variants that the model in vit.h does not have, by a name part.
const std::pair<const char*, const char*> kUnsupported[] = {
    {".ls1.", "LayerScale (DeiT III, CaiT)"},  {".ls2.", "LayerScale (DeiT III, CaiT)"},
    {"reg_token", "register tokens"},          {".q_norm.", "query/key normalization"},
    {".k_norm.", "query/key normalization"},   {"norm_pre", "a pre-norm after the embedding (CLIP)"},
    {"dist_token", "DeiT's distillation token"}, {"head_dist", "DeiT's distillation head"},
    {"attn_pool", "attention pooling (MAP head)"}, {"pre_logits", "a representation layer"},
    {".gamma_1", "LayerScale (BEiT)"},         {"rel_pos", "relative position bias"},
    {"mask_token", "a mask token"},
};

bool known_timm_name(const std::string& name) {
  static const std::set<std::string> top = {
      "cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight",
      "norm.bias", "fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"};
  if (top.count(name)) return true;
  static const std::set<std::string> block = {
      "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
      "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
      "mlp.fc2.weight", "mlp.fc2.bias"};
  int index;
  std::string rest;
  if (block_name(name, "blocks.", &index, &rest)) return block.count(rest) > 0;
  if (block_name(name, "head_mlp.", &index, &rest)) return rest == "weight" || rest == "bias";
  return false;
}

void check_known_names(const NamedTensors& timm, const std::string& what) {
  std::vector<std::string> unknown;
  for (const auto& [name, t] : timm)
    if (!known_timm_name(name)) unknown.push_back(name);
  if (unknown.empty()) return;
  for (const auto& name : unknown)
    for (const auto& [part, feature] : kUnsupported)
      if (name.find(part) != std::string::npos)
        throw error(what, std::string("'") + name + "' belongs to " + feature +
                              ", which ViT Studio's ViT does not have; this checkpoint cannot "
                              "be imported");
  throw error(what, "has " + std::to_string(unknown.size()) +
                        " tensor(s) a ViT does not have, e.g. " + some_names(unknown) +
                        "; is it a Vision Transformer checkpoint (timm's VisionTransformer, "
                        "Hugging Face's ViTModel or a Google ViT .npz)?");
}

NamedTensors map_hugging_face(const NamedTensors& source, const std::string& what,
                              std::vector<std::string>* notes) {
  NamedTensors out;
  std::map<int, std::array<torch::Tensor, 3>> qkv_w, qkv_b;
  std::vector<std::string> unknown, dropped;
  const std::map<std::string, std::string> layer_map = {
      {"attention.output.dense", "attn.proj"}, {"layernorm_before", "norm1"},
      {"layernorm_after", "norm2"},           {"intermediate.dense", "mlp.fc1"},
      {"output.dense", "mlp.fc2"}};
  const std::map<std::string, std::string> top_map = {
      {"embeddings.cls_token", "cls_token"},
      {"embeddings.position_embeddings", "pos_embed"},
      {"embeddings.patch_embeddings.projection.weight", "patch_embed.proj.weight"},
      {"embeddings.patch_embeddings.projection.bias", "patch_embed.proj.bias"},
      {"layernorm.weight", "norm.weight"}, {"layernorm.bias", "norm.bias"},
      {"classifier.weight", "head.weight"}, {"classifier.bias", "head.bias"}};
  for (const auto& [full, t] : source) {
    const std::string name = starts_with(full, "vit.") ? full.substr(4) : full;
    if (auto it = top_map.find(name); it != top_map.end()) {
      out.emplace_back(it->second, t);
      continue;
    }
    if (starts_with(name, "pooler.") || name == "embeddings.mask_token") {
      dropped.push_back(full);
      continue;
    }
    int n;
    std::string rest;
    if (block_name(name, "encoder.layer.", &n, &rest)) {
      const std::string block = "blocks." + std::to_string(n) + ".";
      const std::string qkv_prefix = "attention.attention.";
      if (starts_with(rest, qkv_prefix)) {
        const std::string part = rest.substr(qkv_prefix.size());  // query.weight, ...
        const size_t dot = part.find('.');
        const std::string which = part.substr(0, dot), kind = dot == std::string::npos ? "" : part.substr(dot + 1);
        const int slot = which == "query" ? 0 : which == "key" ? 1 : which == "value" ? 2 : -1;
        if (slot >= 0 && (kind == "weight" || kind == "bias")) {
          (kind == "weight" ? qkv_w : qkv_b)[n][size_t(slot)] = t;
          continue;
        }
      }
      bool mapped = false;
      for (const auto& [hf, timm] : layer_map) {
        for (const char* kind : {"weight", "bias"}) {
          if (rest == hf + "." + kind) {
            out.emplace_back(block + timm + "." + kind, t);
            mapped = true;
          }
        }
      }
      if (mapped) continue;
    }
    unknown.push_back(full);
  }
  if (!unknown.empty())
    throw error(what, "has Hugging Face ViT names but also " + std::to_string(unknown.size()) +
                          " tensor(s) the ViT mapping does not know, e.g. " + some_names(unknown));
  auto cat = [&](std::map<int, std::array<torch::Tensor, 3>>& parts, const char* kind) {
    for (auto& [n, qkv] : parts) {
      for (size_t k = 0; k < 3; ++k)
        if (!qkv[k].defined())
          throw error(what, "layer " + std::to_string(n) + " has no attention " +
                                (k == 0 ? "query" : k == 1 ? "key" : "value") + "." + kind);
      out.emplace_back("blocks." + std::to_string(n) + ".attn.qkv." + kind,
                       torch::cat({qkv[0], qkv[1], qkv[2]}, 0));
    }
  };
  cat(qkv_w, "weight");
  cat(qkv_b, "bias");
  if (!dropped.empty())
    notes->push_back("dropped " + std::to_string(dropped.size()) + " tensor(s) the classifier "
                     "does not use (" + some_names(dropped) + ")");
  notes->push_back("Hugging Face names mapped to timm's; q/k/v concatenated into qkv");
  return out;
}

// Google's original ViT (vit_jax) and big_vision .npz files, mapped as timm's _load_weights.
NamedTensors map_google(const NamedTensors& source, const std::string& prefix,
                        const std::string& what, std::vector<std::string>* notes,
                        std::optional<int>* heads, std::string* naming) {
  std::map<std::string, torch::Tensor> src;
  size_t outside = 0;
  for (const auto& [name, t] : source) {
    if (starts_with(name, prefix)) src[name.substr(prefix.size())] = t;
    else ++outside;
  }
  std::set<std::string> used;
  auto has = [&](const std::string& key) { return src.count(key) > 0; };
  auto get = [&](const std::string& key) {
    auto it = src.find(key);
    if (it == src.end()) throw error(what, "has no array '" + prefix + key + "'");
    used.insert(key);
    return it->second;
  };
  // timm's _n2p: Flax kernels are (in, out) / (H, W, in, out); PyTorch's are transposed.
  auto n2p = [](torch::Tensor w, bool transpose = true) {
    if (w.dim() == 4 && w.size(0) == 1 && w.size(1) == 1 && w.size(2) == 1) w = w.flatten();
    if (transpose) {
      if (w.dim() == 4) w = w.permute({3, 2, 0, 1});
      else if (w.dim() == 3) w = w.permute({2, 0, 1});
      else if (w.dim() == 2) w = w.t();
    }
    return w;
  };
  const bool big_vision = has("Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel") ||
                          has("Transformer/encoderblock/MultiHeadDotProductAttention_0/query/kernel");
  const bool scanned = has("Transformer/encoderblock/LayerNorm_0/scale");
  const std::string mha = big_vision ? "MultiHeadDotProductAttention_0/" : "MultiHeadDotProductAttention_1/";
  const std::string mlp = big_vision ? "MlpBlock_0/" : "MlpBlock_3/";
  const std::string ln2 = big_vision ? "LayerNorm_1/" : "LayerNorm_2/";
  *naming = big_vision ? "big-vision" : "google-npz";

  int depth = 0;
  if (scanned) {
    depth = int(src.at("Transformer/encoderblock/LayerNorm_0/scale").size(0));
  } else {
    while (has("Transformer/encoderblock_" + std::to_string(depth) + "/LayerNorm_0/scale")) ++depth;
  }
  if (depth == 0) throw error(what, "has no transformer blocks (Transformer/encoderblock_0/...)");

  NamedTensors out;
  out.emplace_back("patch_embed.proj.weight", n2p(get("embedding/kernel")));
  out.emplace_back("patch_embed.proj.bias", n2p(get("embedding/bias")));
  if (has("cls")) out.emplace_back("cls_token", n2p(get("cls"), false));
  out.emplace_back("pos_embed", n2p(get(has("pos_embedding") ? "pos_embedding"
                                                             : "Transformer/posembed_input/pos_embedding"),
                                    false));
  out.emplace_back("norm.weight", n2p(get("Transformer/encoder_norm/scale")));
  out.emplace_back("norm.bias", n2p(get("Transformer/encoder_norm/bias")));
  if (has("pre_logits/kernel")) {
    // The in21k checkpoints put a tanh "representation layer" before their 21k-class head;
    // timm drops both for fine-tuning, and so do we.
    get("pre_logits/kernel");
    get("pre_logits/bias");
    if (has("head/kernel")) {
      get("head/kernel");
      get("head/bias");
    }
    notes->push_back("dropped the pre-logits representation layer and its head (ImageNet-21k "
                     "pre-training); the import has no classification head");
  } else if (has("head/kernel") && get("head/kernel").numel() > 0) {
    out.emplace_back("head.weight", n2p(get("head/kernel")));
    out.emplace_back("head.bias", n2p(get("head/bias")));
  } else if (has("head/kernel")) {
    get("head/bias");  // a zero-width head: none
  }
  for (int i = 0; i < depth; ++i) {
    const std::string b = scanned ? "Transformer/encoderblock/"
                                  : "Transformer/encoderblock_" + std::to_string(i) + "/";
    auto block = [&](const std::string& key) {
      torch::Tensor t = get(b + key);
      if (!scanned) return t;
      if (t.dim() == 0 || t.size(0) != depth)
        throw error(what, "'" + prefix + b + key + "' is not stacked over the " +
                              std::to_string(depth) + " blocks");
      return t.select(0, i);
    };
    const std::string p = "blocks." + std::to_string(i) + ".";
    out.emplace_back(p + "norm1.weight", n2p(block("LayerNorm_0/scale")));
    out.emplace_back(p + "norm1.bias", n2p(block("LayerNorm_0/bias")));
    std::vector<torch::Tensor> w, bias;
    for (const char* part : {"query", "key", "value"}) {
      torch::Tensor k = block(mha + part + "/kernel");  // (D, H, hd)
      if (k.dim() != 3)
        throw error(what, "'" + prefix + b + mha + part + "/kernel' has shape " + shape_string(k) +
                              "; expected (dim, heads, head_dim)");
      if (!heads->has_value()) *heads = int(k.size(1));
      else if (**heads != k.size(1))
        throw error(what, "block " + std::to_string(i) + " has " + std::to_string(k.size(1)) +
                              " heads but an earlier block " + std::to_string(**heads));
      w.push_back(n2p(k, false).flatten(1).t());
      bias.push_back(n2p(block(mha + part + "/bias"), false).reshape({-1}));
    }
    out.emplace_back(p + "attn.qkv.weight", torch::cat(w, 0));
    out.emplace_back(p + "attn.qkv.bias", torch::cat(bias, 0));
    out.emplace_back(p + "attn.proj.weight", n2p(block(mha + "out/kernel")).flatten(1));
    out.emplace_back(p + "attn.proj.bias", n2p(block(mha + "out/bias")));
    out.emplace_back(p + "mlp.fc1.weight", n2p(block(mlp + "Dense_0/kernel")));
    out.emplace_back(p + "mlp.fc1.bias", n2p(block(mlp + "Dense_0/bias")));
    out.emplace_back(p + "mlp.fc2.weight", n2p(block(mlp + "Dense_1/kernel")));
    out.emplace_back(p + "mlp.fc2.bias", n2p(block(mlp + "Dense_1/bias")));
    out.emplace_back(p + "norm2.weight", n2p(block(ln2 + "scale")));
    out.emplace_back(p + "norm2.bias", n2p(block(ln2 + "bias")));
  }
  std::vector<std::string> unused;
  for (const auto& [key, t] : src)
    if (!used.count(key)) unused.push_back(prefix + key);
  if (!unused.empty()) {
    for (const auto& name : unused)
      for (const auto& [part, feature] : kUnsupported)
        if (name.find(part) != std::string::npos)
          throw error(what, "'" + name + "' belongs to " + feature +
                                ", which ViT Studio's ViT does not have");
    throw error(what, "has " + std::to_string(unused.size()) +
                          " array(s) the ViT mapping does not use, e.g. " + some_names(unused) +
                          " (a hybrid or another variant is not supported)");
  }
  if (outside > 0)
    notes->push_back("ignored " + std::to_string(outside) + " array(s) outside '" + prefix +
                     "' (optimizer state)");
  notes->push_back(std::string(big_vision ? "big_vision" : "Google ViT") +
                   " .npz names mapped as timm's _load_weights; query/key/value kernels "
                   "concatenated into qkv");
  return out;
}

}  // namespace

NamedTensors map_to_timm(const NamedTensors& source, const std::string& what, std::string* naming,
                         std::vector<std::string>* notes, std::optional<int>* heads) {
  std::string scheme;
  std::vector<std::string> local_notes;
  std::optional<int> local_heads;
  notes = notes ? notes : &local_notes;
  heads = heads ? heads : &local_heads;
  NamedTensors out;

  std::optional<std::string> google_prefix;
  bool hugging_face = false, timm = false;
  for (const auto& [name, t] : source) {
    if (ends_with(name, "embedding/kernel") && name.find('.') == std::string::npos) {
      const std::string prefix = name.substr(0, name.size() - std::string("embedding/kernel").size());
      if (prefix.empty() || ends_with(prefix, "/")) google_prefix = prefix;
    }
    hugging_face = hugging_face || ends_with(name, "embeddings.patch_embeddings.projection.weight");
    timm = timm || name == "patch_embed.proj.weight" || name == "module.patch_embed.proj.weight";
  }
  if (google_prefix) {
    out = map_google(source, *google_prefix, what, notes, heads, &scheme);
  } else if (hugging_face) {
    scheme = "hugging-face";
    out = map_hugging_face(source, what, notes);
  } else if (timm) {
    scheme = "timm";
    const bool ddp = std::all_of(source.begin(), source.end(),
                                 [](const auto& p) { return starts_with(p.first, "module."); });
    for (const auto& [name, t] : source) out.emplace_back(ddp ? name.substr(7) : name, t);
    if (ddp) notes->push_back("removed the 'module.' prefix (DistributedDataParallel)");
  } else {
    std::vector<std::string> names;
    for (const auto& [name, t] : source) names.push_back(name);
    throw error(what, "no ViT weights recognized: expected timm names (patch_embed.proj.weight, "
                      "blocks.0.attn.qkv.weight, ...), Hugging Face names "
                      "(vit.embeddings.patch_embeddings.projection.weight, ...) or Google's .npz "
                      "names (embedding/kernel, Transformer/encoderblock_0/...); found " +
                          (names.empty() ? std::string("no tensors") : some_names(names)));
  }
  check_known_names(out, what);
  std::set<std::string> seen;
  for (auto& [name, t] : out) {
    if (!seen.insert(name).second) throw error(what, "has '" + name + "' twice after mapping");
    if (!t.is_floating_point())
      throw error(what, "'" + name + "' has dtype " + std::string(c10::toString(t.scalar_type())) +
                            "; weights must be floating point");
    t = t.to(torch::kFloat32).contiguous();
  }
  if (naming) *naming = scheme;
  return out;
}

std::optional<int> default_heads(int dim) {
  switch (dim) {
    case 192: return 3;
    case 384: return 6;
    case 768: return 12;
    case 1024: return 16;
    case 1280: return 16;
    default: return std::nullopt;
  }
}

ViTConfig infer_config(const NamedTensors& timm, const std::string& what, std::optional<int> heads,
                       std::string* heads_source) {
  std::map<std::string, torch::Tensor> t(timm.begin(), timm.end());
  auto need = [&](const std::string& name, int64_t dims) -> const torch::Tensor& {
    auto it = t.find(name);
    if (it == t.end())
      throw error(what, "has no '" + name + "', so the model's shape cannot be inferred");
    if (it->second.dim() != dims)
      throw error(what, "'" + name + "' has shape " + shape_string(it->second) + "; expected " +
                            std::to_string(dims) + " dimensions");
    return it->second;
  };
  ViTConfig c;
  c.dropout = c.attn_dropout = c.drop_path = c.patch_drop = 0.0;
  c.ln_eps = 1e-6;  // timm's ViT and Google's Flax LayerNorm (Hugging Face's 1e-12 is a conversion detail)

  const auto& proj = need("patch_embed.proj.weight", 4);  // (D, C, P, P)
  if (proj.size(2) != proj.size(3))
    throw error(what, "'patch_embed.proj.weight' has non-square patches " + shape_string(proj));
  c.dim = int(proj.size(0));
  c.in_channels = int(proj.size(1));
  c.patch_size = int(proj.size(2));

  std::set<int> blocks;
  for (const auto& [name, tensor] : timm) {
    int index;
    std::string rest;
    if (block_name(name, "blocks.", &index, &rest)) blocks.insert(index);
  }
  c.depth = int(blocks.size());
  if (c.depth == 0) throw error(what, "has no transformer blocks (blocks.0.*)");
  if (*blocks.rbegin() != c.depth - 1)
    throw error(what, "its blocks are numbered 0.." + std::to_string(*blocks.rbegin()) + " with " +
                          std::to_string(*blocks.rbegin() + 1 - c.depth) + " missing");
  c.mlp_hidden = int(need("blocks.0.mlp.fc1.weight", 2).size(0));
  c.qkv_bias = t.count("blocks.0.attn.qkv.bias") > 0;
  c.class_token = t.count("cls_token") > 0;

  const auto& pos = need("pos_embed", 3);  // (1, T, D)
  const int64_t prefix = c.class_token ? 1 : 0;
  const int64_t patches = pos.size(1) - prefix;
  const int64_t grid = int64_t(std::llround(std::sqrt(double(std::max<int64_t>(patches, 0)))));
  if (patches <= 0 || grid * grid != patches)
    throw error(what, "'pos_embed' has " + std::to_string(pos.size(1)) + " positions" +
                          (c.class_token ? " (1 class token + " + std::to_string(patches) + ")" : "") +
                          ", not a square grid of patches; the image size cannot be inferred");
  c.image_size = int(grid * c.patch_size);

  // Pooling and head: fc_norm means timm's global_pool="avg"; a head over every token, flatten.
  const bool fc_norm = t.count("fc_norm.weight") > 0, norm = t.count("norm.weight") > 0;
  if (fc_norm && norm)
    throw error(what, "has both 'norm' and 'fc_norm' (a final norm and a pooled norm), which "
                      "this ViT does not combine");
  c.pool = fc_norm ? Pool::Mean : Pool::Token;
  for (int i = 0; t.count("head_mlp." + std::to_string(i) + ".weight"); ++i)
    c.head_hidden.push_back(int(t.at("head_mlp." + std::to_string(i) + ".weight").size(0)));
  const std::string first_head = c.head_hidden.empty() ? "head.weight" : "head_mlp.0.weight";
  c.num_classes = 0;
  if (t.count("head.weight")) {
    c.num_classes = int(need("head.weight", 2).size(0));
    const int64_t in = need(first_head, 2).size(1);
    if (!fc_norm && in == pos.size(1) * c.dim) c.pool = Pool::Flatten;
    else if (in != c.dim)
      throw error(what, "'" + first_head + "' takes " + std::to_string(in) +
                            " features; expected the width " + std::to_string(c.dim));
  }
  if (c.pool == Pool::Token && !c.class_token)
    throw error(what, "has no class token and no 'fc_norm': it averages tokens after the final "
                      "norm, which this ViT does not do");

  std::string source;
  if (heads) {
    c.heads = *heads;
    source = "given";
  } else if (auto h = standard_heads(c.dim)) {
    c.heads = *h;
    source = "the standard ViT table for dim " + std::to_string(c.dim);
  } else {
    throw std::invalid_argument(what + ": the number of attention heads is not in the weights "
                                "(no shape shows it) and dim " + std::to_string(c.dim) +
                                " is not a standard ViT width (192, 384, 768, 1024, 1280): give "
                                "--heads N (a divisor of " + std::to_string(c.dim) + ")");
  }
  if (heads_source) *heads_source = source;
  if (c.heads <= 0 || c.dim % c.heads != 0)
    throw std::invalid_argument("heads " + std::to_string(c.heads) + " does not divide the dim " +
                                std::to_string(c.dim) + " of " + what);
  ViTConfig checked = c;
  if (checked.num_classes == 0) checked.num_classes = 1;
  const auto errors = validate(checked);
  if (!errors.empty()) throw error(what, "the inferred config is invalid: " + errors.front().message);
  return c;
}

NamedTensors read_weight_file(const std::string& path, WeightsFormat* format,
                              std::map<std::string, std::string>* metadata) {
  const WeightsFormat f = detect_format(path);
  if (format) *format = f;
  switch (f) {
    case WeightsFormat::Npz: return load_npz(path);
    case WeightsFormat::Pth: return load_pth(path);
    case WeightsFormat::Safetensors: {
      SafetensorsFile file = load_safetensors(path);
      if (metadata) *metadata = file.metadata;
      return std::move(file.tensors);
    }
  }
  return {};
}

namespace {

std::vector<float> floats_from_json(const std::string& text, const std::string& what,
                                    const char* key) {
  try {
    return json_to<std::vector<float>>(json::parse(text));
  } catch (const std::exception& e) {
    throw error(what, std::string("its metadata '") + key + "' is not a list of numbers: " + e.what());
  }
}

}  // namespace

ImportedWeights import_weights(const std::string& path_in, const ImportOptions& options) {
  std::string path = path_in;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {  // a run directory: its best weights, else the last
    path = RunReader(path_in).weights(Weights::Best);
    if (path.empty())
      throw error(path_in, "is a directory without checkpoints/best.safetensors: give a weights "
                           "file or a run directory");
  }
  ImportedWeights w;
  w.path = path;
  std::map<std::string, std::string> meta;
  const NamedTensors raw = read_weight_file(path, &w.format, &meta);
  std::optional<int> shape_heads;
  w.tensors = map_to_timm(raw, path, &w.naming, &w.notes, &shape_heads);

  if (auto it = meta.find("vit_config"); it != meta.end()) {
    w.naming = "vit-studio";
    try {
      w.config = config_from_json(json::parse(it->second));
    } catch (const std::exception& e) {
      throw error(path, std::string("its metadata 'vit_config' is not a valid config: ") + e.what());
    }
    if (const auto errors = validate(w.config); !errors.empty())
      throw error(path, "its metadata 'vit_config' is invalid: " + errors.front().message);
    if (options.heads && *options.heads != w.config.heads)
      throw std::invalid_argument("--heads " + std::to_string(*options.heads) + " but " + path +
                                  " was saved with " + std::to_string(w.config.heads) + " heads");
    w.heads_source = "the file's config";
    w.has_head = true;
  } else {
    if (shape_heads && options.heads && *options.heads != *shape_heads)
      throw std::invalid_argument("--heads " + std::to_string(*options.heads) + " but the "
                                  "attention kernels of " + path + " have " +
                                  std::to_string(*shape_heads) + " heads");
    w.config = infer_config(w.tensors, path, shape_heads ? shape_heads : options.heads, &w.heads_source);
    if (shape_heads) w.heads_source = "the attention kernels' shape";
    w.has_head = w.config.num_classes > 0;
  }

  // Preprocessing: the file's own, else what the source's convention is.
  const int channels = w.config.in_channels;
  std::optional<json> pretrained_cfg;
  if (auto it = meta.find("pretrained_cfg"); it != meta.end()) {
    try {
      pretrained_cfg = json::parse(it->second);
    } catch (const std::exception&) {
    }
  }
  if (meta.count("mean") && meta.count("std")) {
    w.normalization.mean = floats_from_json(meta.at("mean"), path, "mean");
    w.normalization.std = floats_from_json(meta.at("std"), path, "std");
    w.normalization_source = "the file's metadata";
  } else if (pretrained_cfg && pretrained_cfg->is_object() && pretrained_cfg->contains("mean") &&
             pretrained_cfg->contains("std")) {
    try {
      w.normalization.mean = json_to<std::vector<float>>(pretrained_cfg->at("mean"));
      w.normalization.std = json_to<std::vector<float>>(pretrained_cfg->at("std"));
    } catch (const std::exception& e) {
      throw error(path, std::string("its pretrained_cfg mean/std are not numbers: ") + e.what());
    }
    w.normalization_source = "the file's pretrained_cfg";
  } else {
    w.normalization.mean.assign(size_t(channels), 0.5f);
    w.normalization.std.assign(size_t(channels), 0.5f);
    if (w.naming == "google-npz" || w.naming == "big-vision")
      w.normalization_source = "Google's ViT preprocessing (pixels scaled to [-1, 1])";
    else if (w.naming == "hugging-face")
      w.normalization_source = "the google/vit-* image processors (mean = std = 0.5)";
    else
      w.normalization_source =
          "assumed mean = std = 0.5 (timm's augreg ViT weights); give --mean/--std for weights "
          "trained with ImageNet statistics (e.g. DeiT: 0.485,0.456,0.406 / 0.229,0.224,0.225)";
  }
  if (w.normalization.mean.size() != w.normalization.std.size() || w.normalization.mean.empty())
    throw error(path, "its mean and std have different lengths or are empty");
  for (float s : w.normalization.std)
    if (!(s > 0)) throw error(path, "its std values must be positive");
  w.normalization = adapt_normalization(w.normalization, channels);
  return w;
}

// ---------------------------------------------------------------------------------------------
// Import into a run directory

PretrainedLoad write_imported_run(const ImportedWeights& weights, const ViTConfig& config,
                                  const std::string& dir) {
  if (RunReader::is_run(dir))
    throw std::invalid_argument(dir + " already holds a run (config.json): choose another --out");
  check(config);
  torch::manual_seed(0);  // a new head's init is reproducible
  VisionTransformer model(config);
  PretrainedLoad r = load_pretrained(*model, weights);
  const Normalization norm = adapt_normalization(weights.normalization, config.in_channels);
  TrainConfig train;
  train.dataset = "";  // none yet: `vit eval --dataset` or `vit train --init` give one
  json notes = weights.notes;
  for (const auto& n : r.notes) notes.push_back(n);
  const json imported = {{"imported",
                          {{"file", weights.path},
                           {"format", to_string(weights.format)},
                           {"naming", weights.naming},
                           {"heads_source", weights.heads_source},
                           {"normalization_source", weights.normalization_source},
                           {"notes", notes}}}};
  RunWriter writer(dir, /*enabled=*/true, "vit import");
  writer.create(run_config_json(config, train, norm, RunData{}, 1, imported));
  RunState state;
  state.finished = true;  // nothing to continue: `vit train --init DIR` fine-tunes it
  writer.commit(*model, norm, /*optimizer=*/nullptr, state, /*best=*/true,
                {{"source", weights.path},
                 {"source_format", to_string(weights.format)},
                 {"source_naming", weights.naming}});
  return r;
}

}  // namespace vit
