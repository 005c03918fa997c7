#include <torch/torch.h>

#include "finetune.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "vit.h"
#include "weights_import.h"

namespace vit {

namespace {

std::string shape_string(const torch::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

}  // namespace

at::Tensor resize_pos_embed(const at::Tensor& pos_embed, int prefix_tokens, int new_grid) {
  if (pos_embed.dim() != 3 || pos_embed.size(0) != 1 || prefix_tokens < 0 ||
      pos_embed.size(1) <= prefix_tokens || new_grid <= 0)
    throw std::invalid_argument("resize_pos_embed needs (1, prefix + G*G, D) and a positive grid");
  const int64_t T = pos_embed.size(1), D = pos_embed.size(2), patches = T - prefix_tokens;
  const int64_t old_grid = int64_t(std::llround(std::sqrt(double(patches))));
  if (old_grid * old_grid != patches)
    throw std::invalid_argument("position embedding of " + std::to_string(patches) +
                                " patches is not a square grid");
  torch::NoGradGuard no_grad;
  auto prefix = pos_embed.narrow(1, 0, prefix_tokens);                  // (1, prefix, D)
  auto grid = pos_embed.narrow(1, prefix_tokens, patches)
                  .reshape({1, old_grid, old_grid, D})
                  .permute({0, 3, 1, 2})
                  .to(torch::kFloat32);                                  // (1, D, G, G)
  namespace F = torch::nn::functional;
  grid = F::interpolate(grid, F::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{new_grid, new_grid})
                                  .mode(torch::kBicubic)
                                  .align_corners(false)
                                  .antialias(new_grid < old_grid));
  grid = grid.permute({0, 2, 3, 1}).reshape({1, int64_t(new_grid) * new_grid, D});  // (1, G'^2, D)
  return torch::cat({prefix.to(grid.dtype()), grid}, 1).contiguous();
}

at::Tensor adapt_input_channels(const at::Tensor& weight, int channels) {
  if (weight.dim() != 4 || channels <= 0)
    throw std::invalid_argument("adapt_input_channels needs (D, C, P, P) kernels");
  const int64_t have = weight.size(1);
  if (have == channels) return weight;
  torch::NoGradGuard no_grad;
  if (channels == 1) return weight.sum(1, /*keepdim=*/true);  // gray = R = G = B
  const int64_t repeat = (channels + have - 1) / have;
  return (weight.repeat({1, repeat, 1, 1}).narrow(1, 0, channels) * (double(have) / channels))
      .contiguous();
}

Normalization adapt_normalization(const Normalization& n, int channels) {
  if (int(n.mean.size()) == channels) return n;
  Normalization out;
  if (channels == 1) {
    float m = 0, s = 0;
    for (size_t i = 0; i < n.mean.size(); ++i) m += n.mean[i], s += n.std[i];
    out.mean = {m / float(n.mean.size())};
    out.std = {s / float(n.std.size())};
  } else {
    for (int c = 0; c < channels; ++c) {
      out.mean.push_back(n.mean[size_t(c) % n.mean.size()]);
      out.std.push_back(n.std[size_t(c) % n.std.size()]);
    }
  }
  return out;
}

bool is_head_parameter(const std::string& name) {
  return name.rfind("head.", 0) == 0 || name.rfind("head_mlp.", 0) == 0;
}

PretrainedLoad load_pretrained(VisionTransformerImpl& model, const ImportedWeights& weights) {
  const ViTConfig& c = model.config();
  const ViTConfig& f = weights.config;
  PretrainedLoad r;
  std::map<std::string, torch::Tensor> source(weights.tensors.begin(), weights.tensors.end());
  std::set<std::string> used;
  std::vector<std::string> problems;
  const bool same_head = weights.has_head && f.num_classes == c.num_classes &&
                         f.head_hidden == c.head_hidden && f.pool == c.pool;
  torch::NoGradGuard no_grad;
  for (auto& p : model.named_parameters()) {
    const std::string& name = p.key();
    torch::Tensor& target = p.value();
    auto it = source.find(name);
    if (is_head_parameter(name) && !same_head) {
      r.new_head = true;
      continue;
    }
    if (it == source.end()) {
      problems.push_back("the file has no '" + name + "'");
      continue;
    }
    used.insert(name);
    torch::Tensor value = it->second;
    if (name == "pos_embed" && value.sizes() != target.sizes() && value.dim() == 3 &&
        value.size(2) == target.size(2) && f.class_token == c.class_token) {
      value = resize_pos_embed(value, c.class_token ? 1 : 0, c.grid());
      r.pos_embed_resized = true;
      r.notes.push_back("position embeddings resized from a " + std::to_string(f.grid()) + "x" +
                        std::to_string(f.grid()) + " to a " + std::to_string(c.grid()) + "x" +
                        std::to_string(c.grid()) + " patch grid (bicubic, class token kept)");
    }
    if (name == "patch_embed.proj.weight" && value.dim() == 4 && value.sizes() != target.sizes()) {
      if (value.size(2) != target.size(2))
        problems.push_back("the file's patches are " + std::to_string(value.size(2)) + "x" +
                           std::to_string(value.size(2)) + " pixels, the model's " +
                           std::to_string(target.size(2)) +
                           ": patch embeddings are not resampled; keep the patch size");
      else if (value.size(0) == target.size(0) && value.size(1) != target.size(1)) {
        value = adapt_input_channels(value, int(target.size(1)));
        r.channels_adapted = true;
        r.notes.push_back("patch embedding adapted from " + std::to_string(f.in_channels) +
                          " to " + std::to_string(c.in_channels) + " input channel(s)");
      }
    }
    if (value.sizes() != target.sizes()) {
      problems.push_back("'" + name + "' is " + shape_string(value) + " in the file, " +
                         shape_string(target) + " in the model");
      continue;
    }
    target.copy_(value);
  }
  for (const auto& [name, t] : weights.tensors)
    if (!used.count(name) && !(is_head_parameter(name) && r.new_head))
      problems.push_back("the model has no '" + name + "'");
  if (!problems.empty()) {
    std::string msg = weights.path + " does not fit the model (" + std::to_string(problems.size()) +
                      " problem(s)): " + problems.front();
    for (size_t i = 1; i < std::min<size_t>(problems.size(), 4); ++i) msg += "; " + problems[i];
    throw std::runtime_error(msg + ". Only the image size, classes and channels may differ from "
                                   "the pretrained model");
  }
  if (r.new_head)
    r.notes.push_back(weights.has_head
                          ? "new classification head for " + std::to_string(c.num_classes) +
                                " classes (the file's head has " + std::to_string(f.num_classes) + ")"
                          : "new classification head for " + std::to_string(c.num_classes) +
                                " classes (the file has none)");
  return r;
}

int64_t freeze_backbone(VisionTransformerImpl& model) {
  int64_t frozen = 0;
  for (auto& p : model.named_parameters()) {
    if (is_head_parameter(p.key())) continue;
    p.value().set_requires_grad(false);
    frozen += p.value().numel();
  }
  return frozen;
}

}  // namespace vit
